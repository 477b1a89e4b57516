"""Build, cache, check and open indexes: the one entry point is :func:`make_retriever`.

An index is a directory holding the backend's files, a ``meta.json`` (backend, corpus path and
fingerprint, parameters, file sizes) and a ``manifest.json`` (each file's size and hash,
:mod:`mem1_gym.data.manifest`). It is built in a temporary sibling directory and renamed into
place, under a file lock, so a killed build leaves nothing half-written and parallel env workers
asking for the same index build it once. Opening checks ``meta.json`` and the manifest against the
files and the corpus. An index of the cache (no ``index_dir`` given) that fails is rebuilt with a
warning; one at a path the caller chose raises :class:`RetrievalError` with the exact command that
rebuilds it. Indexes built before manifests existed get one written when they pass ``meta.json``'s
checks: rebuilding them could take hours (dense encoding).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from mem1_gym.data.manifest import MANIFEST_FILE, build_lock, chunk_digest, find_problem, replace_dir, write_manifest
from mem1_gym.retrieval.base import RetrievalError, Retriever
from mem1_gym.retrieval.dense_build import build_dense_index, partial_dir
from mem1_gym.retrieval.docstore import CorpusStream, DocStore, corpus_cache_dir, open_docstore

BACKENDS = ("bm25s", "tantivy", "pyserini", "faiss-flat", "faiss-hnsw", "faiss-ivf-pq", "faiss-hnsw-sq8",
            "faiss-ivf-sq4")
META_FILE = "meta.json"
FORMAT_VERSION = 1
_META_KEYS = {"format_version", "backend", "corpus", "params", "files"}
_CORPUS_KEYS = {"path", "n_docs", "size", "sample_sha1"}
# backend -> (module that implements it, its config class); and the options the name itself fixes
_IMPLEMENTATIONS = {
    "bm25s": ("bm25", "BM25Config"),
    "tantivy": ("bm25_tantivy", "TantivyConfig"),
    "pyserini": ("lucene", "LuceneConfig"),
    "faiss-flat": ("dense", "DenseConfig"),
    "faiss-hnsw": ("dense", "DenseConfig"),
    "faiss-ivf-pq": ("dense", "DenseConfig"),
    "faiss-hnsw-sq8": ("dense", "DenseConfig"),
    "faiss-ivf-sq4": ("dense", "DenseConfig"),
}
_PRESETS = {name: {"kind": name.removeprefix("faiss-")} for name in BACKENDS if name.startswith("faiss-")}
AUTO_TANTIVY_BYTES = 1 << 30
"""A corpus jsonl larger than this (~1.5M wiki-18 passages; a ``.gz`` counts 3.5x its size) gets
tantivy when the backend is "auto": bm25s would need ~6 GB to build it and ~2.5 GB resident."""
_SAMPLE_BLOCKS, _BLOCK_BYTES = 16, 64 * 1024
_log = logging.getLogger(__name__)  # corpus fingerprint: 1 MiB read even for wiki-18's 14 GB


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        choices = ", ".join(BACKENDS)
        raise ValueError(f"unknown retrieval backend {backend!r}; choose one of {choices} or an http:// URL")
    return backend


def choose_backend(corpus_path: str | Path | None) -> str:
    """The backend of ``retriever="auto"``: bm25s for the synthetic world and small corpora,
    tantivy (memory-mapped, no Java) above :data:`AUTO_TANTIVY_BYTES` of corpus, with a log line."""
    if corpus_path is None:
        return "bm25s"
    path = Path(corpus_path)
    size = path.stat().st_size * (3.5 if path.suffix == ".gz" else 1.0) if path.is_file() else 0
    if size <= AUTO_TANTIVY_BYTES:
        return "bm25s"
    _log.info(
        "corpus %s has %.1f GB of text (over %.1f GB): using the tantivy BM25 backend (memory-mapped) instead "
        "of bm25s; pass retriever=\"bm25s\" to insist", path, size / 2**30, AUTO_TANTIVY_BYTES / 2**30,
    )
    return "tantivy"


def _module(backend: str):
    return importlib.import_module(f"mem1_gym.retrieval.{_IMPLEMENTATIONS[backend][0]}")


def corpus_fingerprint(corpus_path: str | Path) -> dict:
    """Size plus a hash of 16 evenly spaced 64 KiB blocks: cheap, and it survives copies and moves."""
    size = Path(corpus_path).stat().st_size
    offsets = [size * i // _SAMPLE_BLOCKS for i in range(_SAMPLE_BLOCKS)]
    return {"size": size, "sample_sha1": chunk_digest(corpus_path, hashlib.sha1(), offsets, _BLOCK_BYTES)}


def default_index_dir(corpus_path: str | Path, backend: str) -> Path:
    """``cache_dir()/indexes/<corpus name>-<key>/<backend>``; the key changes when the corpus file does."""
    _check_backend(backend)
    return corpus_cache_dir(corpus_path) / backend


def rebuild_command(backend: str, corpus_path: str | Path | None, out_dir: str | Path) -> str:
    return f"mem1-gym build-index --backend {backend} --corpus {corpus_path or 'CORPUS.jsonl'} --out {out_dir}"


def build_index(
    backend: str, corpus_path: str | Path, out_dir: str | Path | None = None, *, skip_bad_lines: bool = False,
    from_index: str | Path | None = None, **options
) -> Path:
    """Build (or rebuild) the ``backend`` index of ``corpus_path`` into ``out_dir`` and return it.

    ``out_dir`` defaults to :func:`default_index_dir`; ``options`` are the backend config's fields
    (``k1``, ``b``; ``encoder``, ``hnsw_m``, ...). An existing index there is replaced atomically.
    A corpus line that is not an ``{"id", "contents"}`` object stops the build with its line
    number, or with ``skip_bad_lines`` is skipped (the count is logged and kept in ``meta.json``).
    ``from_index`` (FAISS backends): a flat index file of this corpus (Search-R1's ``e5_Flat.index``)
    whose vectors are compressed into the new index instead of encoding the corpus.
    """
    config = _backend_config(backend, options)  # bad options fail before anything is written
    corpus_path = Path(corpus_path).resolve()
    out_dir = Path(out_dir) if out_dir is not None else default_index_dir(corpus_path, backend)
    with build_lock(out_dir):
        _build_locked(backend, corpus_path, out_dir, config, skip_bad_lines, from_index)
    return out_dir


def _build_locked(
    backend: str, corpus_path: Path, out_dir: Path, config, skip_bad_lines: bool = False, from_index=None
) -> None:
    if from_index is not None and not backend.startswith("faiss"):
        raise ValueError(f"from_index (--from-index) converts FAISS indexes; backend {backend} builds from the corpus")
    if not corpus_path.is_file():
        raise FileNotFoundError(f"corpus not found at {corpus_path}; pass a Search-R1-format jsonl")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        fingerprint = corpus_fingerprint(corpus_path)  # taken first: an edit during the build shows at load
        started = time.perf_counter()
        stream = CorpusStream(corpus_path, tmp if backend != "pyserini" else None,
                              skip_bad_lines=skip_bad_lines, desc=f"{backend} index of")
        params = _build_files(backend, stream, tmp, config, from_index, partial_dir(out_dir))
        # tantivy keeps its segments in a subfolder; its hidden lock files are not part of the index
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file() and p.name[0] != ".")
        meta = {
            "format_version": FORMAT_VERSION,
            "backend": backend,
            "corpus": {
                "path": str(corpus_path), "n_docs": stream.n_docs, "skipped_lines": stream.skipped, **fingerprint
            },
            "params": params,
            "files": {name: (tmp / name).stat().st_size for name in files},
            "build_seconds": round(time.perf_counter() - started, 3),
            "mem1_gym_version": _version(),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        write_manifest(tmp, [*files, META_FILE])
        replace_dir(tmp, out_dir)
        shutil.rmtree(partial_dir(out_dir), ignore_errors=True)  # a dense build's shards: done with
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only left when the build failed


def _build_files(backend: str, stream: CorpusStream, out_dir: Path, config, from_index=None, work_dir=None) -> dict:
    """Write the backend's files into ``out_dir`` from one pass of ``stream`` (which also writes the
    docstore, except for pyserini: Lucene stores each passage); return the build parameters.
    A dense build keeps its encoded shards in ``work_dir``, which outlives a crash."""
    module = _module(backend)
    if backend == "pyserini":
        return module.build_lucene_index(stream.path, out_dir, config, passages=stream)[1]
    if backend == "tantivy":
        return module.build_tantivy_index((contents for _, contents in stream), out_dir, config)
    if backend.startswith("faiss"):
        source = from_index if from_index is not None else _sibling_index(backend, stream.path, config)
        spec = {"corpus": corpus_fingerprint(stream.path)}
        return build_dense_index(stream, out_dir, config, work_dir, source, spec)
    module.check_fits_in_memory(stream.path)  # bm25s holds its whole index in RAM: refuse before swapping
    return module.build_bm25_index(stream, out_dir, config)


def _sibling_index(backend: str, corpus_path: Path, config) -> Path | None:
    """The index file of a cached flat or HNSW index of this corpus built with the same encoder
    settings: its exact vectors are reused instead of encoding again.

    Encoding is nearly all of a dense build (MiniLM: ~40 passages/s on 2 cores, so 40 minutes per
    100k passages).
    """
    from mem1_gym.retrieval.dense import EMBEDDING_PARAMS, INDEX_FILE

    for other in ("faiss-flat", "faiss-hnsw"):  # the types that store vectors exactly
        sibling = default_index_dir(corpus_path, other)
        try:
            params = read_meta(sibling, other, corpus_path)["params"]
        except (RetrievalError, OSError, KeyError, ValueError):
            continue  # absent or stale
        if other != backend and all(params.get(name) == getattr(config, name) for name in EMBEDDING_PARAMS):
            return sibling / INDEX_FILE
    return None


def _backend_config(backend: str, options: dict):
    """The backend's config dataclass from keyword options, unknown names listed with the valid ones."""
    _check_backend(backend)
    config_cls = getattr(_module(backend), _IMPLEMENTATIONS[backend][1])
    options = {**options, **_PRESETS.get(backend, {})}
    names = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(
            f"backend {backend} has no option(s) {', '.join(unknown)}; its options: {', '.join(names)}"
        )
    return config_cls(**options)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mem1-gym")
    except PackageNotFoundError:  # a source checkout that was never pip-installed
        return "unknown"


