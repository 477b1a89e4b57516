"""tantivy's fast path (issue 20): common query terms only rank tantivy's candidates, never choose
them, and the answers stay those of scoring every passage; k answers are prefixes; a 10,000-word
query costs at most ``max_query_terms`` terms."""

from __future__ import annotations

import functools
import json

import pytest
from fixture_corpus import N_DOCS, title_of

from mem1_gym.retrieval import bm25_tantivy, make_retriever
from mem1_gym.retrieval.bm25_tantivy import TantivyConfig, TantivyRetriever

EVERY_PASSAGE = 10**6  # as candidates: tantivy proposes every passage that holds a query term
N_RARE = 40  # passages with "zork" only: more than the default candidates
QUESTIONS = (
    "zork city", "zork", "city", "the city of zork and its city gate", "zork barley3 meadow",
    "Which guild of the coastal plain trades with the harbour of the old capital?",
    "What is the river of the northern valleys called?",
)


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """"city" in most passages (a common word); "zork" in 41. The one passage with both is a little
    longer than the others with "zork", so on "zork" alone it ranks last, past the candidates."""
    path = tmp_path_factory.mktemp("crowded") / "crowded.jsonl"
    rows = [f"Zork {i}\nzork alpha beta" for i in range(N_RARE)]
    rows.append("Zork city\nzork city gamma delta epsilon")
    rows += [f"Town {i}\ncity walls{i} river{i % 7}" for i in range(200)]
    rows += [f"Field {i}\nbarley{i} meadow" for i in range(40)]
    path.write_text("".join(json.dumps({"id": str(i), "contents": c}) + "\n" for i, c in enumerate(rows)))
    with make_retriever("tantivy", corpus_path=path, index_dir=path.parent / "idx") as retriever:
        exhaustive = TantivyRetriever.load(path.parent / "idx", retriever._store, candidates=EVERY_PASSAGE, threads=1)
        yield retriever, exhaustive


def _ranks(hits):
    return [[(d.id, d.score) for d in docs] for docs in hits]


def _scores_and_untied_ids(hits):
    """Each list's scores, and the ids of the passages above the last score that no other passage
    has. Which passages tied at the candidates' cut tantivy proposes follows its segments, not rows."""
    out = []
    for docs in hits:
        scores = [d.score for d in docs]
        out.append([(d.id if scores.count(d.score) == 1 and d.score != scores[-1] else None, d.score) for d in docs])
    return out


def test_common_terms_still_rank_the_candidates(crowded):
    retriever, exhaustive = crowded
    assert retriever.config == TantivyConfig() and retriever.config.candidates < N_RARE
    # Proposing from "zork" alone would leave out passage 40 (zork + city): 30 shorter ones come first.
    top = retriever.search(["zork city"], k=3)[0]
    assert top[0].id == str(N_RARE)
    for k in (1, 3, 10, N_RARE + 5):  # N_RARE + 5: more than hold "zork", so city-only passages enter
        ours, every = retriever.search(list(QUESTIONS), k), exhaustive.search(list(QUESTIONS), k)
        assert _scores_and_untied_ids(ours) == _scores_and_untied_ids(every), k
    assert {d.id for d in retriever.search(["zork city"], N_RARE + 5)[0]} > {str(i) for i in range(N_RARE + 1)}


def test_full_questions_rank_as_without_the_pruning(tantivy_retriever, corpus_path, index_root, monkeypatch):
    questions = [f"Which {title_of(i)} of the coastal plain is named in the harbour trade?" for i in range(1, N_DOCS, 7)]
    doc_freq = functools.partial(tantivy_retriever._searcher.doc_freq, "body")
    weights = [{t: float(tantivy_retriever._idf(doc_freq(t))) for t in bm25_tantivy.lucene_terms(q)} for q in questions]
    share = tantivy_retriever.config.common_share
    assert all(bm25_tantivy._common_terms(w, share) for w in weights)  # "the coastal plain", "harbour trade"
    pruned = {k: tantivy_retriever.search(questions, k) for k in (3, 10)}
    with make_retriever("tantivy", corpus_path=corpus_path, index_dir=index_root / "tantivy",
                        candidates=EVERY_PASSAGE) as exhaustive:
        assert _scores_and_untied_ids(pruned[3]) == _scores_and_untied_ids(exhaustive.search(questions, 3))
    # At k=10 tantivy's own BM25 (k1=1.2, b=0.75) leaves some of the best passages out of its 30
    # candidates, with or without the pruning: the same answers when every term proposes.
    monkeypatch.setattr(bm25_tantivy, "_common_terms", lambda weights, share: set())
    for k, hits in pruned.items():
        assert tantivy_retriever.search(questions, k) == hits, k


def test_k_answers_are_prefixes_up_to_the_candidates(tantivy_retriever):
    queries = [title_of(i) for i in range(0, N_DOCS, 9)] + ["guild harbour trade", "the river of the old capital"]
    full = tantivy_retriever.search(queries, tantivy_retriever.config.candidates)
    for k in (1, 2, 3, 5, 10, 20):
        assert tantivy_retriever.search(queries, k) == [docs[:k] for docs in full], k


def test_a_ten_thousand_word_query_scores_at_most_max_query_terms(tantivy_retriever):
    query = " ".join(title_of(1 + i % 199) for i in range(5000))  # 10,000 words, 398 distinct
    first = " ".join(title_of(1 + i % 199) for i in range(5000) if i % 199 < 32)  # only its first 64 distinct words
    assert tantivy_retriever.config.max_query_terms == 64
    assert _ranks(tantivy_retriever.search([query], 3)) == _ranks(tantivy_retriever.search([first], 3))
