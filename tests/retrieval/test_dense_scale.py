"""Dense indexes at scale: every index type, resumable sharded encoding, compressing a flat index
without encoding, atomic builds, e5 prefixes through a tiny local BERT."""

from __future__ import annotations

import json
import re
import zlib

import numpy as np
import pytest

from mem1_gym.retrieval import build_index, load_retriever
from mem1_gym.retrieval import dense, dense_build
from mem1_gym.retrieval.base import RetrievalError
from mem1_gym.retrieval.cli import main as cli_main

N_PASSAGES = 600  # ivf-pq needs >= 256 passages to train its codebooks
_DIM = 48


class BagOfWordsEncoder:
    """A fast stand-in for MiniLM with real structure: a text is the normalised sum of its words'
    fixed random vectors, so a passage's title query lands next to it. ``calls`` counts encodes."""

    calls: list[int] = []

    def __init__(self, name: str = "bow", max_length: int = 256, batch_size: int = 64):
        self.name, self.dim = name, _DIM

    def encode(self, texts):
        BagOfWordsEncoder.calls.append(len(texts))
        out = np.zeros((len(texts), _DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row] += np.random.default_rng(zlib.crc32(word.encode())).standard_normal(_DIM)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    """faiss' OpenMP threads spin against the other jobs on this 2-core machine: training a tiny
    ivf-pq took 4.6 s on 2 threads and 0.26 s on 1."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture
def bow(monkeypatch):
    BagOfWordsEncoder.calls = []
    monkeypatch.setattr(dense, "Encoder", BagOfWordsEncoder)
    monkeypatch.setattr(dense_build, "Encoder", BagOfWordsEncoder)
    return BagOfWordsEncoder.calls


def _title(i: int) -> str:
    return f"zq{i}x entry{i % 37}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "corpus.jsonl"
    with open(path, "w") as f:
        for i in range(N_PASSAGES):
            text = f"{_title(i)} is a place near site{i % 11} known for craft{i % 7} and trade{i % 5}"
            f.write(json.dumps({"id": str(i), "contents": f'"{_title(i)}"\n{text}'}) + "\n")
    return path


@pytest.mark.parametrize("index_type", list(dense.INDEX_TYPES))
def test_each_index_type_builds_and_finds_a_title(tmp_path, corpus, bow, index_type):
    out = tmp_path / index_type
    assert cli_main(["build-index", "--backend", "faiss", "--index-type", index_type, "--corpus", str(corpus),
                     "--out", str(out), "--shard-size", "256"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["backend"] == f"faiss-{index_type}" and meta["params"]["kind"] == index_type
    with load_retriever(f"faiss-{index_type}", out) as retriever:
        hits = retriever.search([_title(i) for i in (5, 321, 599)], k=3)
    assert [h[0].id for h in hits] == ["5", "321", "599"]
    assert not dense_build.partial_dir(out).exists()  # the shards go once the index is in place


def test_crashed_build_leaves_nothing_loadable_and_resumes_from_its_shards(tmp_path, corpus, bow, monkeypatch):
    out = tmp_path / "idx"
    real = BagOfWordsEncoder.encode

    def crash_on_third_shard(self, texts):
        if len(BagOfWordsEncoder.calls) == 2:
            raise KeyboardInterrupt  # the process is stopped mid-encoding
        return real(self, texts)

    monkeypatch.setattr(BagOfWordsEncoder, "encode", crash_on_third_shard)
    with pytest.raises(KeyboardInterrupt):
        build_index("faiss-ivf-pq", corpus, out, shard_size=100)
    assert not out.exists()
    with pytest.raises(RetrievalError, match="missing or damaged"):
        load_retriever("faiss-ivf-pq", out)
    assert len(list((dense_build.partial_dir(out) / "shards").glob("0*.npy"))) == 2

    monkeypatch.setattr(BagOfWordsEncoder, "encode", real)
    BagOfWordsEncoder.calls.clear()
    build_index("faiss-ivf-pq", corpus, out, shard_size=100)
    assert BagOfWordsEncoder.calls == [100] * 4  # shards 2..5 only
    with load_retriever("faiss-ivf-pq", out, nprobe=4) as retriever:  # nprobe: a search-time option
        assert retriever.config.nprobe == 4 and retriever.search([_title(42)], k=1)[0][0].id == "42"


def test_shards_of_other_encoder_settings_are_not_resumed(tmp_path, corpus, bow, monkeypatch):
    out = tmp_path / "idx"
    shard_dir = dense_build.partial_dir(out) / "shards"
    shard_dir.mkdir(parents=True)
    (shard_dir / "spec.json").write_text(json.dumps({"encoder": "something-else"}))
    np.save(shard_dir / "00000.npy", np.zeros((100, _DIM), dtype=np.float16))
    build_index("faiss-flat", corpus, out, shard_size=100)
    assert sum(BagOfWordsEncoder.calls) == N_PASSAGES


def test_from_index_compresses_a_flat_index_like_building_from_the_same_vectors(tmp_path, corpus, bow):
    flat = build_index("faiss-flat", corpus, tmp_path / "flat")
    encoded = sum(bow)
    converted = build_index("faiss-ivf-pq", corpus, tmp_path / "converted", from_index=flat / dense.INDEX_FILE)
    assert sum(bow) == encoded  # nothing encoded
    built = build_index("faiss-ivf-pq", corpus, tmp_path / "built")
    assert (converted / dense.INDEX_FILE).read_bytes() == (built / dense.INDEX_FILE).read_bytes()


def test_from_index_refuses_another_corpus_and_compressed_sources(tmp_path, corpus, bow):
    small = tmp_path / "small.jsonl"
    small.write_text("".join(corpus.read_text().splitlines(keepends=True)[:300]))
    flat = build_index("faiss-flat", corpus, tmp_path / "flat")
    with pytest.raises(RetrievalError, match="600 vectors but the corpus has 300"):
        build_index("faiss-ivf-pq", small, tmp_path / "x", from_index=flat / dense.INDEX_FILE)
    pq = build_index("faiss-ivf-pq", corpus, tmp_path / "pq")
    with pytest.raises(RetrievalError, match="approximately"):
        build_index("faiss-hnsw-sq8", corpus, tmp_path / "y", from_index=pq / dense.INDEX_FILE)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_bad_index_type_is_a_clear_error(tmp_path, corpus, capsys):
    with pytest.raises(SystemExit):
        cli_main(["build-index", "--backend", "faiss", "--index-type", "ivf", "--corpus", str(corpus)])
    assert "invalid choice: 'ivf'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="one of flat, hnsw, ivf-pq, hnsw-sq8, ivf-sq4, got 'ivf'"):
        dense.DenseConfig(kind="ivf")
    assert cli_main(["build-index", "--backend", "bm25s", "--index-type", "hnsw", "--corpus", str(corpus)]) == 2
    assert "--index-type goes with --backend faiss" in capsys.readouterr().err


def test_ivf_pq_defaults_fit_wiki18_in_8_gb():
    config = dense.DenseConfig(kind="ivf-pq")
    nlist, pq_m, nbits = dense_build.ivf_shape(config, 21_015_324, 768)
    assert dense_build.factory_string(config, 21_015_324, 768) == f"IVF{nlist},PQ{pq_m}x8"
    codes_and_ids = 21_015_324 * (pq_m + 8)  # faiss stores an int64 id beside each code
    assert codes_and_ids + nlist * 768 * 4 < 8e9
    assert 39 * nlist <= config.max_train  # enough training vectors per list


def test_e5_prefixes_reach_a_local_encoder(tmp_path, corpus, monkeypatch):
    """A tiny BERT saved under a name with "e5": passages get "passage: ", queries "query: "."""
    transformers = pytest.importorskip("transformers")
    small = tmp_path / "small.jsonl"
    small.write_text("".join(corpus.read_text().splitlines(keepends=True)[:40]))
    model_dir = tmp_path / "tiny-e5"
    words = sorted({w for line in small.read_text().splitlines() for w in json.loads(line)["contents"].split()})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "passage", "query", ":"]
    (tmp_path / "vocab.txt").write_text("\n".join([*specials, *words]))
    transformers.BertTokenizerFast(str(tmp_path / "vocab.txt")).save_pretrained(model_dir)
    config = transformers.BertConfig(vocab_size=len(words) + 8, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64)
    transformers.BertModel(config).save_pretrained(model_dir)
    seen = []
    real = dense.Encoder.encode
    monkeypatch.setattr(dense.Encoder, "encode", lambda self, texts: seen.extend(texts) or real(self, texts))
    out = build_index("faiss-flat", small, tmp_path / "idx", encoder=str(model_dir))
    assert len(seen) == 40 and all(t.startswith("passage: ") for t in seen)
    seen.clear()
    with load_retriever("faiss-flat", out) as retriever:
        assert len(retriever.search(["zq5x"], k=3)[0]) == 3
    assert seen == ["query: zq5x"]