def _is_absent(index_dir: Path) -> bool:
    return not index_dir.exists() or (index_dir.is_dir() and not any(index_dir.iterdir()))


def _inspect(index_dir: Path, backend: str) -> tuple[dict | None, str | None]:
    """(``meta.json`` or None when unreadable, what is damaged or None): meta.json's fields, the
    files' sizes it lists, then the manifest's hashes (written here for an index built before them)."""
    try:
        meta = json.loads((index_dir / META_FILE).read_text())
    except FileNotFoundError:
        return None, f"no {META_FILE}"
    except (OSError, ValueError) as err:
        return None, f"unreadable {META_FILE}: {err}"
    if not (
        isinstance(meta, dict)
        and _META_KEYS <= meta.keys()
        and isinstance(meta["corpus"], dict)
        and _CORPUS_KEYS <= meta["corpus"].keys()
        and isinstance(meta["files"], dict)
    ):
        return None, f"{META_FILE} lacks some of {sorted(_META_KEYS)} or corpus {sorted(_CORPUS_KEYS)}"
    if meta["format_version"] != FORMAT_VERSION:
        return meta, f"format version {meta['format_version']}, this mem1-gym reads {FORMAT_VERSION}"
    if meta["backend"] != backend:
        return meta, None  # not damage: read_meta names the backend it is
    for name, size in meta["files"].items():
        path = index_dir / name
        if not path.is_file() or path.stat().st_size != size:
            return meta, f"{name} is missing or truncated"
    if not (index_dir / MANIFEST_FILE).exists():
        # Built before manifests: the sizes matched, so record what is there now. A read-only
        # index (a shared mount) keeps only the size checks.
        with contextlib.suppress(OSError):
            write_manifest(index_dir, [*meta["files"], META_FILE])
        return meta, None
    return meta, find_problem(index_dir)


