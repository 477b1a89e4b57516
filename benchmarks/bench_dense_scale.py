"""Compressed dense index types against exact (flat) search, on MiniLM vectors of the synthetic world.

    nice -n 10 python benchmarks/bench_dense_scale.py --passages 100000          # encodes once, then measures
    nice -n 10 python benchmarks/bench_dense_scale.py --passages 100000 --encode-only   # resumable: rerun to go on

Passages are encoded with the bundled all-MiniLM-L6-v2 (384-d) through the library's sharded
encoder (:func:`mem1_gym.retrieval.dense_build.encode_shards`), cached under ``--cache``: an
interrupted run resumes from its last whole shard, and later runs encode nothing. MiniLM runs at
~40 passages/s on 2 idle cores (~110 tokens each), so 100k passages take 40+ minutes of CPU;
``--max-length`` truncates passages to cut that (recorded in the JSON).

Queries: the oracle's hop queries (2-4 words) and the full questions of the world's questions.
Ground truth is the flat index's top-k of the same vectors; recall@k = |top-k ∩ flat top-k| / k.
Each index type is built from the cached vectors with :func:`dense_build.fill_index` (the library's
build path: trained on a seeded sample, filled shard by shard). Throughput is FAISS search alone
(queries pre-encoded), batch 64, ``--threads`` FAISS threads, ``distance_compute_blas_threshold = 20``.
Sizes are the serialised index; the 21M x 768-d column extrapolates each type's bytes per vector
to e5-base on wiki-18: the vector codes keep their bytes per dimension (so 384-d MiniLM stands
for 768-d e5 at the same bits per dimension), HNSW links and IVF ids keep their bytes per vector
as measured, and IVF centroids are counted at the library's default list count for 21M. The target
of issue 20, 8 GB (10^9 bytes) at 21M, is 380 bytes per 768-d vector all included.
Refined rows (``refine``): the index proposes ``refine_depth`` candidates per query and the float16
vectors, memory-mapped from one ``.npy`` (the library's :class:`~mem1_gym.retrieval.dense.RefineVectors`),
re-rank them; their RAM column is the index alone, and the disk they read through the map is
2 bytes per dimension (32 GB at 21M x 768). Here the vectors file sits in the page cache: the
q/s do not include disk reads, which at 21M are ~100 random 1.5 KB reads per query.
Writes ``benchmarks/results/dense_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
WIKI18, E5_DIM, BATCH = 21_015_324, 768, 64
TARGET_BYTES = 8e9  # issue 20: a compressed 768-d index of wiki-18 within 8 GB


def queries_of(world, limit: int) -> list[str]:
    """Hop queries and full questions, alternating, from every split (``limit`` in all)."""
    hops, questions = [], []
    for path in world.qa_paths.values():
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                questions.append(row["question"])
                hops.extend(hop["query"] for hop in row["metadata"]["hops"])
    mixed = [q for pair in zip(hops, questions) for q in pair]
    return mixed[:limit]


def encoded(world, cache: Path, config, limit_queries: int, available_only: bool):
    """(passage shards as one array source, query vectors (Q, D)), encoded once and cached.
    ``available_only``: the passages of the shards already encoded, none encoded now."""
    from mem1_gym.retrieval import iter_corpus
    from mem1_gym.retrieval.build import corpus_fingerprint
    from mem1_gym.retrieval.dense import Encoder
    from mem1_gym.retrieval.dense_build import VectorBlocks, encode_shards

    tag = f"{world.corpus_path.parent.name}-len{config.max_length}"
    if available_only:
        passages = VectorBlocks([np.load(p, mmap_mode="r") for p in sorted((cache / f"shards-{tag}").glob("0*.npy"))])
    else:
        spec = {"corpus": corpus_fingerprint(world.corpus_path)}
        passages = encode_shards(iter_corpus(world.corpus_path), cache / f"shards-{tag}", config, spec)
    query_file = cache / f"queries-{tag}-{limit_queries}.npy"
    if not query_file.exists():
        vectors = Encoder(config.encoder, config.max_length, config.batch_size).encode(queries_of(world, limit_queries))
        np.save(query_file, vectors)
    return passages, np.load(query_file)


def search(index, queries: np.ndarray, k: int, params, refine=None, depth: int = 0) -> np.ndarray:
    """Rows (Q, k) of the best ``k`` per query, batch by batch; with ``refine`` (a
    :class:`~mem1_gym.retrieval.dense.RefineVectors`), the index's ``depth`` best re-ranked by it."""
    from mem1_gym.retrieval.dense import _best

    found = []
    for i in range(0, len(queries), BATCH):
        batch = queries[i : i + BATCH]
        if refine is None:
            found.append(index.search(batch, k, params=params)[1])
        else:
            rows = index.search(batch, max(depth, k), params=params)[1]
            found.append(np.stack([r for _, r in _best(refine.scores(batch, rows), rows, k)]))
    return np.concatenate(found)


