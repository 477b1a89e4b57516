"""The synthetic encyclopedia: determinism, formats, splits, aliases, retrievability, the cache."""

from __future__ import annotations

import json
import multiprocessing
import random
import re
from collections import Counter
from pathlib import Path

import bm25s
import pytest

from mem1_gym.data.formats import load_qa_file
from mem1_gym.data.manifest import MANIFEST_FILE
from mem1_gym.data.synthetic import (
    WORLD_INFO,
    WORLD_VERSION,
    World,
    WorldConfig,
    ensure_world,
    generate_world,
    write_world,
)
from mem1_gym.data.synthetic_entities import LATEST_YEAR, Company, Person, Work
from mem1_gym.data.synthetic_graph import build_entities
from mem1_gym.protocol import normalize_answer
from mem1_gym.retrieval.base import Corpus

SPLITS = ("train", "validation", "test")
TINY = WorldConfig(n_passages=600, seed=3)


def _norm_tokens(text: str) -> set[str]:
    return set(normalize_answer(text).split())


def _contains(haystack: str, needle: str) -> bool:
    return f" {normalize_answer(needle)} " in f" {normalize_answer(haystack)} "


def hop_hit_rate(world: World, k: int = 3) -> float:
    """Share of hop queries whose gold passage BM25 ranks in the top ``k`` (bm25s, English stopwords)."""
    ids = [doc_id for doc_id, _ in world.corpus]
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize([c for _, c in world.corpus], stopwords="en", show_progress=False), show_progress=False
    )
    hops = [hop for split in SPLITS for item in world.questions[split] for hop in item.hops]
    tokens = bm25s.tokenize([hop.query for hop in hops], stopwords="en", show_progress=False)
    rows, _ = retriever.retrieve(tokens, k=k, show_progress=False)
    hits = sum(hop.doc_id in {ids[r] for r in row} for hop, row in zip(hops, rows))
    return hits / len(hops)


# ---- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_passages": 100}, "n_passages"),
        ({"questions_per_entity": 0}, "questions_per_entity"),
        ({"kind_weights": (1.0, -1.0, 0.0)}, "kind_weights"),
        ({"kind_weights": (0.0, 0.0, 0.0)}, "kind_weights"),
        ({"split_fractions": (0.9, 0.1, 0.0)}, "split_fractions"),
        ({"distractor_rate": 1.5}, "distractor_rate"),
    ],
)
def test_config_rejects_bad_values_with_the_field_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        WorldConfig(**kwargs)


def test_cache_key_depends_on_config_and_version():
    assert WorldConfig().key() == WorldConfig().key()
    assert WorldConfig().key() != WorldConfig(seed=1).key()
    assert re.fullmatch(rf"world-v{WORLD_VERSION}-[0-9a-f]{{12}}", WorldConfig().key())


# ---- determinism and formats ---------------------------------------------------------------------


def test_same_config_gives_byte_identical_files(tmp_path):
    a = write_world(TINY, tmp_path / "a")
    b = write_world(TINY, tmp_path / "b")
    names = sorted(p.name for p in a.root.iterdir())
    assert names == ["corpus.jsonl", "test.jsonl", "train.jsonl", "validation.jsonl", WORLD_INFO]
    for name in names:
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes(), name


def test_another_seed_gives_another_world():
    assert generate_world(TINY).corpus != generate_world(WorldConfig(n_passages=600, seed=4)).corpus


