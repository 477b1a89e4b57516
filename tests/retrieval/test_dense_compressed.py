"""The ivf-sq4 index type: 4 bits per dimension, built from a flat index, opened memory-mapped,
searched with the nprobe tuned for it and stored with it, close to exact search on clustered vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mem1_gym.retrieval import dense, dense_build

_DIM, _N, _QUERIES = 128, 4000, 200


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    """faiss' OpenMP threads spin against the other jobs on this 2-core machine."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    """(passages (N, D), queries (Q, D)) with the structure of sentence embeddings rather than
    uniform noise: a shared mean direction, 40 topic clusters, and queries that mix two topics
    with more noise, so they fall between the passage clusters as short questions do."""
    rng = np.random.default_rng(7)
    mean = rng.standard_normal(_DIM)
    topics = rng.standard_normal((40, _DIM))
    passages = _unit(mean + topics[rng.integers(0, 40, _N)] + rng.standard_normal((_N, _DIM)))
    pairs = rng.integers(0, 40, (_QUERIES, 2))
    queries = _unit(mean + 0.5 * topics[pairs].sum(1) + rng.standard_normal((_QUERIES, _DIM)))
    return passages, queries


def _recall_at_3(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f[:3]) & set(e[:3])) / 3 for f, e in zip(found, exact)]))


def test_ivf_sq4_from_a_flat_index_loads_mapped_keeps_its_nprobe_and_nears_flat(tmp_path, vectors):
    import faiss

    passages, queries = vectors
    flat = faiss.IndexFlatIP(_DIM)
    flat.add(passages)
    faiss.write_index(flat, str(tmp_path / "flat.index"))
    out = tmp_path / "sq4"
    out.mkdir()
    params = dense_build.build_dense_index(
        [(str(i), "") for i in range(_N)], out, dense.DenseConfig(kind="ivf-sq4"), tmp_path / "work",
        from_index=tmp_path / "flat.index",
    )

    index = dense.read_index(out / dense.INDEX_FILE)
    assert isinstance(index, faiss.IndexIVFScalarQuantizer) and index.code_size == _DIM // 2  # 4 bits a dimension
    # the codes stay in the file, mapped: server workers share them through the page cache
    assert isinstance(faiss.downcast_InvertedLists(index.invlists), faiss.OnDiskInvertedLists)
    stored = json.loads((out / "mem1_dense.json").read_text())
    assert stored["nlist"] == index.nlist == params["nlist"]
    # the tuned default is written with the index, so a later load searches the same lists
    assert stored["nprobe"] == dense.tuned_nprobe(index) == -(-index.nlist // 2)
    assert dense.DenseConfig(**{k: v for k, v in stored.items() if k != "dim"}).nprobe == stored["nprobe"]

    _, exact = flat.search(queries, 10)
    recall = {
        nprobe: _recall_at_3(index.search(queries, 10, params=faiss.SearchParametersIVF(nprobe=nprobe))[1], exact)
        for nprobe in (1, stored["nprobe"], index.nlist)
    }
    # Isotropic clusters are 4-bit codes' hard case (near-equal neighbours): 0.83 measured here;
    # 100k MiniLM passages 0.98 (docs/benchmarks.md). The tuned nprobe loses next to nothing against
    # searching every list, and far fewer lists lose much.
    assert recall[stored["nprobe"]] >= 0.78
    assert recall[stored["nprobe"]] >= recall[index.nlist] - 0.02
    assert recall[1] < recall[stored["nprobe"]] - 0.1


def test_ivf_sq4_ranges_are_trained_on_mean_and_spread_not_extremes(vectors):
    """One outlier coordinate must not stretch a dimension's 16 levels (min..max would)."""
    import faiss

    passages, _ = vectors
    spiked = passages.copy()
    spiked[0, 0] = 25.0
    index = dense_build.fill_index(dense_build.VectorBlocks([spiked]), dense.DenseConfig(kind="ivf-sq4"))
    sq = index.sq
    ranges = faiss.vector_to_array(sq.trained).reshape(2, _DIM)  # (min, width) per dimension
    assert ranges[1, 0] < 5.0
