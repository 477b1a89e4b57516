"""refine: a compressed index proposes candidates and float16 vectors memory-mapped from disk re-rank
them exactly. Answers close to flat's from an index whose RAM is its codes; built from encoding or
from a flat index; answers that are prefixes of each other and do not depend on the batch; clear
errors for a missing or damaged vectors file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mem1_gym.retrieval import build_index, dense, load_retriever
from mem1_gym.retrieval.base import RetrievalError
from mem1_gym.retrieval.cli import main as cli_main

_DIM, _N, _QUERIES = 64, 3000, 150


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# Sentence-embedding-like structure (as in test_dense_compressed.py): a shared direction, 30 topics,
# queries between two topics with more noise, so compressed codes and IVF lists both lose neighbours.
_rng = np.random.default_rng(11)
_mean, _topics = _rng.standard_normal(_DIM), _rng.standard_normal((30, _DIM))
PASSAGES = _unit(_mean + _topics[_rng.integers(0, 30, _N)] + _rng.standard_normal((_N, _DIM)))
QUERIES = _unit(_mean + 0.5 * _topics[_rng.integers(0, 30, (_QUERIES, 2))].sum(1)
                + _rng.standard_normal((_QUERIES, _DIM)))


class TableEncoder:
    """Stand-in encoder: the text "p17" is passage 17's vector, "q17" query 17's."""

    def __init__(self, name: str = "table", max_length: int = 256, batch_size: int = 64):
        self.name, self.dim = name, _DIM

    def encode(self, texts):
        return np.stack([(PASSAGES if t[0] == "p" else QUERIES)[int(t[1:])] for t in texts])


@pytest.fixture(autouse=True)
def _table_encoder(monkeypatch):
    import faiss

    from mem1_gym.retrieval import dense_build

    monkeypatch.setattr(dense, "Encoder", TableEncoder)
    monkeypatch.setattr(dense_build, "Encoder", TableEncoder)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # OpenMP threads spin against the other jobs on a 2-core machine
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import faiss

    folder = tmp_path_factory.mktemp("refine")
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"doc{i}", "contents": f"p{i}"}) + "\n" for i in range(_N)))
    flat = faiss.IndexFlatIP(_DIM)
    flat.add(PASSAGES)
    faiss.write_index(flat, str(folder / "flat.index"))
    _, exact = flat.search(QUERIES, 10)
    return corpus, folder / "flat.index", exact


def _rows(hits) -> list[list[int]]:
    return [[int(doc.id.removeprefix("doc")) for doc in query_hits] for query_hits in hits]


def _recall_at_3(found: list[list[int]], exact: np.ndarray) -> float:
    return float(np.mean([len(set(f[:3]) & set(e[:3])) / 3 for f, e in zip(found, exact)]))


def test_refine_brings_a_4_bit_index_close_to_flat(tmp_path, world):
    corpus, flat_file, exact = world
    out = build_index("faiss-ivf-sq4", corpus, tmp_path / "sq4", from_index=flat_file, refine=True)

    vectors = np.load(out / dense.REFINE_FILE, mmap_mode="r")
    assert vectors.dtype == np.float16 and vectors.shape == (_N, _DIM)
    np.testing.assert_array_equal(vectors, PASSAGES.astype(np.float16))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["params"]["refine"] is True and dense.REFINE_FILE in meta["files"]

    queries = [f"q{i}" for i in range(_QUERIES)]
    with load_retriever("faiss-ivf-sq4", out) as retriever:  # refine comes from the build, not an option
        assert isinstance(retriever._refine._vectors, np.memmap)  # read from disk row by row, never loaded whole
        refined = _rows(retriever.search(queries, k=10))
    with load_retriever("faiss-ivf-sq4", out, refine=False) as retriever:
        codes_only = _rows(retriever.search(queries, k=10))
    # 4-bit codes on near-equal neighbours: 0.81 measured here (refined: 1.0); their 100 best candidates hold
    # every exact top 3, and float16 scores rank them as float32 would.
    assert _recall_at_3(codes_only, exact) < 0.9
    assert _recall_at_3(refined, exact) >= 0.97
    assert _recall_at_3(refined, exact) > _recall_at_3(codes_only, exact)


def test_refined_answers_are_prefixes_and_do_not_depend_on_the_batch(tmp_path, world):
    corpus, flat_file, _ = world
    out = build_index("faiss-ivf-pq", corpus, tmp_path / "pq", from_index=flat_file, refine=True, refine_depth=40)
    queries = [f"q{i}" for i in range(40)]
    with load_retriever("faiss-ivf-pq", out) as retriever:
        assert retriever.config.refine_depth == 40
        deep = retriever.search(queries, k=10)
        for k in (1, 3, 7):
            assert [[d.id for d in h] for h in retriever.search(queries, k=k)] == [[d.id for d in h[:k]] for h in deep]
        alone = [retriever.search([q], k=10)[0] for q in queries[:8]]
    assert [[(d.id, d.score) for d in h] for h in alone] == [[(d.id, d.score) for d in h] for h in deep[:8]]
    scores = [[d.score for d in h] for h in deep]
    assert all(s == sorted(s, reverse=True) for s in scores)
    # the score is the exact inner product with the float16 vector, not the PQ estimate
    row = int(deep[0][0].id.removeprefix("doc"))
    assert deep[0][0].score == pytest.approx(float(PASSAGES[row].astype(np.float16).astype(np.float32) @ QUERIES[0]),
                                             abs=1e-5)


def test_a_build_that_encodes_writes_the_same_vectors_as_one_from_a_flat_index(tmp_path, world):
    corpus, flat_file, _ = world
    encoded = build_index("faiss-ivf-sq4", corpus, tmp_path / "encoded", refine=True, shard_size=1000)
    converted = build_index("faiss-ivf-sq4", corpus, tmp_path / "converted", from_index=flat_file, refine=True)
    assert (encoded / dense.REFINE_FILE).read_bytes() == (converted / dense.REFINE_FILE).read_bytes()
    plain = build_index("faiss-ivf-sq4", corpus, tmp_path / "plain", from_index=flat_file)
    assert not (plain / dense.REFINE_FILE).exists()  # off by default: no 2 bytes per dimension on disk


def test_cli_flags_reach_the_build(tmp_path, world):
    corpus, flat_file, _ = world
    out = tmp_path / "cli"
    assert cli_main(["build-index", "--backend", "faiss", "--index-type", "ivf-pq", "--refine", "--refine-depth",
                     "50", "--corpus", str(corpus), "--from-index", str(flat_file), "--out", str(out)]) == 0
    params = json.loads((out / "meta.json").read_text())["params"]
    assert params["refine"] is True and params["refine_depth"] == 50
    assert (out / dense.REFINE_FILE).is_file()


def test_missing_or_damaged_vectors_and_bad_settings_are_clear_errors(tmp_path, world):
    corpus, flat_file, _ = world
    out = build_index("faiss-ivf-sq4", corpus, tmp_path / "sq4", from_index=flat_file, refine=True)
    vectors = out / dense.REFINE_FILE
    data = vectors.read_bytes()
    vectors.write_bytes(data[: len(data) // 2])  # a copy cut short
    with pytest.raises(RetrievalError, match="re-ranking vectors.*--refine"):
        dense.RefineVectors(vectors, _N, _DIM)
    np.save(vectors, PASSAGES[:10].astype(np.float16))  # whole, but of another index
    with pytest.raises(RetrievalError, match=r"float16 \(3000, 64\)"):
        dense.RefineVectors(vectors, _N, _DIM)
    vectors.unlink()
    with pytest.raises(RetrievalError, match="no re-ranking vectors.*refine=False"):
        dense.DenseRetriever.load(out, _Store(_N))
    with pytest.raises(ValueError, match="flat already stores them exactly"):
        dense.DenseConfig(kind="flat", refine=True)
    with pytest.raises(ValueError, match="refine_depth must be >= 1"):
        dense.DenseConfig(kind="ivf-pq", refine=True, refine_depth=0)


class _Store:
    """The length of a corpus, all DenseRetriever checks before a search."""

    def __init__(self, n: int):
        self.n, self.path = n, "stand-in"

    def __len__(self) -> int:
        return self.n