def read_meta(index_dir: str | Path, backend: str, corpus_path: str | Path | None = None) -> dict:
    """``meta.json`` of ``index_dir``, checked against the backend and (sizes, hashes) the files on disk."""
    index_dir = Path(index_dir)
    meta, damage = _inspect(index_dir, backend)
    if damage is not None:
        corpus = corpus_path or (meta["corpus"]["path"] if meta else None)
        raise RetrievalError(
            f"the {backend} index at {index_dir} is missing or damaged ({damage}); rebuild it with "
            f"`{rebuild_command(backend, corpus, index_dir)}`"
        )
    if meta["backend"] != backend:
        raise RetrievalError(
            f"the index at {index_dir} is a {meta['backend']} index, not {backend}; "
            f"ask for backend {meta['backend']!r} or pass another index_dir"
        )
    return meta


def load_retriever(backend: str, index_dir: str | Path, corpus_path: str | Path | None = None, **options) -> Retriever:
    """Open a built index. ``corpus_path`` defaults to the one in ``meta.json``; ``options`` may
    change search-time settings (``ef_search``, ``threads``, ...), not what the index was built with.

    Also opens indexes built elsewhere: a FAISS file (Search-R1's ``e5_Flat.index``; needs
    ``corpus_path`` and ``encoder=``) or a Lucene directory without ``meta.json``.
    """
    _backend_config(backend, options)  # unknown or invalid options fail here, with the valid ones listed
    index_dir = Path(index_dir)
    foreign = _open_foreign(backend, index_dir, corpus_path, options)
    if foreign is not None:
        return foreign
    meta = read_meta(index_dir, backend, corpus_path)
    corpus_path = Path(corpus_path or meta["corpus"]["path"])
    command = rebuild_command(backend, corpus_path, index_dir)
    module = _module(backend)
    built_with = {**meta["params"], **_PRESETS.get(backend, {})}
    changed = {k: v for k, v in options.items() if k in module.BUILD_PARAMS and v != built_with.get(k)}
    if changed:
        was = ", ".join(f"{k}={built_with.get(k)!r}" for k in changed)
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in changed.items())
        raise RetrievalError(
            f"the index at {index_dir} was built with {was}; drop those options, or rebuild with them: "
            f"`{command} {flags}`"
        )
    corpus = _checked_corpus(meta, corpus_path, index_dir, command, needed=backend != "pyserini")
    search_options = {k: v for k, v in options.items() if k not in module.BUILD_PARAMS}
    try:
        if backend == "bm25s":
            return module.BM25Retriever.load(index_dir, corpus, **search_options)
        if backend == "tantivy":
            return module.TantivyRetriever.load(index_dir, corpus, **search_options)
        if backend == "pyserini":
            return module.LuceneRetriever.load(index_dir, corpus, **search_options)
        return module.DenseRetriever.load(index_dir, corpus, **search_options)
    # Damaged files of the right size get past read_meta; the backends report them as these types
    # (faiss and pyserini as RuntimeError/RetrievalError, numpy as ValueError/EOFError).
    except (OSError, ValueError, EOFError, KeyError, RuntimeError) as err:
        raise RetrievalError(
            f"cannot open the {backend} index at {index_dir}: {err}. If it is damaged, rebuild it with `{command}`"
        ) from err


