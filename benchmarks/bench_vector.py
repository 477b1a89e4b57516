"""Batched retrieval across a vector env's envs, beside a SyncVectorEnv of the same envs in the same run.

    python benchmarks/bench_vector.py                  # about 10 s
    python benchmarks/bench_vector.py --steps 100 --repeats 7

What is measured: env steps/s of 8 ``MEM1-MultiHopQA-4`` envs, each sending one k=3 search per step
(oracle hop queries of the training questions, so every search has real hits), median over repeats:
(a) ``SyncVectorEnv``, one ``Retriever.search`` call per env per step (the baseline), versus
(b) :class:`~mem1_gym.envs.multihop_qa_vector.MultiHopQAVectorEnv`, one call per step for all 8;
each with the bm25s index in process and through the HTTP retrieval server (``start_server``, which
serves from a thread of this process on 127.0.0.1). Writes ``benchmarks/results/vector.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym

import mem1_gym  # noqa: F401  (registers the ids)

ENV_ID = "MEM1-MultiHopQA-4"
NUM_ENVS = 8
ENDLESS = 10**9  # max_turns: no episode ends, so every step is a search and no step is an autoreset


def hop_queries(world, limit: int) -> list[str]:
    queries = []
    with open(world.qa_paths["train"]) as f:
        for line in f:
            queries += [hop["query"] for hop in json.loads(line)["metadata"]["hops"]]
            if len(queries) >= limit:
                return queries[:limit]
    return queries


def steps_per_s(mode: str, retriever, queries: list[str], steps: int, repeats: int) -> float:
    """Median env steps/s (``NUM_ENVS`` per vector step) over ``repeats`` runs of ``steps`` vector steps."""
    envs = gym.make_vec(ENV_ID, num_envs=NUM_ENVS, vectorization_mode=mode, retriever=retriever, max_turns=ENDLESS)
    envs.reset(seed=0)
    actions = [[f"search[{queries[(s * NUM_ENVS + i) % len(queries)]}]" for i in range(NUM_ENVS)] for s in range(steps)]
    envs.step(actions[0])  # warm-up: connections, lazy loads
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for step_actions in actions:
            envs.step(step_actions)
        rates.append(steps * NUM_ENVS / (time.perf_counter() - started))
    envs.close()
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="vector steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "vector.json"))
    args = parser.parse_args()

    from mem1_gym.data.synthetic import WorldConfig, ensure_world
    from mem1_gym.retrieval import make_retriever
    from mem1_gym.retrieval.server import start_server

    world = ensure_world(WorldConfig())
    queries = hop_queries(world, args.steps * NUM_ENVS)
    bm25 = make_retriever("bm25s", corpus_path=world.corpus_path)
    results = {}
    with start_server(bm25) as server:
        for transport, retriever in (("in-process bm25s", bm25), ("HTTP (start_server)", server.url + "/retrieve")):
            results[transport] = {
                mode: steps_per_s(mode, retriever, queries, args.steps, args.repeats)
                for mode in ("sync", "vector_entry_point")
            }
    bm25.close()

    print(f"\n{NUM_ENVS} x {ENV_ID}, one k=3 search per env per step; env steps/s, median of {args.repeats} x "
          f"{args.steps} vector steps; {os.cpu_count()} CPU cores, Python {platform.python_version()}\n")
    print("| retriever | (a) SyncVectorEnv | (b) batched vector env | (b) / (a) |")
    print("|---|---|---|---|")
    for transport, rates in results.items():
        sync, batched = rates["sync"], rates["vector_entry_point"]
        print(f"| {transport} | {sync:,.0f} | {batched:,.0f} | {batched / sync:.2f}x |")
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "setup": {"env_id": ENV_ID, "num_envs": NUM_ENVS, "k": 3, "steps": args.steps, "repeats": args.repeats},
        "env_steps_per_s": {transport: {"sync": r["sync"], "batched": r["vector_entry_point"]}
                            for transport, r in results.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
