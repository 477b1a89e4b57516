"""Fixtures: a 200-passage corpus in the Search-R1 format and one built index per backend.

Indexes are session-scoped so the JVM starts once and MiniLM loads once per backend: the whole
directory must stay well under a minute on 2 cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixture_corpus import write_corpus


@pytest.fixture(scope="session", autouse=True)
def _offline_and_two_threads():
    """No hub downloads, and 2 torch threads on this 2-core machine (SETUP-NOTES)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    """A private ``cache_dir()`` for a test that builds into the default index location."""
    monkeypatch.setenv("MEM1_GYM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def corpus_path(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "fixture.jsonl")


@pytest.fixture(scope="session")
def index_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("indexes")


@pytest.fixture(scope="session")
def bm25s_retriever(corpus_path, index_root):
    from mem1_gym.retrieval import make_retriever

    with make_retriever("bm25s", corpus_path=corpus_path, index_dir=index_root / "bm25s") as retriever:
        yield retriever


@pytest.fixture(scope="session")
def tantivy_retriever(corpus_path, index_root):
    from mem1_gym.retrieval import make_retriever

    with make_retriever("tantivy", corpus_path=corpus_path, index_dir=index_root / "tantivy") as retriever:
        yield retriever


@pytest.fixture(scope="session")
def pyserini_retriever(corpus_path, index_root):
    from mem1_gym.retrieval import make_retriever

    with make_retriever("pyserini", corpus_path=corpus_path, index_dir=index_root / "pyserini") as retriever:
        yield retriever


@pytest.fixture(scope="session")
def faiss_flat_retriever(corpus_path, index_root):
    from mem1_gym.retrieval import make_retriever

    with make_retriever("faiss-flat", corpus_path=corpus_path, index_dir=index_root / "faiss-flat") as retriever:
        yield retriever


@pytest.fixture(scope="session")
def faiss_hnsw_retriever(corpus_path, index_root):
    from mem1_gym.retrieval import make_retriever

    with make_retriever("faiss-hnsw", corpus_path=corpus_path, index_dir=index_root / "faiss-hnsw") as retriever:
        yield retriever


def _compressed(kind: str, corpus_path, index_root, name: str | None = None, **options):
    """A compressed FAISS index made from the flat one's vectors (``from_index``: nothing re-encoded)."""
    from mem1_gym.retrieval import build_index, make_retriever

    flat = index_root / "faiss-flat" / "index.faiss"
    index_dir = build_index(kind, corpus_path, index_root / (name or kind), from_index=flat, **options)
    return make_retriever(kind, corpus_path=corpus_path, index_dir=index_dir)


@pytest.fixture(scope="session")
def faiss_ivf_pq_retriever(corpus_path, index_root, faiss_flat_retriever):  # flat: built first, then compressed
    with _compressed("faiss-ivf-pq", corpus_path, index_root) as retriever:
        yield retriever


@pytest.fixture(scope="session")
def faiss_hnsw_sq8_retriever(corpus_path, index_root, faiss_flat_retriever):
    with _compressed("faiss-hnsw-sq8", corpus_path, index_root) as retriever:
        yield retriever


@pytest.fixture(scope="session")
def faiss_ivf_sq4_retriever(corpus_path, index_root, faiss_flat_retriever):
    with _compressed("faiss-ivf-sq4", corpus_path, index_root) as retriever:
        yield retriever


@pytest.fixture(scope="session")
def faiss_ivf_sq4_refine_retriever(corpus_path, index_root, faiss_flat_retriever):
    with _compressed("faiss-ivf-sq4", corpus_path, index_root, "faiss-ivf-sq4-refine", refine=True) as retriever:
        yield retriever


@pytest.fixture(params=["bm25s", "tantivy", "pyserini", "faiss-flat", "faiss-hnsw"])
def retriever(request):
    """Each backend in turn, built once per session."""
    return request.getfixturevalue(f"{request.param.replace('-', '_')}_retriever")
