"""BM25 backends as the corpus grows, pyserini (Lucene, Search-R1's BM25) the baseline in the same run.

    nice -n 10 python benchmarks/bench_retrieval_scale.py --sizes 20000,100000
    nice -n 10 python benchmarks/bench_retrieval_scale.py --sizes 20000,100000,1000000 --backends tantivy,pyserini
    nice -n 10 python benchmarks/bench_retrieval_scale.py --sizes 20000,100000,1000000,5000000   # ~2 h on 2 cores

For each synthetic-world size and backend (issue 20), each step in its own process so that memory
belongs to it alone: build time and peak build RSS (``ru_maxrss``, the JVM included for pyserini),
index size on disk, RSS after loading, queries/s (batch 64, k=3) on the oracle's hop queries and on
the full questions; then top-3/top-10 agreement with pyserini on both query sets, a power-law fit
``y = a * n^p`` of each measure over the sizes (the growth exponent p) and its value at wiki-18's
21M passages. Targets at 21M: resident <= 4 GB, build <= 2 h on 2 cores with peak <= 4 GB, >= 200
full-question queries/s. A build bm25s refuses (the corpus would not fit in the memory available)
is a row saying so, left out of the fits. Writes ``benchmarks/results/retrieval_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH, WIKI18 = 64, 21_000_000
MEASURES = ("build_s", "build_peak_mb", "index_mb", "rss_after_load_mb", "hop_qps", "question_qps")


def query_sets(world, limit: int) -> dict[str, list[str]]:
    """The oracle's hop queries (2-4 words, what a trained agent sends) and the full questions."""
    hops, questions = [], []
    with open(world.qa_paths["train"]) as f:
        for line in f:
            row = json.loads(line)
            questions.append(row["question"])
            hops.extend(hop["query"] for hop in row["metadata"]["hops"])
    return {"hop": hops[:limit], "question": questions[:limit]}


def _world(passages: int):
    from mem1_gym.data.synthetic import WorldConfig, ensure_world

    return ensure_world(WorldConfig(n_passages=passages))


def child_build(backend: str, passages: int, out: str) -> dict:
    from mem1_gym.retrieval import build_index
    from mem1_gym.retrieval.base import RetrievalError

    world = _world(passages)
    started = time.perf_counter()
    try:
        build_index(backend, world.corpus_path, out)
    except RetrievalError as err:  # bm25s refuses a corpus it cannot hold in the memory available
        return {"refused": str(err)}
    build_s = time.perf_counter() - started
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"build_s": build_s, "build_peak_mb": peak_mb, "index_mb": size / 2**20}


def child_query(backend: str, passages: int, index: str, n_queries: int, ranks_file: str) -> dict:
    import psutil

    from mem1_gym.retrieval import load_retriever

    world = _world(passages)
    sets = query_sets(world, n_queries)
    retriever = load_retriever(backend, index, world.corpus_path)
    retriever.search(sets["hop"][:BATCH], 3)  # warm-up: JVM, lazy loads
    rss_mb = psutil.Process().memory_info().rss / 2**20
    result = {"rss_after_load_mb": rss_mb}
    ranks = {}
    for name, queries in sets.items():
        started = time.perf_counter()
        for i in range(0, len(queries), BATCH):
            retriever.search(queries[i : i + BATCH], 3)
        result[f"{name}_qps"] = len(queries) / (time.perf_counter() - started)
        ranks[name] = [[(d.id, d.score) for d in docs] for docs in retriever.search(queries, 10)]
    Path(ranks_file).write_text(json.dumps(ranks))
    return result


def run_child(args: list[str]) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"benchmark child {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def agreement(ours: list[list], baseline: list[list], k: int, ties: bool = False) -> float:
    """Share of queries whose top-k ids equal the baseline's as sets. With ``ties``, a difference
    among passages with exactly the k-th score also agrees: tied passages rank by corpus row here
    and by the id string in pyserini (scores compared to 1e-3, as pyserini rounds them)."""
    same = 0
    for a, b in zip(ours, baseline):
        a, b = a[:k], b[:k]
        if {i for i, _ in a} == {i for i, _ in b}:
            same += 1
        elif ties and len(a) == len(b):
            kth = min(s for _, s in b)
            above = lambda hits: {i for i, s in hits if s > kth + 1e-3}  # noqa: E731
            scores = lambda hits: sorted(round(s, 3) for _, s in hits)  # noqa: E731
            same += above(a) == above(b) and scores(a) == scores(b)
    return same / max(len(baseline), 1)


