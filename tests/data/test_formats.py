"""Loaders for real QA data: FlashRAG/Search-R1 rows (jsonl, json, parquet) and MEM1's parquet."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mem1_gym.data.formats import (
    DataFormatError,
    item_to_row,
    load_mem1_parquet,
    load_qa,
    load_qa_file,
    parse_mem1_questions,
    qa_item_from_row,
    write_qa_jsonl,
)
from mem1_gym.data.tasks import Hop, QAItem
from mem1_gym.protocol import qa_prompt

# Rows as FlashRAG ships them: metadata is dataset-specific and carries none of our fields.
FLASHRAG_ROWS = [
    {"id": "test_0", "question": "who got the first nobel prize in physics",
     "golden_answers": ["Wilhelm Conrad Röntgen"], "metadata": {"type": "person"}},
    {"id": "test_1", "question": "when is the next deadpool movie being released", "golden_answers": ["May 18, 2018"],
     "metadata": {}},
]  # fmt: skip
MEM1_INSTRUCTIONS = "You will answer several questions... summary in <think> </think>, then <search> or <answer>.\n"


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _mem1_row(questions, targets, indices, source="nq"):
    prompt = MEM1_INSTRUCTIONS + "Answer the following questions: " + "; ".join(questions) + "\n"
    return {
        "data_source": source,
        "prompt": [{"role": "user", "content": prompt}],
        "ability": "fact-reasoning",
        "reward_model": {"style": "rule", "ground_truth": {"target": targets}},
        "extra_info": {"split": "test", "indices": indices},
    }


# ---- FlashRAG / Search-R1 rows ---------------------------------------------------------------------


def test_flashrag_jsonl_without_our_metadata(tmp_path):
    items = load_qa_file(_write_jsonl(tmp_path / "nq" / "test.jsonl", FLASHRAG_ROWS))
    assert [i.id for i in items] == ["test_0", "test_1"]
    assert items[0].answers == ("Wilhelm Conrad Röntgen",)
    assert all(i.source == "nq" and i.kind == "unknown" and i.hops == () and i.gold_doc_ids == () for i in items)


def test_source_comes_from_metadata_then_data_source_then_the_file_name(tmp_path):
    rows = [
        {"id": "a", "question": "q?", "golden_answers": ["x"], "metadata": {"source": "hotpotqa"}, "data_source": "nq"},
        {"id": "b", "question": "q?", "golden_answers": ["x"], "data_source": "triviaqa"},
        {"id": "c", "question": "q?", "golden_answers": ["x"]},
    ]
    items = load_qa_file(_write_jsonl(tmp_path / "popqa_sample.jsonl", rows))
    assert [i.source for i in items] == ["hotpotqa", "triviaqa", "popqa_sample"]
    assert load_qa_file(tmp_path / "popqa_sample.jsonl", source="mine")[2].source == "mine"


def test_json_list_and_gzipped_jsonl(tmp_path):
    (tmp_path / "dev.json").write_text(json.dumps(FLASHRAG_ROWS), encoding="utf-8")
    with gzip.open(tmp_path / "dev.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in FLASHRAG_ROWS)
    expected = load_qa_file(_write_jsonl(tmp_path / "dev.jsonl", FLASHRAG_ROWS))
    assert load_qa_file(tmp_path / "dev.json") == expected == load_qa_file(tmp_path / "dev.jsonl.gz")


def test_parquet_written_by_pandas_with_numpy_answer_arrays(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        {
            "id": ["0", "1"],
            "question": ["who wrote the book?", "where is the tower?"],
            "golden_answers": [np.array(["Ann Lee", "A. Lee"]), np.array(["Paris"])],
            "data_source": ["nq", "nq"],
        }
    )
    frame.to_parquet(tmp_path / "train.parquet")
    items = load_qa(tmp_path / "train.parquet")
    assert [i.answers for i in items] == [("Ann Lee", "A. Lee"), ("Paris",)]
    assert {i.source for i in items} == {"nq"}
    # Rows as pandas hands them out (numpy arrays, not lists) convert the same way.
    row = frame.iloc[0].to_dict()
    assert isinstance(row["golden_answers"], np.ndarray) and qa_item_from_row(row).answers == ("Ann Lee", "A. Lee")


def test_golden_answers_given_as_a_string():
    item = qa_item_from_row({"id": 7, "question": "q?", "golden_answers": "1843"})
    assert item.answers == ("1843",) and item.id == "7"


def test_our_metadata_round_trips(tmp_path):
    item = QAItem("s-0", "Who founded X?", ("Aldric Venn", "A. Venn"), "synthetic", "bridge", ("3", "9"),
                  (Hop("X founded", "Aldric Venn", "3"), Hop("Aldric Venn born", "Tarsen", "9")))  # fmt: skip
    path = write_qa_jsonl([item], tmp_path / "train.jsonl")
    assert load_qa_file(path) == [item]
    assert json.loads(path.read_text())["metadata"]["hops"][1] == {
        "query": "Aldric Venn born",
        "answer": "Tarsen",
        "doc_id": "9",
    }


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(str.strip)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(_text, _text, st.lists(_text, min_size=1, max_size=4)), min_size=1, max_size=5))
def test_any_items_round_trip_through_jsonl(tmp_path_factory, rows):
    items = [QAItem(f"id-{i}", q, tuple(a), source=s) for i, (q, s, a) in enumerate(rows)]
    path = write_qa_jsonl(items, tmp_path_factory.mktemp("rt") / "x.jsonl")
    assert load_qa_file(path) == items
    assert [item_to_row(i)["golden_answers"] for i in items] == [list(i.answers) for i in items]


# ---- MEM1 multi-objective parquet ----------------------------------------------------------------------


def test_mem1_parquet_becomes_tasks(tmp_path):
    rows = [
        _mem1_row(
            ["who wrote hamlet?", "who sang thriller; the album?"], [["Shakespeare"], ["Michael Jackson", "MJ"]], [0, 1]
        ),
        _mem1_row(["capital of france?", "largest planet?"], [["Paris"], ["Jupiter"]], [2, 3], source="hotpotqa"),
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    tasks = load_mem1_parquet(tmp_path / "test.parquet")
    assert [len(t) for t in tasks] == [2, 2] and len({t.id for t in tasks}) == 2
    assert tasks[0].questions == ["who wrote hamlet?", "who sang thriller; the album?"]  # ";" inside a question kept
    assert tasks[0].golds == [("Shakespeare",), ("Michael Jackson", "MJ")]
    assert [i.id for i in tasks[1].items] == ["hotpotqa-2", "hotpotqa-3"] and tasks[1].items[0].source == "hotpotqa"
    assert [i.question for i in load_qa(tmp_path / "test.parquet")] == [q for t in tasks for q in t.questions]


def test_question_parser_reads_our_prompt_and_mem1s():
    assert parse_mem1_questions("...Answer the following questions: a?; b?;c ?\n") == ["a?", "b?", "c ?"]
    assert parse_mem1_questions(qa_prompt(["x?"]) + "\nAnswer the following questions: y?") == ["y?"]
    assert parse_mem1_questions(qa_prompt(["who wrote it?", "when; where?"])) == ["who wrote it?", "when; where?"]
    assert parse_mem1_questions("no marker here") == []


def test_single_objective_search_r1_parquet_loads_both_ways(tmp_path):
    row = {"id": "nq_1", "question": "who wrote hamlet?", "golden_answers": ["Shakespeare"], "data_source": "nq",
           "prompt": [{"role": "user", "content": "Answer the given question... Question: who wrote hamlet?\n"}],
           "ability": "fact-reasoning", "reward_model": {"style": "rule", "ground_truth": {"target": ["Shakespeare"]}},
           "extra_info": {"split": "train", "index": 0}}  # fmt: skip
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "train.parquet")
    items = load_qa(tmp_path / "train.parquet")  # a "question" column: read as FlashRAG rows
    assert [(i.id, i.source, i.answers) for i in items] == [("nq_1", "nq", ("Shakespeare",))]
    (task,) = load_mem1_parquet(tmp_path / "train.parquet")
    assert task.questions == ["who wrote hamlet?"] and task.golds == [("Shakespeare",)]


def test_mem1_parquet_count_mismatch_names_the_row(tmp_path):
    rows = [
        _mem1_row(["a?", "b?"], [["1"], ["2"]], [0, 1]),
        _mem1_row(["c?", "d?"], [["3"], ["4"], ["5"]], [2, 3]),
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bad.parquet")
    with pytest.raises(DataFormatError, match=r"bad\.parquet row 1: parsed 2 question\(s\).*has 3"):
        load_mem1_parquet(tmp_path / "bad.parquet")


def test_mem1_parquet_missing_column(tmp_path):
    pq.write_table(pa.Table.from_pylist([{"data_source": "nq", "prompt": "x"}]), tmp_path / "cols.parquet")
    with pytest.raises(DataFormatError, match=r"cols\.parquet: missing column.*reward_model"):
        load_mem1_parquet(tmp_path / "cols.parquet")


# ---- errors ----------------------------------------------------------------------------------------------


def test_missing_column_names_file_row_and_column(tmp_path):
    path = _write_jsonl(tmp_path / "qa.jsonl", [FLASHRAG_ROWS[0], {"id": "x", "question": "q?"}])
    with pytest.raises(DataFormatError, match=r"qa\.jsonl row 1: missing column 'golden_answers'"):
        load_qa_file(path)


def test_bad_json_line_names_the_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps(FLASHRAG_ROWS[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"qa\.jsonl line 2"):
        load_qa_file(path)


def test_empty_answers_and_empty_files_are_errors(tmp_path):
    with pytest.raises(DataFormatError, match="row 0: golden_answers is empty"):
        load_qa_file(_write_jsonl(tmp_path / "a.jsonl", [{"id": "0", "question": "q?", "golden_answers": []}]))
    with pytest.raises(DataFormatError, match="has no rows"):
        load_qa_file(_write_jsonl(tmp_path / "b.jsonl", []))


def test_missing_file_unknown_suffix_and_broken_parquet(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_qa(tmp_path / "nope.jsonl")
    (tmp_path / "qa.csv").write_text("id,question\n")
    with pytest.raises(DataFormatError, match="unsupported extension '.csv'"):
        load_qa_file(tmp_path / "qa.csv")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataFormatError, match="broken.parquet: cannot be read as parquet"):
        load_qa(tmp_path / "broken.parquet")


def test_malformed_hops_are_reported():
    row = {"id": "0", "question": "q?", "golden_answers": ["a"], "metadata": {"hops": [{"query": "x"}]}}
    with pytest.raises(DataFormatError, match="hops entries need"):
        qa_item_from_row(row, where="f.jsonl row 0")
