"""The /retrieve server and client over real HTTP on 127.0.0.1, and the client's failure modes."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from fixture_corpus import contents_of, title_of
from mem1_gym.retrieval import Doc, RetrievalError, Retriever
from mem1_gym.retrieval.http import HttpRetriever
from mem1_gym.retrieval.server import BatchingSearcher, start_server


@pytest.fixture(scope="module")
def server(bm25s_retriever):
    with start_server(bm25s_retriever, default_topk=2) as running:
        yield running


def test_server_binds_loopback_and_reports_health(server):
    assert server.url.startswith("http://127.0.0.1:")
    assert requests.get(f"{server.url}/health", timeout=5).json() == {
        "status": "ok",
        "backend": "bm25s",
        "default_topk": 2,
        "limits": {"max_body_bytes": 8 << 20, "max_queries": 4096, "max_query_chars": 4096, "max_topk": 100},
    }


def test_retrieve_with_scores_is_search_r1_format(server):
    body = {"queries": [title_of(4), title_of(8)], "topk": 3, "return_scores": True}
    result = requests.post(f"{server.url}/retrieve", json=body, timeout=5).json()["result"]
    assert len(result) == 2 and all(1 <= len(hits) <= 3 for hits in result)
    first = result[0][0]
    assert first["document"] == {"id": "4", "contents": contents_of(4)}
    assert isinstance(first["score"], float)


def test_retrieve_without_scores_returns_bare_documents(server):
    # The original server crashes here (reference/search-r1.md §3.1).
    body = {"queries": [title_of(4), title_of(8)], "topk": 1, "return_scores": False}
    result = requests.post(f"{server.url}/retrieve", json=body, timeout=5).json()["result"]
    assert result == [[{"id": "4", "contents": contents_of(4)}], [{"id": "8", "contents": contents_of(8)}]]


def test_missing_topk_and_return_scores_use_the_defaults(server):
    result = requests.post(f"{server.url}/retrieve", json={"queries": [title_of(6)]}, timeout=5).json()["result"]
    assert len(result[0]) == 2  # default_topk
    assert set(result[0][0]) == {"id", "contents"}  # return_scores defaults to false, as in Search-R1


def test_bad_requests_are_rejected_with_422(server):
    for body in ({"queries": "not a list"}, {"queries": ["x"], "topk": -1}, {"topk": 3}):
        assert requests.post(f"{server.url}/retrieve", json=body, timeout=5).status_code == 422


def test_client_round_trip_equals_in_process_search(server, bm25s_retriever):
    queries = [title_of(i) for i in range(10, 20)] + ["", "Zürich ☃"]
    with HttpRetriever(server.url) as client:
        remote = client.search(queries, k=3)
    assert remote == bm25s_retriever.search(queries, k=3)


def test_concurrent_clients_get_their_own_results(server):
    def search(i: int):
        with HttpRetriever(f"{server.url}/retrieve") as client:
            return client.search([f"{title_of(i)} trade"], k=1 + i % 3)  # "trade": every passage

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(search, range(1, 41)))
    assert [r[0][0].id for r in results] == [str(i) for i in range(1, 41)]
    assert [len(r[0]) for r in results] == [1 + i % 3 for i in range(1, 41)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_port_fails_fast_with_the_url_and_how_to_start_a_server():
    url = f"http://127.0.0.1:{_free_port()}/retrieve"
    client = HttpRetriever(url, timeout=2.0, retries=1, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(RetrievalError) as err:
        client.search(["anything"])
    assert time.monotonic() - started < 2.0
    assert url in str(err.value) and "mem1-gym serve-retriever" in str(err.value)


@pytest.fixture
def silent_server():
    """Accepts connections and never answers: a hung retrieval server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_slow_server_times_out_instead_of_hanging(silent_server):
    client = HttpRetriever(silent_server, timeout=0.5, retries=1, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(RetrievalError, match="no answer within 0.5 s") as err:
        client.search(["anything"])
    assert time.monotonic() - started < 2 * 0.5 + 1.0  # (retries + 1) * timeout, plus slack
    assert f"{silent_server}/retrieve" in str(err.value)


class _CannedHandler(BaseHTTPRequestHandler):
    """Answers every POST with ``server.canned`` (status, JSON-able body)."""

    def do_POST(self):  # noqa: N802  (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = self.server.canned
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def canned_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _CannedHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_client_reads_other_servers_document_shapes(canned_server):
    canned_server.canned = (200, {"result": [[
        {"document": {"id": "7", "contents": '"Seven"\nseven text'}, "score": 2.5},
        {"id": "8", "contents": '"Eight"\neight text'},  # bare document (return_scores false)
        {"document": {"contents": '"Serp"\nsnippet'}},  # SerpAPI-style: no id, no score
        {"document": {"title": "Lucene", "text": "raw text", "contents": '"Lucene"\nraw text'}, "score": 1},
        {"document": {"title": "No contents", "text": "only title and text"}},
    ]]})
    url = f"http://127.0.0.1:{canned_server.server_address[1]}"
    (docs,) = HttpRetriever(url).search(["q"], k=5)
    assert [(d.id, d.title, d.text, d.score) for d in docs] == [
        ("7", '"Seven"', "seven text", 2.5),
        ("8", '"Eight"', "eight text", None),
        ("", '"Serp"', "snippet", None),
        ("", '"Lucene"', "raw text", 1.0),
        ("", '"No contents"', "only title and text", None),
    ]


@pytest.mark.parametrize(
    "canned, message",
    [
        ((200, {"result": []}), "answered 1 queries with \\[\\]"),
        ((200, "<html>oops</html>"), "invalid JSON"),
        ((500, {"detail": "boom"}), "HTTP 500"),
        ((503, {"detail": "busy"}), "failed 2 attempt\\(s\\), last: HTTP 503"),
        ((200, {"result": [[{"document": {"id": "1"}}]]}), "without \"contents\""),
    ],
)
def test_malformed_answers_are_retrieval_errors_naming_the_url(canned_server, canned, message):
    canned_server.canned = canned
    url = f"http://127.0.0.1:{canned_server.server_address[1]}/retrieve"
    with pytest.raises(RetrievalError, match=message) as err:
        HttpRetriever(url, retries=1, backoff=0.01).search(["q"])
    assert url in str(err.value)


def test_server_stops_and_frees_its_port(bm25s_retriever):
    running = start_server(bm25s_retriever)
    url = running.url
    running.stop()
    running.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=2)