def qps(index, queries: np.ndarray, k: int, params, refine=None, depth: int = 0, repeats: int = 3) -> float:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        search(index, queries, k, params, refine, depth)
        rates.append(len(queries) / (time.perf_counter() - started))
    return statistics.median(rates)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / k, both (Q, k)."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def extrapolate(kind: str, size: int, n: int, dim: int, pq_m: int) -> float:
    """Bytes of this index type at wiki-18 scale with e5-base, the vector codes scaled from ``dim``
    to 768 (same bytes per dimension). HNSW: graph bytes per vector as measured. IVF: codes + an
    8-byte id per vector, the library's default lists (x 768 floats), PQ codebooks or SQ ranges."""
    if kind.startswith("ivf"):
        from mem1_gym.retrieval.dense import DenseConfig
        from mem1_gym.retrieval.dense_build import ivf_shape

        nlist, _, _ = ivf_shape(DenseConfig(kind=kind), WIKI18, E5_DIM)
        if kind == "ivf-sq4":  # 4 bits per dimension; a (min, step) pair of floats per dimension
            return WIKI18 * (E5_DIM // 2 + 8) + nlist * E5_DIM * 4 + 2 * E5_DIM * 4
        return WIKI18 * (pq_m * E5_DIM // dim + 8) + (nlist + 256) * E5_DIM * 4
    code = {"flat": 4 * dim, "hnsw": 4 * dim, "hnsw-sq8": dim}[kind]
    return WIKI18 * (size / n - code + code * E5_DIM // dim)


def measure(kind_config, source, queries, truth: dict, dim: int, built: dict, refine=None) -> dict:
    """One row; ``built`` caches each index across the search settings swept on it; ``refine`` the
    float16 vectors that re-rank the candidates when ``kind_config.refine``."""
    import faiss

    from mem1_gym.retrieval.dense import tuned_nprobe
    from mem1_gym.retrieval.dense_build import fill_index, ivf_shape

    key = replace(kind_config, nprobe=0, ef_search=1, refine=False, refine_depth=1)
    if key not in built:
        started = time.perf_counter()
        built[key] = fill_index(source, kind_config), time.perf_counter() - started
    index, build_s = built[key]
    size = len(faiss.serialize_index(index))
    is_ivf = kind_config.kind.startswith("ivf")
    nlist, pq_m, _ = ivf_shape(kind_config, source.n, dim) if is_ivf else (0, 0, 0)
    pq_m = pq_m if kind_config.kind == "ivf-pq" else 0
    if is_ivf:
        kind_config = replace(kind_config, nprobe=kind_config.nprobe or tuned_nprobe(index))
        params = faiss.SearchParametersIVF(nprobe=kind_config.nprobe)
    elif kind_config.kind.startswith("hnsw"):
        params = faiss.SearchParametersHNSW(efSearch=kind_config.ef_search)
    else:
        params = None
    depth = kind_config.refine_depth if kind_config.refine else 0
    found = search(index, queries, 10, params, refine, depth)
    return {
        "kind": kind_config.kind, "nlist": nlist, "pq_m": pq_m,
        "nprobe": kind_config.nprobe if nlist else None,
        "ef_search": kind_config.ef_search if kind_config.kind.startswith("hnsw") else None,
        "refine_depth": depth or None,
        "recall@3": recall(found[:, :3], truth[3]), "recall@10": recall(found, truth[10]),
        "size_mb": size / 2**20, "bytes_per_vector": size / source.n, "build_s": build_s,
        "qps_batch64_k10": qps(index, queries, 10, params, refine, depth),
        "wiki18_e5_gb": extrapolate(kind_config.kind, size, source.n, dim, pq_m) / 1e9,
        # refine: float16 vectors read from disk through a memory map, not held in RAM
        "wiki18_e5_disk_gb": WIKI18 * E5_DIM * 2 / 1e9 if depth else None,
    }


def variants(base, nlist: int):
    """Index types and the settings swept: ivf-pq bytes per vector and nprobe, HNSW efSearch,
    ivf-sq4 nprobe as a share of its ``nlist`` lists (0: the library's tuned default, 1/2)."""
    yield replace(base, kind="flat")
    for kind in ("hnsw", "hnsw-sq8"):
        for ef_search in (64, 256):
            yield replace(base, kind=kind, ef_search=ef_search)
    for pq_m in (96, 128):  # 384-d / 4 and / 3 (the default): 192 and 256 bytes for e5-base's 768-d
        for nprobe in (16, 64, 256, nlist // 2):
            yield replace(base, kind="ivf-pq", pq_m=pq_m, nprobe=nprobe)
    for nprobe in (nlist // 8, nlist // 4, -(-3 * nlist // 8), 0):
        yield replace(base, kind="ivf-sq4", nprobe=nprobe)
    # refine: the codes propose refine_depth candidates, float16 vectors on disk re-rank them
    for depth in (50, 100):
        for nprobe in (64, 256, nlist // 2):
            yield replace(base, kind="ivf-pq", pq_m=128, nprobe=nprobe, refine=True, refine_depth=depth)
        for nprobe in (nlist // 4, 0):
            yield replace(base, kind="ivf-sq4", nprobe=nprobe, refine=True, refine_depth=depth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--max-length", type=int, default=256, help="encoder tokens per passage")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mem1_dense_scale"))
    parser.add_argument("--encode-only", action="store_true", help="encode (or resume encoding) and stop")
    parser.add_argument("--available-only", action="store_true",
                        help="measure on the passages already encoded (a prefix of the world), encoding none")
    parser.add_argument("--threads", type=int, default=1, help="torch and FAISS threads")
    parser.add_argument("--only", nargs="+", metavar="TYPE", help="measure only these index types (flat is the truth anyway)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dense_scale.json")
    args = parser.parse_args()

    import faiss
    import torch

    from mem1_gym.data.synthetic import WorldConfig, ensure_world
    from mem1_gym.retrieval.dense import DenseConfig, RefineVectors, write_refine_vectors
    from mem1_gym.retrieval.dense_build import ivf_shape

    # One thread each by default: on a shared 2-core machine a second OpenMP/torch thread made things slower.
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    faiss.cvar.distance_compute_blas_threshold = 20  # BLAS for batches of 20+ queries (SETUP-NOTES)
    world = ensure_world(WorldConfig(n_passages=args.passages))
    base = DenseConfig(max_length=args.max_length, shard_size=1000)
    started = time.perf_counter()
    source, queries = encoded(world, args.cache, base, args.queries, args.available_only)
    print(f"{source.n} passages, {len(queries)} queries encoded/loaded in {time.perf_counter() - started:.0f} s",
          flush=True)
    if args.encode_only:
        return
    exact = faiss.IndexFlatIP(source.dim)
    for chunk in source.chunks():
        exact.add(chunk)
    _, top = exact.search(queries, 10)
    truth = {3: top[:, :3], 10: top}
    refine_file = args.cache / f"refine-{world.corpus_path.parent.name}-len{args.max_length}-{source.n}.npy"
    if not refine_file.exists():
        write_refine_vectors(source.chunks(), source.n, source.dim, refine_file)
    refine = RefineVectors(refine_file, source.n, source.dim)
    rows, built = [], {}
    for config in variants(base, ivf_shape(replace(base, kind="ivf-sq4"), source.n, source.dim)[0]):
        if args.only and config.kind not in args.only:
            continue
        rows.append(measure(config, source, queries, truth, source.dim, built, refine))
        print(json.dumps(rows[-1]), flush=True)
    report = {"passages": source.n, "world_passages": args.passages, "dim": source.dim, "queries": len(queries),
              "max_length": args.max_length, "encoder": "all-MiniLM-L6-v2", "threads": args.threads,
              "target_bytes_per_768d_vector": TARGET_BYTES / WIKI18, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nDense index types vs flat: {source.n} MiniLM passages (384-d), {len(queries)} queries, "
          f"{args.threads} thread(s)")
    print("| type | settings | recall@3 | recall@10 | size in RAM | build | q/s (batch 64, k=10) "
          "| wiki-18 x e5 (est.): RAM; disk read through a map |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        codes = f"PQ{r['pq_m']}" if r["pq_m"] else "SQ4"
        settings = (f"IVF{r['nlist']},{codes} nprobe {r['nprobe']}" if r["nlist"]
                    else f"efSearch {r['ef_search']}" if r["ef_search"] else "exact")
        if r["refine_depth"]:
            settings += f", refine {r['refine_depth']}"
        disk = f"; {r['wiki18_e5_disk_gb']:.0f} GB" if r["refine_depth"] else ""
        print(f"| {r['kind']} | {settings} | {r['recall@3']:.3f} | {r['recall@10']:.3f} | {r['size_mb']:.0f} MB | "
              f"{r['build_s']:.0f} s | {r['qps_batch64_k10']:,.0f} | {r['wiki18_e5_gb']:.1f} GB{disk} |")


if __name__ == "__main__":
    main()
