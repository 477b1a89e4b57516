"""Retrieval and QA-env speed on the synthetic world, each figure beside its baseline from the same run.

    python benchmarks/bench_retrieval.py                       # 100k passages, every backend (~10 min cold)
    python benchmarks/bench_retrieval.py --passages 20000 --backends bm25s,pyserini

Dense backends encode every passage with MiniLM, about 40 passages/s on 2 cores (~110 tokens
each), so they index the default 20k-passage world (--dense-passages) unless told otherwise:
100k passages would take 40 minutes to encode here.

What is measured (medians over repeats; the machine is shared and noisy):
* env step: ``MEM1-MultiHopQA-1.step`` with a k=3 search against the in-process bm25s index, versus
  the same step through the HTTP retrieval server (the original MEM1 loop's architecture).
* batched throughput per backend: queries/s with 64 queries per call, versus one query per call
  (how the original Lucene server searched); for bm25s, versus the bm25s library's own retrieve
  (which scores every passage) on the same batches. Dense figures include MiniLM query encoding.
* the retrieval server: queries/s with 64 queries per request, versus one query per request.
* resident memory of each loaded index (each backend runs in its own subprocess; RSS after loading
  minus RSS before).
Writes ``benchmarks/results/retrieval.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BATCH = 64


def hop_queries(world, limit: int) -> list[str]:
    """Real agent queries: the oracle's hop queries of the training questions."""
    queries = []
    with open(world.qa_paths["train"]) as f:
        for line in f:
            for hop in json.loads(line)["metadata"]["hops"]:
                queries.append(hop["query"])
                if len(queries) == limit:
                    return queries
    return queries