def _checked_corpus(
    meta: dict, corpus_path: Path, index_dir: Path, command: str, needed: bool
) -> DocStore | None:
    """The passages by row, proven to be the corpus indexed: the index's memory-mapped docstore (or,
    for an index built before docstores, the corpus's own); a Lucene index (raw stored) needs none."""
    if not corpus_path.is_file():
        if not needed:
            return None
        raise RetrievalError(
            f"the corpus of the index at {index_dir} is not at {corpus_path}; pass corpus_path= where it is now"
        )
    recorded = meta["corpus"]
    if corpus_fingerprint(corpus_path) != {"size": recorded["size"], "sample_sha1": recorded["sample_sha1"]}:
        raise RetrievalError(
            f"the corpus {corpus_path} changed since the index at {index_dir} was built "
            f"(it had {recorded['size']} bytes, now {corpus_path.stat().st_size}); rebuild it with `{command}`"
        )
    if not needed:
        return None
    corpus = open_docstore(corpus_path, index_dir)  # an index built before docstores gets the corpus's own
    if len(corpus) != recorded["n_docs"]:
        raise RetrievalError(
            f"the corpus {corpus_path} has {len(corpus)} passages but the index at {index_dir} has "
            f"{recorded['n_docs']}; rebuild it with `{command}`"
        )
    return corpus


