"""Build, cache, check and open indexes: the one entry point is :func:`make_retriever`.

An index is a directory holding the backend's files and a ``meta.json`` (backend, corpus path and
fingerprint, parameters, file sizes). It is built in a temporary sibling directory and renamed into
place, under a file lock, so a killed build leaves nothing half-written and parallel env workers
asking for the same index build it once. Opening checks ``meta.json`` against the files and the
corpus; any mismatch is a :class:`RetrievalError` with the exact command that rebuilds the index.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from mem1_gym.data.cache import cache_dir
from mem1_gym.retrieval.base import Corpus, RetrievalError, Retriever

BACKENDS = ("bm25s", "pyserini", "faiss-flat", "faiss-hnsw")
META_FILE = "meta.json"
FORMAT_VERSION = 1
_META_KEYS = {"format_version", "backend", "corpus", "params", "files"}
_CORPUS_KEYS = {"path", "n_docs", "size", "sample_sha1"}
# backend -> (module that implements it, its config class); and the options the name itself fixes
_IMPLEMENTATIONS = {
    "bm25s": ("bm25", "BM25Config"),
    "pyserini": ("lucene", "LuceneConfig"),
    "faiss-flat": ("dense", "DenseConfig"),
    "faiss-hnsw": ("dense", "DenseConfig"),
}
_PRESETS = {"faiss-flat": {"kind": "flat"}, "faiss-hnsw": {"kind": "hnsw"}}
_SAMPLE_BLOCKS, _BLOCK_BYTES = 16, 64 * 1024  # corpus fingerprint: 1 MiB read even for wiki-18's 14 GB


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        choices = ", ".join(BACKENDS)
        raise ValueError(f"unknown retrieval backend {backend!r}; choose one of {choices} or an http:// URL")
    return backend


def _module(backend: str):
    return importlib.import_module(f"mem1_gym.retrieval.{_IMPLEMENTATIONS[backend][0]}")


def corpus_fingerprint(corpus_path: str | Path) -> dict:
    """Size plus a hash of 16 evenly spaced 64 KiB blocks: cheap, and it survives copies and moves."""
    path = Path(corpus_path)
    size = path.stat().st_size
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for i in range(_SAMPLE_BLOCKS):
            f.seek(size * i // _SAMPLE_BLOCKS)
            digest.update(f.read(_BLOCK_BYTES))
    return {"size": size, "sample_sha1": digest.hexdigest()}


def default_index_dir(corpus_path: str | Path, backend: str) -> Path:
    """``cache_dir()/indexes/<corpus name>-<key>/<backend>``; the key changes when the corpus file does."""
    _check_backend(backend)
    path = Path(corpus_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"corpus not found at {path}; pass a Search-R1-format jsonl")
    stat = path.stat()
    key = hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name.removesuffix(".gz").removesuffix(".jsonl"))
    return cache_dir() / "indexes" / f"{name}-{key}" / backend


def rebuild_command(backend: str, corpus_path: str | Path | None, out_dir: str | Path) -> str:
    return f"mem1-gym build-index --backend {backend} --corpus {corpus_path or 'CORPUS.jsonl'} --out {out_dir}"


@contextlib.contextmanager
def _lock(out_dir: Path):
    """Exclusive lock on ``<parent>/.<name>.lock`` for the build of ``out_dir`` (POSIX ``flock``)."""
    import fcntl

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{out_dir.name}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file closes, also if we crash
        yield


def build_index(backend: str, corpus_path: str | Path, out_dir: str | Path | None = None, **options) -> Path:
    """Build (or rebuild) the ``backend`` index of ``corpus_path`` into ``out_dir`` and return it.

    ``out_dir`` defaults to :func:`default_index_dir`; ``options`` are the backend config's fields
    (``k1``, ``b``; ``encoder``, ``hnsw_m``, ...). An existing index there is replaced atomically.
    """
    config = _backend_config(backend, options)  # bad options fail before anything is written
    corpus_path = Path(corpus_path).resolve()
    out_dir = Path(out_dir) if out_dir is not None else default_index_dir(corpus_path, backend)
    with _lock(out_dir):
        _build_locked(backend, corpus_path, out_dir, config)
    return out_dir


def _build_locked(backend: str, corpus_path: Path, out_dir: Path, config) -> None:
    if not corpus_path.is_file():
        raise FileNotFoundError(f"corpus not found at {corpus_path}; pass a Search-R1-format jsonl")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        fingerprint = corpus_fingerprint(corpus_path)  # taken first: an edit during the build shows at load
        started = time.perf_counter()
        n_docs, params = _build_files(backend, corpus_path, tmp, config)
        meta = {
            "format_version": FORMAT_VERSION,
            "backend": backend,
            "corpus": {"path": str(corpus_path), "n_docs": n_docs, **fingerprint},
            "params": params,
            "files": {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()},
            "build_seconds": round(time.perf_counter() - started, 3),
            "mem1_gym_version": _version(),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if out_dir.exists():  # replace: move the old one aside first, rename cannot overwrite a directory
            old = out_dir.with_name(f".{out_dir.name}.old-{time.time_ns()}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only left when the build failed


def _build_files(backend: str, corpus_path: Path, out_dir: Path, config) -> tuple[int, dict]:
    module = _module(backend)
    if backend == "pyserini":
        return module.build_lucene_index(corpus_path, out_dir, config)
    corpus = Corpus.load(corpus_path)
    if backend == "bm25s":
        return len(corpus), module.BM25Retriever.from_corpus(corpus, config).save(out_dir)
    vectors = _sibling_vectors(backend, corpus_path, config)
    return len(corpus), module.DenseRetriever.from_corpus(corpus, config, vectors).save(out_dir)


def _sibling_vectors(backend: str, corpus_path: Path, config):
    """Embeddings from the other FAISS index of this corpus when it used the same encoder settings.

    Encoding is nearly all of a dense build (MiniLM: ~40 passages/s on 2 cores, so 40 minutes per
    100k passages), and flat and HNSW indexes hold the same vectors.
    """
    from mem1_gym.retrieval.dense import EMBEDDING_PARAMS, stored_vectors

    other = "faiss-hnsw" if backend == "faiss-flat" else "faiss-flat"
    sibling = default_index_dir(corpus_path, other)
    try:
        params = read_meta(sibling, other, corpus_path)["params"]
    except (RetrievalError, OSError, KeyError, ValueError):
        return None  # absent or stale: encode from scratch
    if any(params.get(name) != getattr(config, name) for name in EMBEDDING_PARAMS):
        return None
    return stored_vectors(sibling)


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


def read_meta(index_dir: str | Path, backend: str, corpus_path: str | Path | None = None) -> dict:
    """``meta.json`` of ``index_dir``, checked against the backend and the files on disk."""
    index_dir = Path(index_dir)

    def damaged(why: str, corpus=corpus_path) -> RetrievalError:
        return RetrievalError(
            f"the {backend} index at {index_dir} is missing or damaged ({why}); rebuild it with "
            f"`{rebuild_command(backend, corpus, index_dir)}`"
        )

    try:
        meta = json.loads((index_dir / META_FILE).read_text())
    except FileNotFoundError as err:
        raise damaged(f"no {META_FILE}") from err
    except (OSError, ValueError) as err:
        raise damaged(f"unreadable {META_FILE}: {err}") from err
    if not (
        isinstance(meta, dict)
        and _META_KEYS <= meta.keys()
        and isinstance(meta["corpus"], dict)
        and _CORPUS_KEYS <= meta["corpus"].keys()
        and isinstance(meta["files"], dict)
    ):
        raise damaged(f"{META_FILE} lacks some of {sorted(_META_KEYS)} or corpus {sorted(_CORPUS_KEYS)}")
    corpus_path = corpus_path or meta["corpus"]["path"]
    if meta["format_version"] != FORMAT_VERSION:
        raise damaged(f"format version {meta['format_version']}, this mem1-gym reads {FORMAT_VERSION}", corpus_path)
    if meta["backend"] != backend:
        raise RetrievalError(
            f"the index at {index_dir} is a {meta['backend']} index, not {backend}; "
            f"ask for backend {meta['backend']!r} or pass another index_dir"
        )
    for name, size in meta["files"].items():
        path = index_dir / name
        if not path.is_file() or path.stat().st_size != size:
            raise damaged(f"{name} is missing or truncated", corpus_path)
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
        if backend == "pyserini":
            return module.LuceneRetriever.load(index_dir, corpus, **search_options)
        return module.DenseRetriever.load(index_dir, corpus, **search_options)
    # Damaged files of the right size get past read_meta; the backends report them as these types
    # (faiss and pyserini as RuntimeError/RetrievalError, numpy as ValueError/EOFError).
    except (OSError, ValueError, EOFError, KeyError, RuntimeError) as err:
        raise RetrievalError(
            f"cannot open the {backend} index at {index_dir}: {err}. If it is damaged, rebuild it with `{command}`"
        ) from err


def _checked_corpus(meta: dict, corpus_path: Path, index_dir: Path, command: str, needed: bool) -> Corpus | None:
    """Load the corpus and prove it is the one indexed; a Lucene index (raw stored) can do without it."""
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
    corpus = Corpus.load(corpus_path)
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
        return _module(backend).DenseRetriever.from_index_file(index_dir, Corpus.load(corpus_path), config)
    if backend == "pyserini" and not (index_dir / META_FILE).exists() and any(index_dir.glob("segments_*")):
        corpus = Corpus.load(corpus_path) if corpus_path is not None else None
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
    """The retriever ``spec`` names: a backend in :data:`BACKENDS`, an ``http://`` URL of a
    ``/retrieve`` server, or a :class:`Retriever` (returned as is).

    For a backend the index lives in ``index_dir`` (default: :func:`default_index_dir` of
    ``corpus_path``); when it is absent and ``build`` is true it is built and cached first.
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
    backend = _check_backend(spec)
    config = _backend_config(backend, options)  # bad options fail before anything is built
    if index_dir is None:
        if corpus_path is None:
            raise ValueError(f"make_retriever({backend!r}) needs corpus_path= (a Search-R1 jsonl) or index_dir=")
        index_dir = default_index_dir(corpus_path, backend)
    index_dir = Path(index_dir)
    if _is_absent(index_dir):
        if not build or corpus_path is None:
            why = "build=False" if corpus_path is not None else "no corpus_path to build it from"
            raise RetrievalError(
                f"no {backend} index at {index_dir} ({why}); build it with "
                f"`{rebuild_command(backend, corpus_path, index_dir)}`"
            )
        with _lock(index_dir):
            if _is_absent(index_dir):  # another process may have built it while we waited
                _build_locked(backend, Path(corpus_path).resolve(), index_dir, config)
    return load_retriever(backend, index_dir, corpus_path, **options)
