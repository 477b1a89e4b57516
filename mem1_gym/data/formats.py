"""Readers and writers for QA files: FlashRAG / Search-R1 rows and MEM1's multi-objective parquet.

One code path for real and synthetic data: the synthetic world is written with
:func:`write_qa_jsonl` and read back with :func:`load_qa_file`, exactly like a FlashRAG file.

* FlashRAG / Search-R1 row: ``{"id", "question", "golden_answers": [...], "metadata": {...}}`` in
  ``.jsonl`` (optionally ``.gz``), ``.json`` (a list of rows, or JSON lines) or ``.parquet``. Our
  optional ``metadata`` fields: ``source``, ``kind``, ``gold_doc_ids``, ``hops``.
* MEM1 multi-objective parquet (reference/mem1.md §3.2): ``data_source``, ``prompt`` (one user
  message that ends with ``Answer the following questions: q1?; q2?``), ``reward_model.ground_truth
  .target`` (one alias list per question), ``extra_info.indices``. The prompt's text is kept as
  :attr:`Task.prompt`.

Errors name the file, the row and the fix. pyarrow is imported only when a parquet file is read.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from mem1_gym.data.tasks import Hop, QAItem, Task

SPLIT_STEMS = frozenset({"train", "dev", "validation", "val", "test"})
_QUESTIONS_MARKER = re.compile(r"answer the following (?:\d+ )?questions?\s*:", re.IGNORECASE)
# Questions are joined by "; " and each ends with "?": split only where a "?" is followed by ";",
# so a ";" inside a question (rare, but it happens in HotpotQA) does not split it.
_QUESTION_BOUNDARY = re.compile(r"(?<=\?)\s*;\s*")
# mem1_gym.protocol.qa_prompt lists them as "Q1: ..." lines instead.
_NUMBERED_QUESTION = re.compile(r"^Q\d+:[ \t]*(.+?)[ \t]*$", re.MULTILINE)


class DataFormatError(ValueError):
    """A QA file does not have the expected format; the message names the file, the row and the fix."""


# ---- FlashRAG / Search-R1 rows ------------------------------------------------------------------


def load_qa(qa_path: str | Path) -> list[QAItem]:
    """Any supported QA file: FlashRAG jsonl/json/parquet, or MEM1's parquet (flattened, task order kept)."""
    path = Path(qa_path)
    if _suffix(path) == ".parquet" and _is_mem1_parquet(path):
        return [item for task in load_mem1_parquet(path) for item in task.items]
    return load_qa_file(path)


def load_qa_file(path: str | Path, source: str | None = None) -> list[QAItem]:
    """Read FlashRAG/Search-R1 rows. ``source`` defaults to the row's ``metadata.source`` or
    ``data_source``, else the file's name (``nq/test.jsonl`` -> ``"nq"``)."""
    path = Path(path)
    default_source = source or _source_from_path(path)
    rows = _read_rows(path)
    items = [
        qa_item_from_row(
            row, default_source=default_source, default_id=f"{default_source}-{i}", where=f"{path} row {i}"
        )
        for i, row in enumerate(rows)
    ]
    if not items:
        raise DataFormatError(
            f'{path} has no rows; a QA file needs at least one {{"id", "question", "golden_answers"}} row'
        )
    return items


def qa_item_from_row(
    row: Mapping[str, Any], *, default_source: str = "unknown", default_id: str | None = None, where: str = "row"
) -> QAItem:
    """One :class:`QAItem` from a FlashRAG row (a dict, as read from json, pyarrow or pandas)."""
    if not isinstance(row, Mapping):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(row).__name__}")
    required = ("question", "golden_answers") if default_id is not None else ("id", "question", "golden_answers")
    for column in required:
        if column not in row or row[column] is None:
            raise DataFormatError(
                f'{where}: missing column {column!r}; FlashRAG rows need "question" and "golden_answers"'
            )
    meta = row.get("metadata") or {}
    if not isinstance(meta, Mapping):
        meta = {}  # real FlashRAG files sometimes store metadata as a string: ours is optional
    answers = _aliases(row["golden_answers"], where)
    hops = tuple(_hop(h, where) for h in _as_list(meta.get("hops")))
    return QAItem(
        id=str(row["id"]) if row.get("id") is not None else str(default_id),
        question=str(row["question"]),
        answers=answers,
        source=str(meta.get("source") or row.get("data_source") or default_source),
        kind=str(meta.get("kind") or "unknown"),
        gold_doc_ids=tuple(str(d) for d in _as_list(meta.get("gold_doc_ids"))),
        hops=hops,
    )


