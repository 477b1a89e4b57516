"""``mem1-gym serve-retriever --workers N`` (issue 20): N processes behind one port answer exactly as
the in-process backend, keep the request limits, and a 10,000-word query never stalls the server."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from fixture_corpus import title_of
from mem1_gym.retrieval.http import HttpRetriever
from mem1_gym.retrieval.server import ServerLimits, start_server

WORKERS = 2
TEN_THOUSAND_WORDS = " ".join(f"w{i}x" for i in range(10_000))  # 10,000 distinct words, 59 KB


@pytest.fixture(scope="module")
def workers_server(bm25s_retriever, index_root, tmp_path_factory):
    """The CLI on a free port (--port 0) with the shipped limits; yields (url, server process)."""
    log = tmp_path_factory.mktemp("workers") / "server.log"
    command = [sys.executable, "-m", "mem1_gym.cli", "serve-retriever", "--index", str(index_root / "bm25s"),
               "--port", "0", "--topk", "2", "--workers", str(WORKERS)]
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = _wait_for_url(process, log)
        requests.get(f"{url}/health", timeout=60).raise_for_status()  # queued until a worker is up
        yield url, process
    finally:
        process.send_signal(signal.SIGINT)  # uvicorn's supervisor stops its workers, then itself
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_url(process: subprocess.Popen, log, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text().splitlines():
            if line.startswith("serving the "):
                return line.split(" on ")[1].split("/retrieve")[0]
        time.sleep(0.05)
    raise AssertionError(f"the server did not start: {log.read_text()[-2000:]}")


def test_workers_answer_concurrent_mixed_traffic_as_in_process(workers_server, bm25s_retriever):
    url, process = workers_server
    rng = random.Random(1)
    pool_of_queries = [title_of(i) for i in range(1, 60)] + ["trade", "river trade", "the old capital guild"]
    batches = [([rng.choice(pool_of_queries) for _ in range(rng.randint(1, 8))], rng.randint(1, 12))
               for _ in range(40)]

    def ask(batch):
        with HttpRetriever(url) as client:
            return client.search(*batch)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, batches))
    assert answers == [bm25s_retriever.search(queries, k) for queries, k in batches]
    workers = [p for p in psutil.Process(process.pid).children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == WORKERS


def test_workers_keep_the_request_limits(workers_server):
    url, _ = workers_server
    response = requests.post(f"{url}/retrieve", json={"queries": ["x"], "topk": 101}, timeout=10)
    assert response.status_code == 422 and response.json()["detail"].startswith("topk: ")
    too_big = b"x" * ((8 << 20) + 1)
    response = requests.post(f"{url}/retrieve", data=too_big, headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413 and "--max-body-bytes" in response.json()["detail"]
    response = requests.post(f"{url}/retrieve", json={"queries": [TEN_THOUSAND_WORDS]}, timeout=10)
    assert response.status_code == 422 and "at most 4096 characters" in response.json()["detail"]
    assert requests.post(f"{url}/retrieve", json={"queries": [title_of(5)]}, timeout=10).json()["result"][0][0]["id"] == "5"


def test_a_ten_thousand_word_query_scores_at_most_64_terms(bm25s_retriever):
    # Allowed once --max-query-chars is raised: its cost is tokenising it, then 64 terms' postings.
    query = " ".join(title_of(1 + i % 199) for i in range(5000))  # 10,000 words, 398 distinct
    assert len(bm25s_retriever.query_terms(query)) == 64
    with start_server(bm25s_retriever, limits=ServerLimits(max_query_chars=200_000)) as server:
        body = {"queries": [query, title_of(3)], "topk": 1}
        result = requests.post(f"{server.url}/retrieve", json=body, timeout=30).json()["result"]
    assert len(result[0]) == 1 and result[1][0]["id"] == "3"


def test_tantivy_workers_share_the_cores_unless_threads_is_given():
    """Each tantivy worker searches on a thread pool of its own: by default the workers together ask for
    the machine's cores, not workers x 2 threads (oversubscribed, 4 workers served 17 % fewer queries
    on 2 cores); a given ``threads`` and the other backends are left alone."""
    from mem1_gym.retrieval.server import IndexSpec, worker_spec

    tantivy = IndexSpec("tantivy", "idx", None, {"k1": 0.9})
    assert worker_spec(tantivy, workers=4, cores=2).options == {"k1": 0.9, "threads": 1}
    assert worker_spec(tantivy, workers=2, cores=8).options["threads"] == 4
    assert worker_spec(tantivy, workers=16, cores=8).options["threads"] == 1
    given = IndexSpec("tantivy", "idx", None, {"threads": 3})
    assert worker_spec(given, workers=4, cores=2) == given
    bm25s = IndexSpec("bm25s", "idx", None, {})
    assert worker_spec(bm25s, workers=4, cores=2) == bm25s
    assert worker_spec(tantivy, workers=1).options["threads"] >= 1  # the machine's own core count
