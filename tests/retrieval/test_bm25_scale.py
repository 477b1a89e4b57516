"""Issue 20: tantivy (Lucene-exact BM25 without Java), the memory-mapped docstore, bad corpus
lines, interrupted builds, bm25s' memory refusal and the automatic backend choice."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from fixture_corpus import N_DOCS, contents_of, title_of, write_corpus
from mem1_gym.retrieval import Corpus, RetrievalError, build_index, load_retriever, make_retriever
from mem1_gym.retrieval import bm25, bm25_tantivy, build
from mem1_gym.retrieval.cli import main as cli_main
from mem1_gym.retrieval.docstore import CorpusStream, DocStore


@pytest.fixture
def small_corpus(tmp_path):
    return write_corpus(tmp_path / "small.jsonl", n_docs=40)


def _with_bad_line(path, line: str, at: int = 5):
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(at - 1, line + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_tantivy_ranks_and_scores_as_pyserini(tantivy_retriever, pyserini_retriever):
    others = ["observatory coastal plain 1230", "guild", "the harbour trade trade"]
    queries = [title_of(i) for i in range(N_DOCS)] + others
    ours, lucene = tantivy_retriever.search(queries, k=3), pyserini_retriever.search(queries, k=3)
    # Titles have no ties: the same top-3. The other queries tie many passages (equal scores in any
    # order; Lucene's order is its internal doc ids), so only the scores are compared there.
    assert [{d.id for d in docs} for docs in ours[:N_DOCS]] == [{d.id for d in docs} for docs in lucene[:N_DOCS]]
    # Lucene's BM25 with k1=0.9, b=0.4 and its one-byte lengths, re-scored: the same scores (pyserini
    # rounds them to 4 decimals).
    for a, b in zip(ours, lucene):
        assert [d.score for d in a] == pytest.approx([d.score for d in b], rel=1e-4)


def test_lucene_length_encoding_matches_smallfloat():
    # SmallFloat.byte4ToInt(intToByte4(n)) values from Lucene: exact below 40, then 4 significant bits.
    expected = {0: 0, 23: 23, 39: 39, 40: 40, 41: 40, 47: 46, 100: 96, 1000: 984}
    assert {n: bm25_tantivy._lucene_length(n) for n in expected} == expected


def test_indexes_read_passages_through_the_docstore(corpus_path, tantivy_retriever, bm25s_retriever, index_root,
                                                   monkeypatch):
    def no_full_load(*args, **kwargs):
        raise AssertionError("the corpus text was loaded into memory")

    monkeypatch.setattr(Corpus, "load", no_full_load)
    for backend in ("tantivy", "bm25s"):
        with load_retriever(backend, index_root / backend, corpus_path) as retriever:
            (docs,) = retriever.search([title_of(42)], k=1)
            assert docs[0].contents == contents_of(42)
    store = DocStore(index_root / "tantivy", corpus_path)
    assert len(store) == N_DOCS
    assert store.row_of("42") == 42 and store.doc(42).contents == contents_of(42)
    assert store.row_of("no-such-id") is None
    store.close()


def test_gzipped_corpus_is_copied_for_random_access(small_corpus, tmp_path):
    gz = tmp_path / "small.jsonl.gz"
    gz.write_bytes(gzip.compress(small_corpus.read_bytes()))
    with make_retriever("tantivy", corpus_path=gz, index_dir=tmp_path / "idx") as retriever:
        (docs,) = retriever.search([title_of(7)], k=1)
    assert docs[0].contents == contents_of(7)


@pytest.mark.parametrize("bad", ['{"id": "x", "contents": "unterminated', '{"id": "x", "text": "no contents"}'])
@pytest.mark.parametrize("backend", ["tantivy", "bm25s"])
def test_a_bad_corpus_line_stops_the_build_with_its_number(small_corpus, tmp_path, backend, bad):
    _with_bad_line(small_corpus, bad, at=5)
    with pytest.raises(RetrievalError, match=r"line 5 .*--skip-bad-lines"):
        build_index(backend, small_corpus, tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


def test_skip_bad_lines_skips_and_counts(small_corpus, tmp_path, capsys):
    _with_bad_line(small_corpus, "not json at all", at=3)
    _with_bad_line(small_corpus, '{"id": "y"}', at=10)
    out = tmp_path / "idx"
    assert cli_main(["build-index", "--backend", "tantivy", "--corpus", str(small_corpus), "--out", str(out),
                     "--skip-bad-lines"]) == 0
    assert "(2 bad lines skipped)" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["corpus"]["n_docs"], meta["corpus"]["skipped_lines"]) == (40, 2)
    with load_retriever("tantivy", out) as retriever:
        assert retriever.search([title_of(20)], k=1)[0][0].id == "20"


@pytest.mark.parametrize("backend", ["tantivy", "bm25s"])
def test_an_interrupted_build_leaves_no_index_that_loads(small_corpus, tmp_path, monkeypatch, backend):
    calls = {"n": 0}
    real = CorpusStream._parse

    def fail_midway(self, line, line_no):  # Ctrl-C half-way through reading the corpus
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return real(self, line, line_no)

    monkeypatch.setattr(CorpusStream, "_parse", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        build_index(backend, small_corpus, tmp_path / "idx")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["small.jsonl"]
    with pytest.raises(RetrievalError, match="no .* index"):
        make_retriever(backend, corpus_path=small_corpus, index_dir=tmp_path / "idx", build=False)


def test_bm25s_refuses_a_corpus_beyond_the_memory_available(small_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(bm25, "available_memory", lambda: small_corpus.stat().st_size)
    with pytest.raises(RetrievalError, match=r"bm25s index .* would need .*tantivy.*pyserini"):
        build_index("bm25s", small_corpus, tmp_path / "idx")
    assert not (tmp_path / "idx").exists()
    build_index("tantivy", small_corpus, tmp_path / "idx")  # the memory-mapped alternative builds


def test_auto_picks_tantivy_above_the_threshold_and_bm25s_for_the_world(small_corpus, monkeypatch, caplog):
    from mem1_gym.envs.qa_common import QAConfig

    assert QAConfig().retriever == "bm25s"  # the synthetic world
    assert QAConfig(corpus_path=str(small_corpus)).retriever == "bm25s"  # a small corpus
    monkeypatch.setattr(build, "AUTO_TANTIVY_BYTES", small_corpus.stat().st_size - 1)
    with caplog.at_level(logging.INFO, logger="mem1_gym.retrieval.build"):
        assert QAConfig(corpus_path=str(small_corpus)).retriever == "tantivy"
    assert "using the tantivy BM25 backend" in caplog.text
    assert QAConfig(corpus_path=str(small_corpus), retriever="bm25s").retriever == "bm25s"  # an explicit choice stays
