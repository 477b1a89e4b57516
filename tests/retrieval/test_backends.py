"""Every backend on the fixture corpus: right passage for a title query, shapes, edge-case queries."""

from __future__ import annotations

import pytest

from fixture_corpus import N_DOCS, UNICODE_TITLE, contents_of, title_of
from mem1_gym.retrieval import Doc

TITLE_ROWS = list(range(1, N_DOCS, 7))  # 29 titles spread over the corpus


def test_title_query_finds_its_passage(retriever):
    results = retriever.search([title_of(i) for i in TITLE_ROWS], k=3)
    top_ids = [docs[0].id if docs else None for docs in results]
    assert top_ids == [str(i) for i in TITLE_ROWS]


def test_hits_are_docs_best_first_with_the_corpus_text(retriever):
    (docs,) = retriever.search([title_of(42)], k=5)
    assert all(isinstance(d, Doc) for d in docs)
    assert docs[0].contents == contents_of(42)
    assert docs[0].title == f'"{title_of(42)}"'  # the protocol renders the title with its quotes
    scores = [d.score for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_batched_results_have_one_list_of_at_most_k_per_query(retriever):
    queries = [title_of(3), "festival in the old capital", title_of(3), "trade"]
    results = retriever.search(queries, k=4)
    assert len(results) == len(queries)
    assert all(1 <= len(docs) <= 4 for docs in results)
    assert [d.id for d in results[0]] == [d.id for d in results[2]]  # duplicates do not collide
    assert retriever.search([], k=3) == []


def test_k_larger_than_the_corpus_returns_at_most_the_corpus(retriever):
    (docs,) = retriever.search(["trade"], k=N_DOCS * 5)
    assert 0 < len(docs) <= N_DOCS
    assert len({d.id for d in docs}) == len(docs)


@pytest.mark.parametrize("query", ["", "   "])
def test_blank_query_finds_nothing(retriever, query):
    assert retriever.search([query, title_of(5)], k=3)[0] == []


def test_unicode_queries(retriever):
    weird = "Zürich ☃ 東京 — naïve café \u200b?"
    results = retriever.search([UNICODE_TITLE, weird], k=3)
    assert results[0][0].id == "0"
    assert len(results[1]) <= 3


def test_invalid_k_is_a_value_error(retriever):
    with pytest.raises(ValueError, match="k must be >= 1"):
        retriever.search(["x"], k=0)


def test_bm25s_and_pyserini_agree_on_title_queries(bm25s_retriever, pyserini_retriever):
    queries = [title_of(i) for i in range(N_DOCS)] + ["observatory coastal plain 1230", "guild"]
    ours = bm25s_retriever.search(queries, k=1)
    lucene = pyserini_retriever.search(queries, k=1)
    assert [d[0].id for d in ours[:N_DOCS]] == [d[0].id for d in lucene[:N_DOCS]]
    # Same BM25 formula, same k1/b, same idf: the scores match to Lucene's float precision.
    for a, b in zip(ours, lucene):
        assert a[0].score == pytest.approx(b[0].score, rel=1e-3)


def test_hnsw_matches_flat_on_a_small_corpus(faiss_flat_retriever, faiss_hnsw_retriever):
    queries = [title_of(i) for i in TITLE_ROWS]
    flat = faiss_flat_retriever.search(queries, k=3)
    hnsw = faiss_hnsw_retriever.search(queries, k=3)
    assert [[d.id for d in docs] for docs in flat] == [[d.id for d in docs] for docs in hnsw]
