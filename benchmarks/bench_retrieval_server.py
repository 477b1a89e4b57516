"""Our /retrieve server against Search-R1's ``retrieval_server.py``, side by side in the same run.

    python benchmarks/bench_retrieval_server.py --searchr1 /tmp/searchr1/retrieval_server.py

Every server serves the embedded synthetic world (20k passages) on this machine, in its own
process(es): Search-R1's own file (a copy kept outside this repository, run unmodified by a small
shim: pyserini's JVM fixes, and 127.0.0.1 on a free port instead of 0.0.0.0:8000) over a Lucene
index of the corpus, and ours with the pyserini, bm25s and tantivy backends, 1 and 4 workers (the
workers of one server share its memory-mapped index and docstore). The load is
the same for all: 4 client threads, each posting requests of 64 hop queries (topk 3, with scores)
back to back. Rounds go round-robin over the servers, so a busy spell on the shared machine hits
them all; the figure is the median of the rounds. Without ``--searchr1`` (or if that file cannot
run), the baseline is the same load against our pyserini backend with 1 worker, and the table says
so. Each server's top 3 is compared with the baseline's on the first ``--agree`` queries (share
of queries with the same passages, also with exact ties allowed as in ``bench_retrieval_scale.py``).
Writes ``benchmarks/results/retrieval_server.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests
from bench_retrieval import hop_queries
from bench_retrieval_scale import agreement

BATCH, CLIENTS, TOPK = 64, 4, 3
BACKENDS = ("pyserini", "bm25s", "tantivy")
_READY_LINE = "serving the "  # what `mem1-gym serve-retriever` prints once bound
_JSON = {"Content-Type": "application/json"}


def _searchr1_child(server_file: str, port: int) -> None:
    """Run Search-R1's server file as its own ``__main__``, bound to 127.0.0.1:port."""
    from mem1_gym.retrieval.lucene import configure_jvm

    configure_jvm()  # the JVM fixes of lucene.py; the file then imports pyserini itself
    import uvicorn

    run = uvicorn.run
    uvicorn.run = lambda app, **_: run(app, host="127.0.0.1", port=port, log_level="warning")
    sys.argv = [server_file, *sys.argv[sys.argv.index("--") + 1:]]
    runpy.run_path(server_file, run_name="__main__")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server process (and its workers), started in its own session so it stops as a group."""

    def __init__(self, name: str, command: list[str], log: Path, url: str | None = None):
        self.name, self.log, self.url = name, log, url
        env = {**os.environ, "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY", "unused")}
        with open(log, "w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)

    def wait_ready(self, probe: bytes, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            if self.url is None:
                lines = [x for x in self.log.read_text().splitlines() if x.startswith(_READY_LINE)]
                if lines:
                    self.url = lines[0].split(" on ")[1].split("/retrieve")[0]
            if self.url is not None:
                try:
                    if requests.post(f"{self.url}/retrieve", data=probe, headers=_JSON, timeout=60).ok:
                        return
                except requests.RequestException:  # not listening yet, or still loading
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f} s: {self.log.read_text()[-3000:]}")

    def memory_mb(self) -> float:
        """PSS of the server and its workers, summed: pages they share (memory-mapped index files,
        the page cache) count once in all, split between the processes that map them."""
        root = psutil.Process(self.process.pid)
        return sum(p.memory_full_info().pss for p in [root, *root.children(recursive=True)]) / 2**20

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # uvicorn stops its workers, then itself
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _round(url: str, bodies: list[bytes]) -> float:
    """Queries/s of CLIENTS threads posting ``bodies`` (each thread its share, back to back)."""
    def client(share: list[bytes]) -> None:
        with requests.Session() as session:
            for body in share:
                response = session.post(f"{url}/retrieve", data=body, headers=_JSON,
                                        timeout=120)
                response.raise_for_status()

    shares = [bodies[i::CLIENTS] for i in range(CLIENTS)]
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, shares))
    return len(bodies) * BATCH / (time.perf_counter() - started)


def _top_contents(url: str, queries: list[str]) -> list[list[tuple[str, float]]]:
    """Each query's top-TOPK passages as (contents, score), asked BATCH queries per request."""
    tops = []
    for i in range(0, len(queries), BATCH):
        body = {"queries": queries[i:i + BATCH], "topk": TOPK, "return_scores": True}
        result = requests.post(f"{url}/retrieve", json=body, timeout=120).json()["result"]
        tops.extend([(hit["document"]["contents"], hit["score"]) for hit in hits] for hits in result)
    return tops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searchr1", default=None, help="a copy of Search-R1's search_r1/search/retrieval_server.py")
    parser.add_argument("--passages", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=32, help="requests of 64 queries per round (all clients)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--agree", type=int, default=1024, help="queries whose top 3 is compared with the baseline's")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "retrieval_server.json"))
    parser.add_argument("--child-searchr1", nargs=2, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.child_searchr1:
        _searchr1_child(args.child_searchr1[0], int(args.child_searchr1[1]))
        return

    from mem1_gym.data.synthetic import WorldConfig, ensure_world
    from mem1_gym.retrieval import build_index, default_index_dir

    world = ensure_world(WorldConfig(n_passages=args.passages))
    corpus = str(world.corpus_path)
    indexes = {}
    for backend in BACKENDS:
        indexes[backend] = default_index_dir(corpus, backend)
        if not (indexes[backend] / "meta.json").exists():
            build_index(backend, corpus, indexes[backend])
    queries = hop_queries(world, max(args.requests * BATCH, args.agree))
    bodies = [json.dumps({"queries": queries[i:i + BATCH], "topk": TOPK, "return_scores": True}).encode()
              for i in range(0, args.requests * BATCH, BATCH)]
    logs = Path(tempfile.mkdtemp(prefix="bench-retrieval-server-"))  # each server's output, for failures

    ours = [sys.executable, "-m", "mem1_gym.cli", "serve-retriever", "--port", "0", "--topk", str(TOPK)]
    plan = [(f"ours, {backend}, {workers} worker(s)", ours + ["--index", str(indexes[backend]), "--workers", str(workers)], None)
            for backend in BACKENDS for workers in (1, 4)]
    baseline = "Search-R1 retrieval_server.py (pyserini, its own file)"
    if args.searchr1:
        port = _free_port()
        command = [sys.executable, __file__, "--child-searchr1", args.searchr1, str(port), "--",
                   "--index_path", str(indexes["pyserini"]), "--corpus_path", corpus, "--topk", str(TOPK),
                   "--retriever_name", "bm25"]
        plan.insert(0, (baseline, command, f"http://127.0.0.1:{port}"))
    servers = []
    try:
        for name, command, url in plan:  # one at a time: each start loads an index or a JVM
            servers.append(Server(name, command, logs / f"{len(servers)}.log", url))
            servers[-1].wait_ready(bodies[0])
        if not args.searchr1:
            baseline = servers[0].name + " (stand-in: Search-R1's server not run)"
        reference = _top_contents(servers[0].url, queries[:args.agree])
        tops = {s.name: _top_contents(s.url, queries[:args.agree]) for s in servers}
        same = {name: (agreement(top, reference, TOPK), agreement(top, reference, TOPK, ties=True))
                for name, top in tops.items()}
        rates = {s.name: [] for s in servers}
        for server in servers:
            _round(server.url, bodies[:CLIENTS])  # warm-up: JIT, page cache, connection pools
        memory = {s.name: s.memory_mb() for s in servers}
        for _ in range(args.rounds):
            for server in servers:
                rates[server.name].append(_round(server.url, bodies))
    finally:
        for server in servers:
            server.stop()

    base_name = servers[0].name
    base = statistics.median(rates[base_name])
    rows = [{"server": name, "qps_median": statistics.median(r), "qps_rounds": r, "top3_agreement": same[name][0],
             "top3_agreement_ties": same[name][1],
             "ratio": statistics.median(r) / base, "memory_pss_mb": memory[name]} for name, r in rates.items()]
    print(f"\n/retrieve on the synthetic world ({args.passages} passages), {BATCH} hop queries per request, "
          f"topk {TOPK} with scores, {CLIENTS} clients, median of {args.rounds} rounds (2 shared cores)")
    print(f"baseline: {baseline}\n| server | queries/s | x baseline | memory (PSS, all processes) | "
          f"same top 3 as baseline (exact ties allowed) |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['server']} | {row['qps_median']:,.0f} | {row['ratio']:.1f}x | {row['memory_pss_mb']:,.0f} MB | "
              f"{row['top3_agreement']:.1%} ({row['top3_agreement_ties']:.1%}) |")
    report = {"passages": args.passages, "batch": BATCH, "clients": CLIENTS, "topk": TOPK, "rounds": args.rounds,
              "agreement_queries": min(args.agree, len(queries)),
              "requests_per_round": len(bodies), "baseline": baseline, "servers": rows}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