def fit(sizes: list[int], values: list[float]) -> tuple[float, float] | None:
    """(exponent p, value at 21M) of the least-squares line through (log n, log y)."""
    points = [(math.log(n), math.log(v)) for n, v in zip(sizes, values) if v and v > 0]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    p = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return p, math.exp(my + p * (math.log(WIKI18) - mx))


def measure(backends: list[str], sizes: list[int], n_queries: int, root: Path) -> list[dict]:
    rows = []
    for passages in sizes:
        world = _world(passages)  # generated once, outside the timings
        n_docs = sum(1 for _ in open(world.corpus_path))
        ranks = {}
        for backend in backends:
            index, ranks_file = root / f"{backend}-{passages}", root / f"{backend}-{passages}.ranks.json"
            shutil.rmtree(index, ignore_errors=True)
            built = run_child(["--child", "build", backend, str(passages), str(index)])
            if "refused" in built:
                rows.append({"backend": backend, "passages": n_docs, **built})
                print(f"  {backend} at {n_docs:,}: refused: {built['refused']}", flush=True)
                continue
            queried = run_child(
                ["--child", "query", backend, str(passages), str(index), str(n_queries), str(ranks_file)]
            )
            ranks[backend] = json.loads(ranks_file.read_text())
            shutil.rmtree(index, ignore_errors=True)
            rows.append({"backend": backend, "passages": n_docs, **built, **queried})
            print(f"  {backend} at {n_docs:,}: " + ", ".join(f"{k} {rows[-1][k]:,.1f}" for k in MEASURES), flush=True)
        for row in rows[-len(backends):]:
            if "pyserini" in ranks and row["backend"] in ranks:
                for name in ("hop", "question"):
                    ours, baseline = ranks[row["backend"]][name], ranks["pyserini"][name]
                    for k in (3, 10):
                        row[f"{name}_top{k}_vs_pyserini"] = agreement(ours, baseline, k)
                        row[f"{name}_top{k}_vs_pyserini_ties"] = agreement(ours, baseline, k, ties=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000", help="synthetic-world sizes (passages), comma-separated")
    parser.add_argument("--backends", default="bm25s,tantivy,pyserini")
    parser.add_argument("--queries", type=int, default=1024, help="queries per set")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "retrieval_scale.json"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, backend, passages, *rest = args.child
        if kind == "build":
            print(json.dumps(child_build(backend, int(passages), rest[0])))
        else:
            print(json.dumps(child_query(backend, int(passages), rest[0], int(rest[1]), rest[2])))
        return
    backends, sizes = args.backends.split(","), [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as root:
        rows = measure(backends, sizes, args.queries, Path(root))
    fits = {}
    for backend in backends:
        mine = [r for r in rows if r["backend"] == backend and "refused" not in r]
        for name in MEASURES:
            result = fit([r["passages"] for r in mine], [r[name] for r in mine])
            if result is not None:
                fits.setdefault(backend, {})[name] = {"exponent": result[0], "at_21M": result[1]}
    report = {"cores": os.cpu_count(), "batch": BATCH, "queries": args.queries, "rows": rows, "fits": fits}

    print(f"\nBM25 backends on the synthetic world (k=3, batch {BATCH}; pyserini is the baseline, same run)")
    print("| backend | passages | build s | build peak MB | index MB | RSS after load MB | hop q/s | question q/s "
          "| top-3 / top-10 = pyserini, hop; question (exact ties allowed) |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "refused" in r:
            print(f"| {r['backend']} | {r['passages']:,} | refused: {r['refused'].split(';')[0]} |")
            continue
        agree = "; ".join(
            f"{r[f'{n}_top3_vs_pyserini']:.1%} / {r[f'{n}_top10_vs_pyserini']:.1%} "
            f"({r[f'{n}_top3_vs_pyserini_ties']:.1%} / {r[f'{n}_top10_vs_pyserini_ties']:.1%})"
            for n in ("hop", "question")
        ) if "hop_top3_vs_pyserini" in r else ""
        print(f"| {r['backend']} | {r['passages']:,} | {r['build_s']:.1f} | {r['build_peak_mb']:,.0f} "
              f"| {r['index_mb']:,.0f} "
              f"| {r['rss_after_load_mb']:,.0f} | {r['hop_qps']:,.0f} | {r['question_qps']:,.0f} | {agree} |")
    print("\nGrowth exponent p (y ~ n^p) and extrapolation to 21M passages")
    print("| backend | " + " | ".join(MEASURES) + " |\n|---|" + "---|" * len(MEASURES))
    for backend, by_measure in fits.items():
        cells = [f"p={f['exponent']:.2f}: {f['at_21M']:,.0f}" if (f := by_measure.get(m)) else "" for m in MEASURES]
        print(f"| {backend} | " + " | ".join(cells) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
