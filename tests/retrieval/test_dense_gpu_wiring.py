"""How a loaded dense index is put on GPUs (issue 20, 5): faiss-gpu's cloner is driven with a stand-in that
reports two GPUs and records the call, since no test machine has faiss-gpu. What faiss-gpu itself does
with the call (the sharded search) is not exercised here."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from mem1_gym.retrieval.base import RetrievalError  # noqa: E402
from mem1_gym.retrieval.dense import DenseConfig, _maybe_to_gpu  # noqa: E402


class TwoGpuFaiss:
    """The real faiss module, except that it sees two GPUs and records what is cloned onto them."""

    def __init__(self, gpus: int = 2):
        self.gpus, self.cloned, self.parameters = gpus, [], []

    def __getattr__(self, name):
        return getattr(faiss, name)

    def get_num_gpus(self) -> int:
        return self.gpus

    def GpuMultipleClonerOptions(self):  # noqa: N802 (faiss' name)
        return SimpleNamespace(shard=False, useFloat16=False)

    def index_cpu_to_all_gpus(self, index, co=None):
        self.cloned.append((index, co))
        return ("gpu", index)

    def GpuParameterSpace(self):  # noqa: N802
        recorder = self

        class Space:
            def set_index_parameter(self, index, name, value):
                recorder.parameters.append((index, name, value))

        return Space()


def _ivf(dim: int = 16, nlist: int = 4):
    vectors = np.random.default_rng(0).standard_normal((200, dim)).astype("float32")
    index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.add(vectors)
    return index


def test_ivf_index_is_sharded_over_all_gpus_in_fp16_with_its_nprobe():
    fake, index = TwoGpuFaiss(), _ivf()
    gpu_index = _maybe_to_gpu(fake, index, DenseConfig(kind="ivf-pq"), nprobe=3)
    assert gpu_index == ("gpu", index)
    (cloned, options), = fake.cloned
    assert cloned is index and options.shard is True and options.useFloat16 is True
    assert fake.parameters == [(gpu_index, "nprobe", 3)]


def test_flat_index_is_sharded_without_an_nprobe():
    fake, index = TwoGpuFaiss(), faiss.IndexFlatIP(8)
    assert _maybe_to_gpu(fake, index, DenseConfig(), nprobe=0) == ("gpu", index)
    assert len(fake.cloned) == 1 and fake.parameters == []


def test_hnsw_stays_on_the_cpu_and_use_gpu_false_keeps_every_index_there():
    fake = TwoGpuFaiss()
    hnsw = faiss.IndexHNSWFlat(8, 16)
    assert _maybe_to_gpu(fake, hnsw, DenseConfig(kind="hnsw"), nprobe=0) is hnsw  # faiss has no GPU HNSW
    flat = faiss.IndexFlatIP(8)
    assert _maybe_to_gpu(fake, flat, DenseConfig(use_gpu=False), nprobe=0) is flat
    assert fake.cloned == []


def test_use_gpu_true_without_a_gpu_names_the_fix():
    with pytest.raises(RetrievalError, match="faiss-gpu"):
        _maybe_to_gpu(TwoGpuFaiss(gpus=0), faiss.IndexFlatIP(8), DenseConfig(use_gpu=True), nprobe=0)


def test_no_gpu_and_the_default_keeps_the_cpu_index():
    flat = faiss.IndexFlatIP(8)
    assert _maybe_to_gpu(TwoGpuFaiss(gpus=0), flat, DenseConfig(), nprobe=0) is flat
