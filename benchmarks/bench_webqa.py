"""Web QA speed against the mini-web (synthetic world, 20k pages), each figure beside a baseline from the same run.

    python benchmarks/bench_webqa.py                  # about 1 minute
    python benchmarks/bench_webqa.py --steps 500 --seconds 20

What is measured (everything on 127.0.0.1; the load is bounded by --steps and --seconds):
* step latency: ``MEM1-WebQA-4.step`` with a k=5 ``<search>`` and with an ``<open>`` of a result,
  median and p95, against the in-process mini-web the env starts; baseline: ``MEM1-MultiHopQA-4.step``
  with a k=3 search in the in-process bm25s index (no HTTP).
* throughput: search steps/s of 8 concurrent envs, (a) as 8 processes against a mini-web run alone
  (``mem1-gym serve-miniweb``), (b) as 8 threads of one process sharing the mini-web that process
  started; baseline: the same 8 processes sending bare ``GET /health`` requests (the HTTP ceiling).
Targets (issue 6): search step median <= 10 ms, >= 500 requests/s with 8 concurrent envs.
Writes ``benchmarks/results/webqa.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import requests

import mem1_gym  # noqa: F401  (registers the ids)

ENDLESS = 10**9  # max_turns: the benchmark never wants a truncation


def hop_queries(limit: int) -> list[str]:
    """Real agent queries: the oracle's hop queries of the training questions."""
    from mem1_gym.data.synthetic import ensure_world

    queries = []
    with open(ensure_world().qa_paths["train"]) as f:
        for line in f:
            queries += [hop["query"] for hop in json.loads(line)["metadata"]["hops"]]
            if len(queries) >= limit:
                return queries[:limit]
    return queries


def summary(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {"median_ms": statistics.median(ordered), "p95_ms": ordered[int(0.95 * (len(ordered) - 1))], "n": len(ms)}


def timed_steps(env, actions: list[str]) -> list[float]:
    times = []
    for action in actions:
        started = time.perf_counter()
        env.step(action)
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure_latency(queries: list[str]) -> dict:
    web = gym.make("MEM1-WebQA-4", allow_open=True, max_turns=ENDLESS)
    web.reset(seed=0)
    timed_steps(web, [f"<search>{q}</search>" for q in queries[:20]])  # warm-up: index load, connections
    search = timed_steps(web, [f"<search>{q}</search>" for q in queries])
    urls = [web.step(f"<search>{q}</search>")[4]["result_urls"][0] for q in queries]
    opened = timed_steps(web, [f"<think>reading</think><open>{url}</open>" for url in urls])
    web.close()
    local = gym.make("MEM1-MultiHopQA-4", max_turns=ENDLESS)
    local.reset(seed=0)
    timed_steps(local, [f"<search>{q}</search>" for q in queries[:20]])
    baseline = timed_steps(local, [f"<search>{q}</search>" for q in queries])
    local.close()
    return {"search": summary(search), "open": summary(opened), "multihop_search": summary(baseline)}


def _worker(kind: str, url: str, queries: list[str], start_at: float, seconds: float, steps: int) -> tuple[int, float]:
    """One concurrent client: env search steps (kind "env") or bare GET /health ("health")."""
    if kind == "env":
        env = gym.make("MEM1-WebQA-4", search_url=url, max_turns=ENDLESS)
        env.reset(seed=0)
        send = lambda i: env.step(f"<search>{queries[i % len(queries)]}</search>")  # noqa: E731
    else:
        session = requests.Session()
        send = lambda i: session.get(url + "/health", timeout=10).json()  # noqa: E731
    send(0)  # connect before the clock starts
    time.sleep(max(0.0, start_at - time.time()))
    started, done = time.perf_counter(), 0
    while done < steps and time.perf_counter() - started < seconds:
        send(done)
        done += 1
    return done, time.perf_counter() - started


def concurrent_rate(kind: str, url: str, queries: list[str], workers: int, seconds: float, steps: int) -> float:
    start_at = time.time() + 3.0  # every worker has built its env by then
    args = [(kind, url, queries, start_at, seconds, steps)] * workers
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.starmap(_worker, args)
    return sum(n for n, _ in results) / max(elapsed for _, elapsed in results)


def threaded_rate(queries: list[str], workers: int, seconds: float, steps: int) -> float:
    """8 envs as threads of this process, sharing the mini-web it started."""
    from mem1_gym.web.server import shared_server

    url = shared_server().url  # the same server the envs use when search_url is None
    start_at, results = time.time() + 1.0, []
    threads = [threading.Thread(target=lambda: results.append(_worker("env", url, queries, start_at, seconds, steps)))
               for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(n for n, _ in results) / max(elapsed for _, elapsed in results)


def standalone_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "mem1_gym", "serve-miniweb", "--port", str(port)],
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/health", timeout=1)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"serve-miniweb did not answer on {url} within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="timed steps per latency figure (%(default)s)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent envs (%(default)s)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each throughput run (%(default)s)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="cap per worker per run (%(default)s)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "webqa.json"))
    args = parser.parse_args()

    queries = hop_queries(args.steps)
    latency = measure_latency(queries)
    process, url = standalone_server()
    try:
        rate_env = concurrent_rate("env", url, queries, args.workers, args.seconds, args.max_requests)
        rate_health = concurrent_rate("health", url, queries, args.workers, args.seconds, args.max_requests)
    finally:
        process.terminate()
        process.wait(timeout=10)
    rate_threads = threaded_rate(queries, args.workers, args.seconds, args.max_requests)

    s, o, b = latency["search"], latency["open"], latency["multihop_search"]
    rows = [
        ("WebQA-4 `<search>` step (k=5, mini-web over HTTP)", f"{s['median_ms']:.2f} / {s['p95_ms']:.2f} ms",
         f"MultiHopQA-4 search step, in-process bm25s: {b['median_ms']:.2f} / {b['p95_ms']:.2f} ms", "median <= 10 ms"),
        ("WebQA-4 `<open>` step (fetch + extract)", f"{o['median_ms']:.2f} / {o['p95_ms']:.2f} ms", "", ""),
        (f"{args.workers} env processes, mini-web in its own process", f"{rate_env:.0f} search steps/s",
         f"bare GET /health, same clients: {rate_health:.0f} req/s", ">= 500 req/s"),
        (f"{args.workers} env threads, in-process mini-web", f"{rate_threads:.0f} search steps/s", "", ""),
    ]
    cpus = os.cpu_count()
    print(f"\nWeb QA on the mini-web (synthetic world), {cpus} CPU cores, Python {platform.python_version()}\n")
    print("| measurement | result (median / p95) | baseline, same run | target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    report = {
        "machine": {"cpus": cpus, "python": platform.python_version()},
        "latency": latency,
        "throughput": {"workers": args.workers, "seconds": args.seconds, "env_processes_per_s": rate_env,
                       "health_baseline_per_s": rate_health, "env_threads_per_s": rate_threads},
        "targets_met": {"search_median_le_10ms": s["median_ms"] <= 10.0, "ge_500_rps": rate_env >= 500},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