def item_to_row(item: QAItem) -> dict[str, Any]:
    """The FlashRAG row of an item (our metadata included), as :func:`write_qa_jsonl` writes it."""
    hops = [{"query": h.query, "answer": h.answer, "doc_id": h.doc_id} for h in item.hops]
    metadata = {"source": item.source, "kind": item.kind, "gold_doc_ids": list(item.gold_doc_ids), "hops": hops}
    return {"id": item.id, "question": item.question, "golden_answers": list(item.answers), "metadata": metadata}


def write_qa_jsonl(items: Iterable[QAItem], path: str | Path) -> Path:
    """Write FlashRAG jsonl (UTF-8, one row per line, ``\\n`` endings: byte-stable for the cache)."""
    path = Path(path)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for item in items:
            f.write(json.dumps(item_to_row(item), ensure_ascii=False) + "\n")
    return path


# ---- MEM1 multi-objective parquet -----------------------------------------------------------------


def load_mem1_parquet(path: str | Path) -> list[Task]:
    """Read MEM1's multi-objective parquet: one :class:`Task` per row, questions parsed from its prompt,
    which the task keeps (:attr:`Task.prompt`)."""
    path = Path(path)
    rows = _read_parquet(path)
    if not rows:
        raise DataFormatError(f"{path} has no rows; a MEM1 parquet needs at least one task row")
    missing = [c for c in ("data_source", "prompt", "reward_model") if c not in rows[0]]
    if missing:
        raise DataFormatError(
            f"{path}: missing column(s) {missing}; a MEM1 multi-objective parquet has data_source, prompt, "
            f"ability, reward_model, extra_info (for FlashRAG rows use load_qa_file)"
        )
    return [_task_from_row(row, f"{path} row {i}", i) for i, row in enumerate(rows)]


def parse_mem1_questions(prompt_text: str) -> list[str]:
    """The questions at the end of a prompt, after the last "Answer the following questions:":
    MEM1's "q1?; q2?" or our :func:`~mem1_gym.protocol.qa_prompt`'s "Q1: q1?" lines."""
    markers = list(_QUESTIONS_MARKER.finditer(prompt_text))
    if not markers:
        return []
    tail = prompt_text[markers[-1].end() :].strip()
    numbered = _NUMBERED_QUESTION.findall(tail)
    if numbered:
        return numbered
    return [q.strip() for q in _QUESTION_BOUNDARY.split(tail) if q.strip()]


def _task_from_row(row: Mapping[str, Any], where: str, row_no: int) -> Task:
    source = str(row.get("data_source") or "unknown")
    prompt = _user_content(row.get("prompt"), where)
    questions = parse_mem1_questions(prompt)
    if not questions and row.get("question"):
        questions = [str(row["question"])]  # a single-objective row ends with "Question: q" instead
    targets = _targets(row.get("reward_model"), where)
    if not questions or len(questions) != len(targets):
        raise DataFormatError(
            f"{where}: parsed {len(questions)} question(s) from the prompt but reward_model.ground_truth.target "
            f"has {len(targets)} alias list(s); the prompt must end with 'Answer the following questions: q1?; q2?' "
            f"(questions joined by '; ', each ending with '?')"
        )
    extra = row.get("extra_info") or {}
    indices = [str(i) for i in _as_list(extra.get("indices"))] if isinstance(extra, Mapping) else []
    split = str(extra.get("split", "")) if isinstance(extra, Mapping) else ""
    task_id = f"mem1-{source}-{split or 'row'}-{row_no}"
    items = tuple(
        QAItem(
            id=f"{source}-{indices[i]}" if len(indices) == len(questions) else f"{task_id}-q{i}",
            question=question,
            answers=aliases,
            source=source,
        )  # fmt: skip
        for i, (question, aliases) in enumerate(zip(questions, targets))
    )
    # The stored prompt is what MEM1's checkpoint read for this row: prompt_format="mem1" shows it verbatim.
    return Task(task_id, items, prompt=prompt)


