"""The bm25s backend ranks from postings only; it must agree with bm25s' full scoring."""

import bm25s
import pytest

from fixture_corpus import contents_of, title_of


def reference_top(retriever, queries, k):
    """bm25s' own retrieve: scores every passage, then argpartition."""
    tokens = bm25s.tokenize(queries, lower=True, token_pattern=r"(?u)\b\w+\b", stopwords="en",
                            stemmer=retriever._stem, return_ids=False, show_progress=False)
    rows, scores = retriever._model.retrieve(tokens, k=k, show_progress=False)  # (Q, k), (Q, k)
    return [[float(s) for s in row_scores if s > 0] for row_scores in scores]


def test_sparse_scores_equal_full_scoring(bm25s_retriever):
    queries = [title_of(i) for i in range(0, 200, 3)] + [contents_of(i)[:60] for i in range(1, 200, 7)]
    queries += ["", "the of and", "unknownword", "Röntgen", title_of(5) + " " + title_of(5)]
    ours = [[d.score for d in docs] for docs in bm25s_retriever.search(queries, 5)]
    reference = reference_top(bm25s_retriever, queries, 5)
    for q, a, b in zip(queries, ours, reference):
        assert a == pytest.approx(b, rel=1e-5), q  # float64 sums vs bm25s' float32


def test_ties_are_broken_by_corpus_order(bm25s_retriever):
    # A repeated call must give the same ids in the same order (no partition-order leak).
    queries = ["passage", "river", title_of(3)]
    first = [[d.id for d in docs] for docs in bm25s_retriever.search(queries, 10)]
    assert first == [[d.id for d in docs] for docs in bm25s_retriever.search(queries, 10)]