def qps(search, queries: list[str], batch: int, repeats: int = 3) -> float:
    """Median queries/s of ``search`` over ``repeats`` passes of ``queries`` in batches of ``batch``."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(0, len(queries), batch):
            search(queries[i : i + batch])
        rates.append(len(queries) / (time.perf_counter() - started))
    return statistics.median(rates)


def measure_backend(backend: str, passages: int, n_queries: int) -> dict:
    """Runs in a child process so that RSS belongs to this backend alone."""
    import psutil

    from mem1_gym.data.synthetic import WorldConfig, ensure_world
    from mem1_gym.retrieval import build_index, default_index_dir, make_retriever

    world = ensure_world(WorldConfig(n_passages=passages))
    queries = hop_queries(world, n_queries)
    index_dir = default_index_dir(world.corpus_path, backend)
    build_s = None
    if not (index_dir / "meta.json").exists():
        started = time.perf_counter()
        build_index(backend, world.corpus_path, index_dir)
        build_s = time.perf_counter() - started
    rss_before = psutil.Process().memory_info().rss
    retriever = make_retriever(backend, corpus_path=world.corpus_path, index_dir=index_dir)
    retriever.search(queries[:BATCH], 3)  # warm-up: JIT, JVM, lazy loads
    rss_mb = (psutil.Process().memory_info().rss - rss_before) / 2**20
    search = lambda qs: retriever.search(qs, 3)  # noqa: E731
    if backend == "bm25s":
        baseline, label = qps(_bm25s_library_search(retriever), queries, BATCH), "bm25s' own retrieve, batch 64"
    else:
        baseline, label = qps(search, queries, 1), "one query per call"
    return {
        "backend": backend,
        "batched_qps": qps(search, queries, BATCH),
        "baseline_qps": baseline,
        "baseline": label,
        "index_rss_mb": rss_mb,
        "build_s": build_s,
    }


def _bm25s_library_search(retriever):
    """The library path our bm25s backend replaced: score every passage, then argpartition."""
    import bm25s

    def search(queries):
        tokens = bm25s.tokenize(queries, lower=True, token_pattern=r"(?u)\b\w+\b", stopwords="en",
                                stemmer=retriever._stem, return_ids=False, show_progress=False)
        retriever._model.retrieve(tokens, k=3, show_progress=False)

    return search


def measure_env_and_server(passages: int, n_queries: int, n_steps: int) -> dict:
    import gymnasium as gym
    import requests

    import mem1_gym  # noqa: F401
    from mem1_gym.data.synthetic import WorldConfig, ensure_world
    from mem1_gym.retrieval import make_retriever
    from mem1_gym.retrieval.server import start_server

    config = WorldConfig(n_passages=passages)
    world = ensure_world(config)
    queries = hop_queries(world, n_queries)
    retriever = make_retriever("bm25s", corpus_path=world.corpus_path)
    out = {}
    with start_server(retriever) as server:
        for label, spec in (("env_step_inprocess", "bm25s"), ("env_step_http", server.url + "/retrieve")):
            env = gym.make("MEM1-MultiHopQA-1", world=config, retriever=spec, max_turns=10**6)
            env.reset(seed=0)
            env.step(f"<search>{queries[0]}</search>")  # warm-up
            times = []
            for i in range(n_steps):
                action = f"<think>state</think><search>{queries[i % len(queries)]}</search>"
                started = time.perf_counter()
                env.step(action)
                times.append((time.perf_counter() - started) * 1e3)
            env.close()
            times.sort()
            out[label] = {"median_ms": statistics.median(times), "p95_ms": times[int(0.95 * len(times)) - 1]}
        session = requests.Session()

        def post(qs):
            response = session.post(server.url + "/retrieve", json={"queries": qs, "topk": 3, "return_scores": True})
            response.raise_for_status()

        out["server_batched_qps"] = qps(post, queries, BATCH)
        out["server_single_qps"] = qps(post, queries, 1)
    return out


def run_child(args: list[str]) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"benchmark child {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--backends", default="bm25s,pyserini,faiss-flat,faiss-hnsw")
    parser.add_argument("--dense-passages", type=int, default=20_000, help="world size for the FAISS backends")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "retrieval.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = (measure_env_and_server(args.passages, args.queries, args.steps) if args.child == "env"
                  else measure_backend(args.child, args.passages, args.queries))
        print(json.dumps(result))
        return

    from mem1_gym.data.synthetic import WorldConfig, ensure_world

    started = time.perf_counter()
    world = ensure_world(WorldConfig(n_passages=args.passages))
    n_docs = sum(1 for _ in open(world.corpus_path))
    print(f"world: {n_docs} passages ({time.perf_counter() - started:.1f} s incl. cache check)", flush=True)
    common = ["--passages", str(args.passages), "--queries", str(args.queries), "--steps", str(args.steps)]
    backends = []
    for backend in args.backends.split(","):
        size = args.dense_passages if backend.startswith("faiss") else args.passages
        child = ["--passages", str(size)] + common[2:] + ["--child", backend]
        backends.append({**run_child(child), "passages": size})
    env = run_child(common + ["--child", "env"])
    report = {"passages": n_docs, "backends": backends, **env}

    print(f"\nRetrieval on the synthetic world, {n_docs} passages, k=3, {args.queries} hop queries (2 cores)")
    print("| measure | ours | baseline (same run) | ratio |\n|---|---|---|---|")
    step, http = env["env_step_inprocess"], env["env_step_http"]
    print(f"| env step with search, median (p95) | {step['median_ms']:.2f} ms ({step['p95_ms']:.2f}) | "
          f"{http['median_ms']:.2f} ms ({http['p95_ms']:.2f}) via HTTP server | {http['median_ms'] / step['median_ms']:.1f}x |")
    for b in backends:
        build = f", built in {b['build_s']:.0f} s" if b["build_s"] else ""
        print(f"| {b['backend']} ({b['passages'] // 1000}k passages) queries/s, batch {BATCH} | {b['batched_qps']:,.0f} | "
              f"{b['baseline_qps']:,.0f} ({b['baseline']}) | {b['batched_qps'] / b['baseline_qps']:.1f}x |")
        print(f"| {b['backend']} index resident memory | {b['index_rss_mb']:,.0f} MB{build} | | |")
    print(f"| server queries/s, {BATCH} per request | {env['server_batched_qps']:,.0f} | "
          f"{env['server_single_qps']:,.0f} one per request | {env['server_batched_qps'] / env['server_single_qps']:.1f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