def _user_content(prompt: Any, where: str) -> str:
    if isinstance(prompt, str):
        return prompt
    messages = [m for m in _as_list(prompt) if isinstance(m, Mapping) and m.get("role") == "user"]
    if not messages:
        raise DataFormatError(f'{where}: column \'prompt\' has no {{"role": "user", "content": ...}} message')
    return str(messages[-1].get("content", ""))


def _targets(reward_model: Any, where: str) -> list[tuple[str, ...]]:
    try:
        target = reward_model["ground_truth"]["target"]
    except (KeyError, TypeError) as err:
        raise DataFormatError(
            f"{where}: reward_model has no ground_truth.target ({err!r}); "
            f'expected {{"ground_truth": {{"target": [[aliases of q1], [aliases of q2], ...]}}}}'
        ) from err
    target = _as_list(target)
    if target and all(isinstance(t, str) for t in target):
        return [_aliases(target, where)]  # single-objective rows store one flat alias list
    return [_aliases(aliases, f"{where} target {i}") for i, aliases in enumerate(target)]


# ---- helpers ---------------------------------------------------------------------------------------


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _source_from_path(path: Path) -> str:
    stem = path.name.split(".")[0]
    return path.parent.name if stem.lower() in SPLIT_STEMS and path.parent.name else stem


def _read_rows(path: Path) -> list[Mapping[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(
            f"QA file not found at {path}; pass a FlashRAG .jsonl/.json/.parquet file or a MEM1 parquet"
        )
    suffix = _suffix(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix not in (".jsonl", ".json"):
        raise DataFormatError(f"{path}: unsupported extension {suffix!r}; use .jsonl, .json, .jsonl.gz or .parquet")
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(
                f"{path}: not valid JSON ({err}); expected a list of rows or one row per line"
            ) from err
    return _json_lines(text, path)


def _json_lines(text: str, path: Path) -> list[Mapping[str, Any]]:
    rows = []
    # Split on "\n" only: str.splitlines() also breaks at U+0085 and U+2028, which JSON leaves raw.
    for line_no, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataFormatError(
                    f"{path} line {line_no}: not a JSON object ({err}); fix or regenerate the file"
                ) from err
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"parquet file not found at {path}")
    pq = _pyarrow_parquet()
    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several unrelated types for a damaged file
        raise DataFormatError(f"{path}: cannot be read as parquet ({err}); re-download or re-export it") from err


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError('reading parquet needs pyarrow: pip install "mem1-gym[data]"') from err
    return pq


def _is_mem1_parquet(path: Path) -> bool:
    if not path.is_file():
        raise FileNotFoundError(
            f"QA file not found at {path}; pass a FlashRAG .jsonl/.json/.parquet file or a MEM1 parquet"
        )
    try:
        names = set(_pyarrow_parquet().read_schema(path).names)
    except Exception as err:  # see _read_parquet
        raise DataFormatError(f"{path}: cannot be read as parquet ({err}); re-download or re-export it") from err
    return "question" not in names and {"prompt", "reward_model"} <= names


def _as_list(value: Any) -> list[Any]:
    """Lists, tuples and numpy arrays (pandas' view of parquet lists) as a list; None as []."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)):
        return [value]
    if hasattr(value, "tolist"):
        return list(value.tolist())
    return list(value)


def _aliases(value: Any, where: str) -> tuple[str, ...]:
    aliases = tuple(str(a) for a in _as_list(value) if a is not None and str(a).strip())
    if not aliases:
        raise DataFormatError(f"{where}: golden_answers is empty; every question needs at least one answer alias")
    return aliases


def _hop(value: Any, where: str) -> Hop:
    try:
        return Hop(str(value["query"]), str(value["answer"]), str(value["doc_id"]))
    except (KeyError, TypeError) as err:
        raise DataFormatError(f'{where}: metadata.hops entries need "query", "answer" and "doc_id" ({err!r})') from err
