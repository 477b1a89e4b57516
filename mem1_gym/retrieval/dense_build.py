"""Dense index builds that stream: passages encoded shard by shard (a crashed build resumes), the
index trained on a sample and filled shard by shard; and compressing a prebuilt flat index
(Search-R1's ``e5_Flat.index``) into another type without encoding anything.

Peak memory, whatever the corpus size: one shard of passages and their vectors
(``shard_size`` x dim x 4 bytes: 200 MB for e5-base at 65,536), the training sample (``max_train``
x dim x 4: 1.5 GB for 500k e5-base vectors, the IVF and SQ types only), the encoder, and the index
being filled, which is the index's own final size (e5-base on wiki-18: ~5.6 GB as ivf-pq with the
default 256 bytes per passage, 64 GB as flat). Building a flat or HNSW index therefore still needs
its full size in memory; the compressed types are the ones for wiki-18 on a modest machine.
With ``refine`` the vectors are also written, chunk by chunk, as float16 into ``vectors.f16.npy``
(32 GB of disk for wiki-18 x e5-base), read back memory-mapped at search time.

Crash safety: shards go to ``OUT.partial/shards/`` (each written under a temporary name and renamed,
so a present shard is a whole one), next to the final directory; a rerun of the same build (same
corpus and encoder settings, checked through ``spec.json``) encodes only the shards that are
missing. The index itself is written in :mod:`mem1_gym.retrieval.build`'s temporary directory and
renamed to ``OUT`` when complete, so ``OUT`` never holds a half index; ``OUT.partial`` is deleted
after that rename.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from mem1_gym.retrieval.base import RetrievalError
from mem1_gym.retrieval.dense import (
    INDEX_TYPES, REFINE_FILE, DenseConfig, Encoder, _import_faiss, read_index, tuned_nprobe, write_index_dir,
    write_refine_vectors,
)

SHARDS_DIR = "shards"
_SPEC_FILE = "spec.json"
_TRAIN_SEED = 0  # the training sample is seeded: the same inputs give the same index
_MIN_PER_LIST = 39  # faiss warns below 39 training vectors per IVF list (and per PQ centroid: 39 x 256)
_log = logging.getLogger(__name__)


def partial_dir(out_dir: str | Path) -> Path:
    """Where a build of ``out_dir`` keeps its encoded shards until the index is in place."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".partial")


