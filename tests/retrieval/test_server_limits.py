"""Bounded work per request (issue 21): the /retrieve server's limits, and the BM25 query-term cap."""

from __future__ import annotations

import json
import logging
import socket

import pytest
import requests

from fixture_corpus import title_of
from mem1_gym.retrieval import make_retriever
from mem1_gym.retrieval.base import MAX_QUERY_TERMS, weighted_terms
from mem1_gym.retrieval.cli import main
from mem1_gym.retrieval.server import ServerLimits, start_server

USAGE = '"topk": 1..100 (0 or null: 2)'  # the usage hint every 422 ends with, for default_topk=2


@pytest.fixture(scope="module")
def server(bm25s_retriever):
    with start_server(bm25s_retriever, default_topk=2) as running:  # the shipped limits
        yield running


def post(server, body: bytes, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}/retrieve", data=body, headers={"Content-Type": "application/json"},
                         timeout=10, **kwargs)


def assert_still_serving(server) -> None:
    result = post(server, json.dumps({"queries": [title_of(4)], "topk": 1}).encode()).json()["result"]
    assert result[0][0]["id"] == "4"


@pytest.mark.parametrize("topk", [b"Infinity", b"1e400", b"-Infinity", b'"3"', b"true", b"3.5", b"101", b"-1"])
def test_topk_that_is_not_an_integer_in_range_is_a_422_naming_topk(server, topk):
    response = post(server, b'{"queries": ["x"], "topk": ' + topk + b"}")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("topk: ") and USAGE in detail
    assert_still_serving(server)


def test_topk_zero_or_null_means_the_default_as_in_search_r1(server):
    for topk in (0, None):
        result = post(server, json.dumps({"queries": ["trade"], "topk": topk}).encode()).json()["result"]
        assert len(result[0]) == 2  # default_topk


@pytest.mark.parametrize(
    "body, limit",
    [
        ({"queries": ["x"] * 4097}, "at most 4096 items"),
        ({"queries": ["ok", "y" * 4097]}, "queries.1: String should have at most 4096 characters"),
    ],
)
def test_too_many_or_too_long_queries_are_a_422_that_does_not_echo_them(server, body, limit):
    response = post(server, json.dumps(body).encode())
    assert response.status_code == 422 and limit in response.json()["detail"]
    assert len(response.content) < 500  # the message, not the request sent back
    assert_still_serving(server)


def _raw_request(server, head: bytes, body: bytes = b"") -> bytes:
    """The whole answer to a request sent as bytes (both answers here close the connection)."""
    with socket.create_connection((server.host, server.port), timeout=5) as conn:
        conn.sendall(head + body)
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
        return answer


def test_an_oversized_body_is_a_413_before_it_is_read_and_a_bad_length_a_400(server):
    head = b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n"
    answer = _raw_request(server, head % str((8 << 20) + 1).encode())  # no body sent: it must not wait for it
    assert answer.startswith(b"HTTP/1.1 413") and b"--max-body-bytes" in answer
    assert _raw_request(server, head % b"abc", b"{}").startswith(b"HTTP/1.1 400")
    assert_still_serving(server)


def test_limits_are_configurable_and_a_chunked_body_is_counted(bm25s_retriever):
    limits = ServerLimits(max_body_bytes=1000, max_queries=2, max_query_chars=10, max_topk=5)
    with start_server(bm25s_retriever, limits=limits) as running:
        chunks = (b" " * 400 for _ in range(4))  # no Content-Length: Transfer-Encoding chunked
        response = post(running, chunks)
        assert response.status_code == 413 and "1000 bytes" in response.json()["detail"]
        for body, limit in (({"queries": ["a", "b", "c"]}, "at most 2 items"), ({"queries": ["x" * 11]}, "at most 10"),
                            ({"queries": ["x"], "topk": 6}, "less than or equal to 5")):
            assert limit in post(running, json.dumps(body).encode()).json()["detail"]
        assert requests.get(f"{running.url}/health", timeout=5).json()["limits"]["max_topk"] == 5
    with pytest.raises(ValueError, match="max_queries"):
        ServerLimits(max_queries=0)


def test_hostile_bodies_never_get_a_5xx_or_an_error_log(server, caplog):
    bodies = [b'{"queries": ["x"], "topk": Infinity}', b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b"null",
              b'{"queries": [1, null, {}]}', json.dumps({"queries": ["year"] * 100_000}).encode()]
    uvicorn_log = logging.getLogger("uvicorn")  # it does not propagate to the root, where caplog listens
    uvicorn_log.addHandler(caplog.handler)
    try:
        statuses = [post(server, body).status_code for body in bodies]
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    assert all(400 <= status < 500 for status in statuses), statuses
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback logged
    assert_still_serving(server)


def test_serve_retriever_flags_set_the_limits(capsys):
    assert main(["serve-retriever", "--backend", "bm25s", "--corpus", "unused.jsonl", "--topk", "200"]) == 2
    assert "--max-topk" in capsys.readouterr().err  # refused before any index is opened
    assert main(["serve-retriever", "--max-queries", "0", "--backend", "bm25s", "--corpus", "unused.jsonl"]) == 2
    assert "--max-queries" in capsys.readouterr().err


# --------------------------------------------------------------------------- the query-term cap


def test_weighted_terms_counts_distinct_terms_in_first_occurrence_order():
    assert weighted_terms(["b", "a", "b", "c", "a", "b"]) == {"b": 3, "a": 2, "c": 1}
    assert list(weighted_terms(["b", "a", "b", "c", "a"], max_terms=2).items()) == [("b", 2), ("a", 2)]
    assert len(weighted_terms(str(i) for i in range(1000))) == MAX_QUERY_TERMS == 64


def test_a_word_repeated_5000_times_is_scored_once_with_its_count(bm25s_retriever):
    word = title_of(7).split()[0]
    (term,) = bm25s_retriever.query_terms(word)
    assert bm25s_retriever.query_terms(f"{word} " * 5000) == {term: 5000}
    once, repeated = bm25s_retriever.search([word, f"{word} " * 5000], k=3)
    assert [d.id for d in repeated] == [d.id for d in once]
    assert [d.score for d in repeated] == pytest.approx([5000 * d.score for d in once])  # BM25 sums repeats


def test_at_most_max_query_terms_distinct_terms_are_scored(bm25s_retriever, corpus_path, index_root):
    titles = " ".join(title_of(i) for i in range(1, 101))  # 200 distinct words
    terms = bm25s_retriever.query_terms(titles)
    assert len(terms) == 64 and terms == bm25s_retriever.query_terms(" ".join(title_of(i) for i in range(1, 33)))
    with make_retriever("bm25s", corpus_path=corpus_path, index_dir=index_root / "bm25s", max_query_terms=2) as two:
        assert len(two.query_terms(titles)) == 2 and two.search([titles], k=1)[0][0].id == "1"


def test_pyserini_searches_a_query_of_more_distinct_words_than_lucene_allows(pyserini_retriever):
    # Lucene refuses a query of over 1,024 distinct terms with a JVM exception, not a result.
    noise = " ".join(f"zz{i}q" for i in range(1500))
    assert pyserini_retriever.search([f"{title_of(9)} {noise}"], k=1)[0][0].id == "9"
    repeated, once = pyserini_retriever.search([f"{title_of(9)} " * 3, title_of(9)], k=3)
    assert [d.id for d in repeated] == [d.id for d in once]  # Lucene boosts a repeated term by its count