class _SlowRecorder(Retriever):
    """Echoes each query back as a passage, slowly, and records the size of every batch."""

    name = "recorder"

    def __init__(self, fail: bool = False):
        self.batches: list[int] = []
        self.fail = fail

    def search(self, queries, k=3):
        self.batches.append(len(queries))
        time.sleep(0.05)
        if self.fail:
            raise RetrievalError("backend down: restart it")
        return [[Doc(q, f'"{q}"', "text", 1.0)] * k for q in queries]


def test_concurrent_requests_are_merged_into_one_search_call():
    recorder = _SlowRecorder()
    searcher = BatchingSearcher(recorder)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: searcher.search([f"q{i}", f"r{i}"], k=1 + i % 2), range(16)))
    finally:
        searcher.close()
    assert [[docs[0].id for docs in r] for r in results] == [[f"q{i}", f"r{i}"] for i in range(16)]
    assert [len(r[0]) for r in results] == [1 + i % 2 for i in range(16)]
    assert sum(recorder.batches) == 32 and len(recorder.batches) < 16


def test_backend_failure_is_a_503_with_the_reason():
    with start_server(_SlowRecorder(fail=True)) as running:
        response = requests.post(f"{running.url}/retrieve", json={"queries": ["x"]}, timeout=5)
        assert response.status_code == 503 and "restart it" in response.json()["detail"]
        with pytest.raises(RetrievalError, match="HTTP 503"):
            HttpRetriever(running.url, retries=0).search(["x"])


def test_every_backend_serves_over_http(retriever):
    # The server's worker thread is the only caller: pyserini's JVM and torch see one thread.
    queries = [title_of(31), title_of(77)]
    with start_server(retriever) as running, HttpRetriever(running.url) as client:
        assert [[d.id for d in docs] for docs in client.search(queries, k=3)] == [
            [d.id for d in docs] for docs in retriever.search(queries, k=3)
        ]