def ivf_shape(config: DenseConfig, n: int, dim: int) -> tuple[int, int, int]:
    """(nlist, pq_m, bits per sub-quantizer) of an ivf-pq index of ``n`` vectors of ``dim``, the
    defaults filled in. Codes are 8-bit (256 centroids per sub-quantizer) unless fewer than 256
    vectors train them: a tiny corpus gets 2**floor(log2(n)) centroids instead of an error."""
    train = min(n, config.max_train)
    nlist = config.nlist or max(1, min(int(4 * math.sqrt(n)), train // _MIN_PER_LIST))
    pq_m = config.pq_m or max(m for m in range(1, dim // 3 + 1) if dim % m == 0)
    if dim % pq_m:
        divisors = [m for m in (8, 16, 32, 48, 64, 96, 128, 192, 256) if dim % m == 0]
        raise ValueError(f"pq_m={pq_m} must divide the vector dimension {dim}; e.g. one of {divisors}")
    return nlist, pq_m, max(1, min(8, train.bit_length() - 1))


def factory_string(config: DenseConfig, n: int, dim: int) -> str:
    """The faiss index-factory string of ``config.kind`` for ``n`` vectors of ``dim``."""
    nlist, pq_m, nbits = ivf_shape(config, n, dim)
    return INDEX_TYPES[config.kind].format(hnsw_m=config.hnsw_m, nlist=nlist, pq_m=pq_m, nbits=nbits)


class VectorBlocks:
    """Vectors held as a list of (rows, dim) blocks, in memory or ``.npy`` shards memory-mapped: a
    source for :func:`fill_index`."""

    def __init__(self, blocks: list[np.ndarray]):
        self._blocks = blocks
        self._starts = np.cumsum([0] + [len(b) for b in blocks])
        self.n, self.dim = int(self._starts[-1]), int(blocks[0].shape[1])

    def chunks(self) -> Iterator[np.ndarray]:
        for block in self._blocks:
            yield np.ascontiguousarray(block, dtype=np.float32)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows (sorted) gathered block by block, as float32."""
        which = np.searchsorted(self._starts, rows, side="right") - 1
        parts = [self._blocks[b][rows[which == b] - self._starts[b]] for b in np.unique(which)]
        return np.concatenate(parts).astype(np.float32)


class _IndexVectors:
    """The vectors of an index that stores them exactly (flat, HNSW-flat), read in chunks."""

    def __init__(self, index, chunk: int):
        self._index, self._chunk = index, chunk
        self.n, self.dim = int(index.ntotal), int(index.d)

    def chunks(self) -> Iterator[np.ndarray]:
        for start in range(0, self.n, self._chunk):
            yield self._index.reconstruct_n(start, min(self._chunk, self.n - start))

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self._index.reconstruct_batch(rows.astype(np.int64))


def fill_index(source, config: DenseConfig):
    """A ``config.kind`` index of ``source``'s vectors: trained on a seeded sample of at most
    ``max_train`` of them when the type needs training, then filled chunk by chunk."""
    faiss = _import_faiss()
    factory = factory_string(config, source.n, source.dim)
    index = faiss.index_factory(source.dim, factory, faiss.METRIC_INNER_PRODUCT)
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efConstruction = config.ef_construction
    if isinstance(index, faiss.IndexIVFPQ):
        # The factory turns on polysemous training, for a Hamming pre-filter we never use: it was 93 s
        # of a 95 s training on 600 vectors.
        index.do_polysemous_training = False
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        # Each dimension's 16 levels span mean +- 3 sd instead of min..max, so they are not spent on
        # a few outliers: exhaustive SQ4 on 56k MiniLM passages, recall@3 of flat 0.930 -> 0.945.
        index.sq.rangestat, index.sq.rangestat_arg = faiss.ScalarQuantizer.RS_meanstd, 3.0
    if not index.is_trained:
        size = min(source.n, config.max_train)
        rows = np.sort(np.random.default_rng(_TRAIN_SEED).choice(source.n, size=size, replace=False))
        _log.info("training %s on %d of %d vectors", factory, size, source.n)
        index.train(source.take(rows))
    for chunk in _progress(source.chunks(), source.n, f"adding to {factory}"):
        index.add(chunk)
    return index


def _progress(chunks: Iterable[np.ndarray], total: int, desc: str) -> Iterator[np.ndarray]:
    """``chunks`` under a bar with ETA in a terminal (tqdm comes with transformers), silent elsewhere."""
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="vec", unit_scale=True, disable=None) as bar:
        for chunk in chunks:
            yield chunk
            bar.update(len(chunk))


def build_dense_index(
    passages: Iterable[tuple[str, str]], out_dir: Path, config: DenseConfig, work_dir: Path,
    from_index: str | Path | None = None, spec: dict | None = None,
) -> dict:
    """Write a ``config.kind`` index of ``passages`` into ``out_dir``; return the build parameters.

    ``passages`` is read once. With ``from_index`` (a FAISS file storing exact vectors, e.g.
    ``e5_Flat.index``) its vectors are used and nothing is encoded; otherwise passages are encoded
    into shards under ``work_dir`` (see the module docstring; ``spec`` identifies the corpus there).
    """
    if from_index is not None:
        source = _IndexVectors(_open_source(Path(from_index)), config.shard_size)
        n_docs = sum(1 for _ in passages)
        if n_docs != source.n:
            raise RetrievalError(
                f"{from_index} holds {source.n} vectors but the corpus has {n_docs} passages; pass the corpus "
                f"that index was built from"
            )
    else:
        source = encode_shards(passages, work_dir / SHARDS_DIR, config, spec or {})
    index = fill_index(source, config)
    if config.refine:  # a second pass over the shards (or the flat index), one chunk in memory
        chunks = _progress(source.chunks(), source.n, "float16 vectors for re-ranking")
        write_refine_vectors(chunks, source.n, source.dim, Path(out_dir) / REFINE_FILE)
    params = {k: v for k, v in asdict(config).items() if k != "use_gpu"}
    if config.kind == "ivf-pq":  # recorded as built, not as "0 = default"
        params["pq_m"] = ivf_shape(config, source.n, source.dim)[1]
    if config.kind.startswith("ivf"):
        params["nlist"], params["nprobe"] = int(index.nlist), config.nprobe or tuned_nprobe(index)
    return write_index_dir(index, out_dir, params)


def _open_source(path: Path):
    faiss = _import_faiss()
    if not path.is_file():
        raise FileNotFoundError(f"no FAISS index file at {path}; pass --from-index the flat index (e5_Flat.index)")
    index = read_index(path)
    if not isinstance(index, (faiss.IndexFlat, faiss.IndexHNSWFlat)):
        raise RetrievalError(
            f"{path} is a {type(index).__name__}, which stores vectors approximately; --from-index needs a flat "
            f"(or HNSW-flat) index, such as Search-R1's e5_Flat.index"
        )
    return index


def encode_shards(
    passages: Iterable[tuple[str, str]], shard_dir: Path, config: DenseConfig, spec: dict
) -> VectorBlocks:
    """Encode ``passages`` into ``shard_dir/00000.npy``, ... (float16, ``shard_size`` rows each),
    keeping the shards a previous run of the same build wrote; return them memory-mapped."""
    _, passage_prefix = config.prefixes()
    spec = {**spec, "encoder": config.encoder, "max_length": config.max_length, "passage_prefix": passage_prefix,
            "shard_size": config.shard_size, "dtype": "float16"}
    _reset_if_stale(shard_dir, spec)
    encoder, paths, texts = None, [], []

    def flush() -> None:
        nonlocal encoder
        path = shard_dir / f"{len(paths):05d}.npy"
        if not (path.is_file() and len(np.load(path, mmap_mode="r")) == len(texts)):
            encoder = encoder or Encoder(config.encoder, config.max_length, config.batch_size)
            # fp16 halves the shards on disk (wiki-18 x e5-base: 32 GB); Search-R1 encodes in fp16 too
            vectors = encoder.encode([passage_prefix + text for text in texts]).astype(np.float16)  # (S, D)
            tmp = path.with_name(f".{path.stem}.tmp.npy")
            np.save(tmp, vectors)
            os.replace(tmp, path)  # a shard that exists is a whole one
        paths.append(path)
        texts.clear()

    for _, text in passages:
        texts.append(text)
        if len(texts) == config.shard_size:
            flush()
    if texts:
        flush()
    if not paths:
        raise RetrievalError("the corpus has no passages to encode")
    return VectorBlocks([np.load(p, mmap_mode="r") for p in paths])


def _reset_if_stale(shard_dir: Path, spec: dict) -> None:
    """Keep ``shard_dir`` only when it was written for ``spec``; else start it afresh."""
    spec_file = shard_dir / _SPEC_FILE
    try:
        if json.loads(spec_file.read_text()) == spec:
            n = len(list(shard_dir.glob("[0-9]*.npy")))
            _log.info("resuming the encoding in %s: %d shard(s) already encoded", shard_dir, n)
            return
    except (OSError, ValueError):
        pass  # absent or unreadable: nothing to resume
    shutil.rmtree(shard_dir, ignore_errors=True)
    shard_dir.mkdir(parents=True)
    spec_file.write_text(json.dumps(spec))