def _open_foreign(backend: str, index_dir: Path, corpus_path, options: dict) -> Retriever | None:
    """Indexes without our ``meta.json``: a FAISS file, or a Lucene directory (Search-R1 downloads)."""
    if backend.startswith("faiss") and index_dir.is_file():
        if corpus_path is None:
            raise ValueError(f"a FAISS index file ({index_dir}) needs corpus_path= the corpus it was built from")
        config = _backend_config(backend, options)
        return _module(backend).DenseRetriever.from_index_file(index_dir, open_docstore(corpus_path), config)
    if backend == "pyserini" and not (index_dir / META_FILE).exists() and any(index_dir.glob("segments_*")):
        corpus = open_docstore(corpus_path) if corpus_path is not None else None
        return _module(backend).LuceneRetriever(index_dir, corpus, _backend_config(backend, options))
    return None


def make_retriever(
    spec: str | Retriever = "bm25s",
    *,
    corpus_path: str | Path | None = None,
    index_dir: str | Path | None = None,
    build: bool = True,
    timeout: float = 10.0,
    **options,
) -> Retriever:
    """The retriever ``spec`` names: a backend in :data:`BACKENDS`, "auto" (:func:`choose_backend`),
    an ``http://`` URL of a ``/retrieve`` server, or a :class:`Retriever` (returned as is).

    For a backend the index lives in ``index_dir`` (default: :func:`default_index_dir` of
    ``corpus_path``); when it is absent and ``build`` is true it is built and cached first. A
    cached index (no ``index_dir`` given) that fails its checks is rebuilt with a warning.
    ``timeout`` (seconds) applies to URLs; ``options`` go to the backend config or the HTTP client.
    """
    if isinstance(spec, Retriever):
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"retriever spec must be a backend name, an http:// URL or a Retriever, got {type(spec).__name__}"
        )
    if spec.startswith(("http://", "https://")):
        from mem1_gym.retrieval.http import HttpRetriever

        return HttpRetriever(spec, timeout=timeout, **options)
    backend = _check_backend(choose_backend(corpus_path) if spec == "auto" else spec)
    config = _backend_config(backend, options)  # bad options fail before anything is built
    in_cache = index_dir is None  # the library's own cache is repaired; a caller's index_dir only reported
    if index_dir is None:
        if corpus_path is None:
            raise ValueError(f"make_retriever({backend!r}) needs corpus_path= (a Search-R1 jsonl) or index_dir=")
        index_dir = default_index_dir(corpus_path, backend)
    index_dir = Path(index_dir)
    absent = _is_absent(index_dir)
    if absent and (not build or corpus_path is None):
        why = "build=False" if corpus_path is not None else "no corpus_path to build it from"
        raise RetrievalError(
            f"no {backend} index at {index_dir} ({why}); build it with `{rebuild_command(backend, corpus_path, index_dir)}`"
        )
    if absent or (in_cache and build):
        _build_unless_sound(backend, Path(corpus_path).resolve(), index_dir, config)
    return load_retriever(backend, index_dir, corpus_path, **options)


def _build_unless_sound(backend: str, corpus_path: Path, index_dir: Path, config) -> None:
    """Build ``index_dir`` unless it holds a sound index of ``corpus_path``; a damaged one is rebuilt
    with a warning that names it and what was wrong."""
    if not _is_absent(index_dir) and _damage(backend, corpus_path, index_dir) is None:
        return
    with build_lock(index_dir):
        damage = _damage(backend, corpus_path, index_dir)  # another process may have built it while we waited
        if damage is None:
            return
        if not _is_absent(index_dir):
            warnings.warn(
                f"the {backend} index at {index_dir} is damaged ({damage}); rebuilding it", RuntimeWarning, stacklevel=4
            )
        _build_locked(backend, corpus_path, index_dir, config)


def _damage(backend: str, corpus_path: Path, index_dir: Path) -> str | None:
    meta, damage = _inspect(index_dir, backend)
    if damage is None and corpus_fingerprint(corpus_path) != {k: meta["corpus"][k] for k in ("size", "sample_sha1")}:
        return f"its corpus {corpus_path} changed since it was built"
    return damage