def test_corpus_is_search_r1_format_with_wiki_style_passages(tmp_path):
    files = write_world(TINY, tmp_path)
    rows = [json.loads(line) for line in files.corpus_path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= TINY.n_passages and all(set(row) == {"id", "contents"} for row in rows)
    assert [row["id"] for row in rows] == [str(i) for i in range(len(rows))]
    corpus = Corpus.load(files.corpus_path)
    starts_with_title, words = 0, []
    for i in range(len(corpus)):
        doc = corpus.doc(i)
        assert re.fullmatch(r'"[^"\n]+"', doc.title), doc.title
        starts_with_title += doc.text.removeprefix("The ").startswith(doc.title.strip('"').removeprefix("The "))
        words.append(len(doc.text.split()))
    assert 60 <= min(words) and max(words) <= 120
    years = [int(y) for row in rows for y in re.findall(r"(?<![\d,])\d{4}(?![\d,])", row["contents"])]
    assert max(years) <= LATEST_YEAR  # nothing happens after the world's present
    assert starts_with_title / len(corpus) > 0.6  # "usually starts with the title again", as wiki-18


def test_every_split_has_every_kind_of_question(small_world):
    sizes = {split: len(small_world.questions[split]) for split in SPLITS}
    assert sizes["train"] > sizes["validation"] > 0 and sizes["train"] > sizes["test"] > 0
    for split in SPLITS:
        kinds = Counter(item.kind for item in small_world.questions[split])
        assert set(kinds) == {"single", "bridge", "comparison"}, (split, kinds)
        hops = {"single": 1, "bridge": 2, "comparison": 2}
        assert all(len(item.hops) == hops[item.kind] for item in small_world.questions[split])


def test_splits_are_disjoint_by_id_text_and_named_entity(small_world):
    titles = {doc_id: contents.partition("\n")[0] for doc_id, contents in small_world.corpus}
    seen_ids, seen_texts, named = set(), set(), {}
    for split in SPLITS:
        items = small_world.questions[split]
        ids, texts = {i.id for i in items}, {i.question for i in items}
        assert len(ids) == len(texts) == len(items)  # unique inside a split too
        assert not ids & seen_ids and not texts & seen_texts
        seen_ids |= ids
        seen_texts |= texts
        # The entities a question names: the subject of its first hop, and both sides of a comparison.
        named[split] = {titles[i.hops[0].doc_id] for i in items} | {
            titles[i.hops[1].doc_id] for i in items if i.kind == "comparison"
        }
    assert not named["train"] & named["validation"]
    assert not named["train"] & named["test"] and not named["validation"] & named["test"]


def test_answers_aliases_and_hops_are_consistent(small_world):
    docs = dict(small_world.corpus)
    for item in (i for split in SPLITS for i in small_world.questions[split]):
        aliases = [normalize_answer(a) for a in item.answers]
        assert all(aliases) and len(set(aliases)) == len(aliases), item.answers
        assert item.gold_doc_ids == tuple(dict.fromkeys(h.doc_id for h in item.hops))
        for hop in item.hops:
            assert _contains(docs[hop.doc_id], hop.answer), (hop, docs[hop.doc_id])
            assert _norm_tokens(hop.query) <= _norm_tokens(docs[hop.doc_id]), hop
        if item.kind == "comparison":
            compared = {docs[h.doc_id].partition("\n")[0].strip('"') for h in item.hops}
            assert item.answers[0] in compared
        else:
            assert normalize_answer(item.hops[-1].answer) in aliases
        assert not _contains(item.question, item.answers[0]) or item.kind == "comparison"


def test_bridge_answers_need_the_second_passage(small_world):
    docs = dict(small_world.corpus)
    bridges = [i for split in SPLITS for i in small_world.questions[split] if i.kind == "bridge"]
    shortcut = sum(any(_contains(docs[i.hops[0].doc_id], a) for a in i.answers) for i in bridges)
    assert shortcut <= 0.02 * len(bridges)  # only chance mentions of a random city


def test_aliases_include_short_forms(small_world):
    answers = [i.answers for split in SPLITS for i in small_world.questions[split]]
    assert any(re.fullmatch(r"[A-Z]\. \S.*", a) for aliases in answers for a in aliases)  # "A. Venn"
    assert any(", " in a for aliases in answers for a in aliases)  # "Tarsen, Valdoria"
    assert any(a.isdigit() and len(a) == 4 for aliases in answers for a in aliases)  # a year


def test_near_namesakes_share_fields_but_not_names():
    world = build_entities(random.Random(0), 3000, (0.8, 0.1, 0.1), distractor_rate=0.5)
    kinds = Counter(type(a).__name__ for a, _ in world.namesakes)
    assert set(kinds) == {"City", "Person", "Company", "Work"} and kinds["Person"] > 100
    for a, b in world.namesakes:
        assert a.name != b.name and a.split == b.split
        if isinstance(a, Person):  # "Aldric Venn" / "Aldric Vennor" or "Beril Venn": same trade and town
            assert a.occupation == b.occupation and a.born_city is b.born_city and a.born_year != b.born_year
            assert a.given == b.given or (a.surname == b.surname and a.given[0] != b.given[0])
        elif isinstance(a, Company):  # "Velmora Shipping Company" / "Velmora Trading Company"
            assert a.name.split()[0] == b.name.split()[0] and a.industry != b.industry
            assert a.headquarters is b.headquarters
        elif isinstance(a, Work):  # "The Harbour of Kesmir" / "Kesmir Lanterns"
            assert set(a.name.split()) & set(b.name.split()) - {"The", "of"} and a.kind == b.kind
        else:  # "Tarsen" / "Tarsenholm"
            assert b.name.startswith(a.name) and a.country is b.country


def test_hop_queries_retrieve_their_gold_passage_in_bm25_top3(small_world):
    assert hop_hit_rate(small_world) >= 0.9


# ---- files and the cache ----------------------------------------------------------------------------


def test_written_questions_load_back_through_the_flashrag_loader(tmp_path, small_world):
    files = ensure_world(small_world.config, root=tmp_path)
    for split in SPLITS:
        assert load_qa_file(files.qa_paths[split]) == small_world.questions[split]
    assert Corpus.load(files.corpus_path).ids == [doc_id for doc_id, _ in small_world.corpus]


def test_ensure_world_generates_once_under_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEM1_GYM_CACHE", str(tmp_path))
    first = ensure_world(TINY)
    assert first.root == tmp_path / TINY.key() and (first.root / MANIFEST_FILE).is_file()
    stamp = first.corpus_path.stat().st_mtime_ns
    assert ensure_world(TINY) == first and first.corpus_path.stat().st_mtime_ns == stamp
    assert _listing(tmp_path) == [TINY.key()]  # no temporary directory left


def _listing(folder: Path) -> list[str]:
    """The names in ``folder`` but the build lock file, which stays (deleting it would break the lock)."""
    return [p.name for p in folder.iterdir() if not p.name.endswith(".lock")]


def _race(root: str, barrier) -> tuple[str, int]:
    barrier.wait()
    files = ensure_world(TINY, root=root)
    return str(files.root), len(files.corpus_path.read_bytes())


def test_ensure_world_survives_concurrent_callers(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Manager().Barrier(4)
    with ctx.Pool(4) as pool:
        results = pool.starmap(_race, [(str(tmp_path), barrier)] * 4)
    assert len(set(results)) == 1
    root = Path(results[0][0])
    assert _listing(tmp_path) == [root.name]
    reference = write_world(TINY, tmp_path.parent / f"{tmp_path.name}-reference")
    for name in ("corpus.jsonl", "train.jsonl", "validation.jsonl", "test.jsonl"):
        assert (root / name).read_bytes() == (reference.root / name).read_bytes()


@pytest.mark.slow
def test_default_world_is_large_and_retrievable():
    world = generate_world(WorldConfig())
    assert len(world.corpus) >= 20_000
    assert min(len(world.questions[s]) for s in SPLITS) >= 1000
    assert hop_hit_rate(world) >= 0.9
