"""Deterministic tie order (issue 20): hits rank by score, then corpus row (pyserini and tantivy:
passage id as a string, Lucene's order),
so the answer for k is the prefix of the answer for any larger k, and the server, which searches a
merged batch at its largest k, answers each request exactly as the backend does in process."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from mem1_gym.retrieval import make_retriever
from mem1_gym.retrieval.http import HttpRetriever
from mem1_gym.retrieval.server import start_server

# Four passages, each copied 12 times: every query ties on whole groups of identical passages.
_TEXTS = (
    '"Harbour Guild"\nA guild of the harbour and its river trade.',
    '"Old Harbour"\nThe harbour trade of the old capital.',
    '"River Fortress"\nA fortress on the river.',
    '"Salt Market"\nA market of salt and grain.',
)
N_ROWS = 48
QUERIES = ("harbour", "river trade", "guild harbour trade", "fortress river", "salt grain harbour")
K = 20  # every query matches at least two groups (24 passages)
# Ids that sort like their rows, so every backend's tie order is corpus order (pyserini's is the id string's).
IDS = [f"p{row:03d}" for row in range(N_ROWS)]


@pytest.fixture(scope="module")
def tied_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("tied") / "tied.jsonl"
    path.write_text("".join(json.dumps({"id": IDS[row], "contents": _TEXTS[row % 4]}) + "\n" for row in range(N_ROWS)))
    return path


@pytest.fixture(scope="module", params=["bm25s", "pyserini", "faiss-flat", "faiss-hnsw"])
def tied(request, tied_corpus):
    index_dir = tied_corpus.parent / request.param
    with make_retriever(request.param, corpus_path=tied_corpus, index_dir=index_dir) as retriever:
        yield retriever


def test_ties_rank_by_corpus_row_and_k_answers_are_prefixes(tied):
    full = tied.search(list(QUERIES), K)  # one batch per call: a dense query embeds alike in each
    for query, hits in zip(QUERIES, full):
        assert len(hits) == K
        ranks = [(-doc.score, IDS.index(doc.id)) for doc in hits]
        assert ranks == sorted(ranks), query
        # The query does tie (pyserini lowers tied scores by ~1e-6 per place, Anserini's tie adjuster).
        assert len({round(doc.score, 4) for doc in hits}) < K
    for k in (1, 2, 3, 5, 8, 11, 12, 13, 16, 19):  # cuts inside and at the edges of the tied groups
        assert tied.search(list(QUERIES), k) == [hits[:k] for hits in full], k


@pytest.mark.parametrize("backend,options", [("bm25s", {}), ("pyserini", {}), ("tantivy", {"candidates": 5})])
def test_server_answers_mixed_k_traffic_exactly_as_in_process(tied_corpus, backend, options):
    # Dense backends are left out: a query's embedding moves by ~1e-7 with its encoder batch.
    # tantivy with 5 candidates: its answer for k = 3 is not the prefix of its answer for k = 20
    # (the 5 it re-scores are not the 5 lowest ids of a tie), so a batch searched at the largest k fails.
    rng = random.Random(0)
    requests_ = [([rng.choice(QUERIES) for _ in range(rng.randint(1, 4))], rng.randint(1, K)) for _ in range(60)]
    index_dir = tied_corpus.parent / backend
    with make_retriever(backend, corpus_path=tied_corpus, index_dir=index_dir, **options) as retriever:
        expected = [retriever.search(queries, k) for queries, k in requests_]
        with start_server(retriever) as server:

            def ask(request):
                with HttpRetriever(server.url) as client:
                    return client.search(*request)

            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(ask, requests_))
    assert answers == expected


def test_tantivy_breaks_ties_by_id_as_pyserini_does(tmp_path):
    # Ids that sort against the rows (a permutation): a tie must keep the passage Lucene keeps.
    ids = [f"p{row * 7 % N_ROWS:03d}" for row in range(N_ROWS)]
    corpus = tmp_path / "shuffled.jsonl"
    corpus.write_text("".join(json.dumps({"id": ids[row], "contents": _TEXTS[row % 4]}) + "\n" for row in range(N_ROWS)))
    answers = {}
    for backend in ("tantivy", "pyserini"):
        with make_retriever(backend, corpus_path=corpus, index_dir=tmp_path / backend) as retriever:
            answers[backend] = {k: retriever.search(list(QUERIES), k) for k in (1, 3, 5, 12, 13, K)}
    for k, hits in answers["tantivy"].items():
        assert [[d.id for d in h] for h in hits] == [[d.id for d in h] for h in answers["pyserini"][k]], k
        assert hits == [h[:k] for h in answers["tantivy"][K]], k  # prefixes of the deepest answer
    # ties broken by corpus row instead would have ordered these answers differently
    by_row = [sorted(h, key=lambda d: (-d.score, ids.index(d.id))) for h in answers["tantivy"][K]]
    assert by_row != answers["tantivy"][K]
