"""Issue 20, requirements 2 and 3: no backend, build or the mini-web holds the corpus text in memory;
builds stream the corpus and leave nothing loadable when interrupted.

"Holds the text" is checked by walking every object reachable from a retriever (or site) and
looking for the passages' contents, texts or titles among its strings: an in-memory corpus shows up
as hundreds of them, a memory-mapped docstore as none.
"""

from __future__ import annotations

import gc
import sys
import types

import bm25s
import pytest

from fixture_corpus import N_DOCS, contents_of, title_of
from mem1_gym.retrieval import RetrievalError, build_index, load_retriever
from mem1_gym.retrieval import bm25, lucene
from mem1_gym.retrieval.base import Corpus
from mem1_gym.retrieval.docstore import CorpusStream, DocStore, open_docstore
from mem1_gym.web.miniweb import MiniWebConfig, MiniWebSite, _title_key

_SKIPPED = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def _corpus_strings() -> set[str]:
    """Every passage's contents, text (what a Doc keeps) and plain title."""
    texts = set()
    for i in range(N_DOCS):
        texts |= {contents_of(i), contents_of(i).partition("\n")[2], title_of(i)}
    return texts


def _texts_held(root) -> int:
    """How many passage strings are reachable from ``root`` (modules, classes and functions are not
    followed: they are shared by the whole process, not held by the object)."""
    texts, seen, stack, found = _corpus_strings(), set(), [root], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SKIPPED):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            found += obj in texts
        elif not isinstance(obj, (bytes, int, float)):
            stack.extend(gc.get_referents(obj))
    return found


def test_the_probe_sees_an_in_memory_corpus(corpus_path):
    assert _texts_held(Corpus.load(corpus_path)) >= N_DOCS


@pytest.mark.parametrize(
    "backend", ["bm25s", "tantivy", "pyserini", "faiss-flat", "faiss-hnsw", "faiss-ivf-pq", "faiss-hnsw-sq8",
                "faiss-ivf-sq4", "faiss-ivf-sq4-refine"]
)
def test_no_backend_holds_the_corpus_text_after_load(backend, request):
    retriever = request.getfixturevalue(f"{backend.replace('-', '_')}_retriever")
    (docs,) = retriever.search([title_of(42)], k=3)
    assert contents_of(42) in [d.contents for d in docs]  # passages still come back whole
    assert _texts_held(retriever) == 0


def test_a_foreign_faiss_file_reads_passages_through_a_docstore(corpus_path, index_root, faiss_flat_retriever, cache):
    # Search-R1's e5_Flat.index + wiki-18.jsonl: the corpus used to be loaded whole into memory.
    index_file = index_root / "faiss-flat" / "index.faiss"
    with load_retriever("faiss-flat", index_file, corpus_path) as retriever:
        (docs,) = retriever.search([title_of(42)], k=3)
        assert [d.id for d in docs] == [d.id for d in faiss_flat_retriever.search([title_of(42)], k=3)[0]]
        assert _texts_held(retriever) == 0
    assert DocStore.exists(next(cache.rglob("docstore")))  # built once into the cache, reused after


def test_the_miniweb_holds_no_passage_text_and_serves_the_same_pages(corpus_path, index_root, bm25s_retriever, cache):
    config = MiniWebConfig(corpus_path=str(corpus_path), index_dir=str(index_root / "bm25s"))
    site = MiniWebSite.load(config)
    try:
        assert _texts_held(site) == 0
        in_memory = MiniWebSite(Corpus.load(corpus_path), bm25s_retriever, config)
        for doc_id in ("0", "1", "42", "199", "no-such-page"):
            assert site.page(doc_id) == in_memory.page(doc_id)
        assert site.home() == in_memory.home()
        assert site.search(title_of(7), 5) == in_memory.search(title_of(7), 5)
        assert site._row_titled(_title_key(title_of(8))) == 8  # what "See also" links, through the title map
        reopened = MiniWebSite.load(config)  # the title map is now read from its file
        assert reopened.page("42") == site.page("42")
        reopened.close()
    finally:
        site.close()


