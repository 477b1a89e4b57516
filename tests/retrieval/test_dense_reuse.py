"""A second FAISS index of the same corpus reuses the first one's embeddings instead of re-encoding."""

import zlib

import numpy as np
import pytest

from mem1_gym.retrieval import build_index, make_retriever
from mem1_gym.retrieval import dense


@pytest.fixture
def counted_encoder(monkeypatch):
    """A fast stand-in for MiniLM (the reuse logic is under test, not the encoder): counts the
    passages it encodes and returns deterministic unit vectors of the right width."""
    calls = []

    def encode(self, texts):
        calls.append(len(texts))
        rows = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim) for t in texts]
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    monkeypatch.setattr(dense.Encoder, "encode", encode)
    return calls


def test_hnsw_build_reuses_flat_vectors(cache, corpus_path, counted_encoder):
    flat_dir = build_index("faiss-flat", corpus_path)
    passages_encoded = sum(counted_encoder)
    hnsw_dir = build_index("faiss-hnsw", corpus_path)
    assert sum(counted_encoder) == passages_encoded  # nothing encoded for the second index
    assert np.array_equal(dense.stored_vectors(hnsw_dir), dense.stored_vectors(flat_dir))
    query = ["a passage about rivers"]
    hnsw, flat = make_retriever("faiss-hnsw", corpus_path=corpus_path), make_retriever("faiss-flat", corpus_path=corpus_path)
    assert [d.id for d in hnsw.search(query, 3)[0]] == [d.id for d in flat.search(query, 3)[0]]


def test_different_encoder_settings_are_not_reused(cache, corpus_path, counted_encoder):
    build_index("faiss-flat", corpus_path, max_length=32)
    first = sum(counted_encoder)
    build_index("faiss-hnsw", corpus_path, max_length=64)
    assert sum(counted_encoder) == 2 * first  # 32-token vectors are not 64-token ones: encoded again