def test_the_bm25s_build_streams_the_text(corpus_path, tmp_path, monkeypatch):
    index = bm25s.BM25.index
    held = []

    def spy(self, *args, **kwargs):
        # Every passage has been read by now: count those the build's frames still hold.
        frame, found = sys._getframe(1), 0
        while frame.f_code.co_name != "test_the_bm25s_build_streams_the_text":
            found += _texts_held(list(frame.f_locals.values()))
            frame = frame.f_back
        held.append(found)
        return index(self, *args, **kwargs)

    monkeypatch.setattr(bm25s.BM25, "index", spy)
    build_index("bm25s", corpus_path, tmp_path / "idx")
    assert held == [0]


def test_the_bm25s_tokens_are_bm25s_own(corpus_path):
    # The streamed tokenizer gives each passage the terms bm25s.tokenize gives it (ids may differ).
    texts = [contents for _, contents in CorpusStream(corpus_path)]
    config = bm25.BM25Config().resolved()
    ours, vocab = bm25._tokenize(iter(texts), config)
    theirs = bm25s.tokenize(texts, lower=True, token_pattern=bm25._TOKEN_PATTERN, stopwords="en",
                            stemmer=bm25._stemmer(config.stemmer), show_progress=False)
    names, their_names = {i: t for t, i in vocab.items()}, {i: t for t, i in theirs.vocab.items()}
    assert [[names[i] for i in doc] for doc in ours] == [[their_names[i] for i in doc] for doc in theirs.ids]


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("backend", ["bm25s", "tantivy", "pyserini", "faiss-flat"])
def test_an_interrupted_build_leaves_nothing_that_loads(backend, corpus_path, tmp_path, monkeypatch):
    parse = CorpusStream._parse

    def interrupted(self, line, line_no):
        if line_no == N_DOCS // 2:
            raise _Interrupt("killed midway")
        return parse(self, line, line_no)

    monkeypatch.setattr(CorpusStream, "_parse", interrupted)
    out = tmp_path / "idx"
    with pytest.raises(_Interrupt):
        build_index(backend, corpus_path, out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name]
    with pytest.raises(RetrievalError, match="build it with|missing or damaged"):
        load_retriever(backend, out, corpus_path)


def test_an_interrupted_docstore_leaves_none(corpus_path, cache, monkeypatch):
    monkeypatch.setattr(CorpusStream, "_parse", lambda self, line, line_no: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        open_docstore(corpus_path)
    assert not [p for p in cache.rglob("*") if p.name == "docstore" or ".building-" in p.name]


def test_the_pyserini_build_streams_the_corpus_under_a_bounded_heap(corpus_path, tmp_path, monkeypatch):
    lucene.configure_jvm()
    import jnius_config

    assert f"-Xmx{lucene.JVM_HEAP}" in jnius_config.get_options()
    from pyserini.index.lucene import LuceneIndexer

    parse, add = CorpusStream._parse, LuceneIndexer.add_batch_raw
    read, batches = [0], []

    def counted(self, line, line_no):
        read[0] += 1
        return parse(self, line, line_no)

    def spy(self, docs):
        batches.append((len(docs), read[0]))
        return add(self, docs)

    monkeypatch.setattr(CorpusStream, "_parse", counted)
    monkeypatch.setattr(LuceneIndexer, "add_batch_raw", spy)
    monkeypatch.setattr(lucene, "_INDEX_BATCH", 16)
    build_index("pyserini", corpus_path, tmp_path / "idx")
    # Handed to Lucene 16 at a time, each batch as soon as it was read: never the whole corpus at once.
    assert sum(n for n, _ in batches) == N_DOCS and max(n for n, _ in batches) == 16
    assert [lines for _, lines in batches][:3] == [16, 32, 48]
