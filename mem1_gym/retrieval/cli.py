"""``mem1-gym build-index`` and ``mem1-gym serve-retriever`` (also ``indexes/build.py``, ``indexes/serve.py``).

Examples::

    mem1-gym build-index --backend tantivy --corpus wiki-18.jsonl --out indexes/wiki18-bm25
    mem1-gym serve-retriever --index indexes/wiki18-bm25 --port 8013
    mem1-gym serve-retriever --backend faiss-flat --index e5_Flat.index --corpus wiki-18.jsonl \\
        --encoder intfloat/e5-base-v2
    mem1-gym build-index --backend faiss --index-type ivf-pq --from-index e5_Flat.index \\
        --corpus wiki-18.jsonl --encoder /models/e5-base-v2 --out indexes/wiki18-e5-pq
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mem1_gym.retrieval.base import RetrievalError
from mem1_gym.retrieval.build import BACKENDS, META_FILE, build_index, default_index_dir, load_retriever, make_retriever
from mem1_gym.retrieval.dense import INDEX_TYPES
from mem1_gym.retrieval.server import IndexSpec, ServerLimits, check_default_topk, serve, serve_workers

# (flag, type, help): backend options; only those given on the command line reach the backend,
# which rejects the ones it does not have (e.g. --encoder for bm25s) with the list of its options.
_BACKEND_OPTIONS = (
    ("--k1", float, "BM25 term-frequency saturation (bm25s, tantivy, pyserini; default 0.9)"),
    ("--b", float, "BM25 length normalisation (bm25s, tantivy, pyserini; default 0.4)"),
    ("--stemmer", str, 'bm25s stemming: "auto", "english" (needs PyStemmer) or "none"'),
    ("--n-threads", int, "bm25s search threads (0: the calling thread)"),
    ("--max-query-terms", int, "bm25s, tantivy, pyserini: distinct terms of a query that are scored (default 64)"),
    ("--threads", int, "pyserini, tantivy: indexing and search threads (default 2)"),
    ("--heap-mb", int, "tantivy: indexing memory budget in MiB, whatever the corpus size (default 256)"),
    ("--candidates", int, "tantivy: passages per query re-scored with Lucene's BM25 (default 30)"),
    ("--encoder", str, "faiss: HF encoder name or path (default: the bundled all-MiniLM-L6-v2)"),
    ("--max-length", int, "faiss: encoder max tokens (default 256)"),
    ("--batch-size", int, "faiss: encoder batch size (default 64)"),
    ("--hnsw-m", int, "faiss-hnsw: neighbours per node (default 32)"),
    ("--ef-construction", int, "faiss-hnsw: build search width (default 40)"),
    ("--ef-search", int, "faiss-hnsw: query search width (default 64)"),
    ("--nlist", int, "faiss ivf-*: inverted lists (default 4*sqrt(passages))"),
    ("--pq-m", int, "faiss ivf-pq: bytes per passage, divides the dimension (default dimension/3)"),
    ("--nprobe", int, "faiss ivf-*: lists searched per query (default: ivf-pq 64, ivf-sq4 half the lists)"),
    ("--max-train", int, "faiss ivf-pq, hnsw-sq8, ivf-sq4: most vectors sampled for training (default 500000)"),
    ("--shard-size", int, "faiss: passages per encoded shard, the unit a crashed build resumes from (default 65536)"),
    ("--query-prefix", str, 'faiss: text before each query (default "query: " for e5, else none)'),
    ("--passage-prefix", str, 'faiss: text before each passage (default "passage: " for e5, else none)'),
    ("--refine", bool, "faiss ivf-pq, ivf-sq4, hnsw-sq8: keep float16 vectors on disk (memory-mapped) and re-rank "
                       "each query's candidates exactly"),
    ("--refine-depth", int, "faiss with --refine: candidates per query re-ranked (default 100)"),
)


# (flag, help): the fields of ServerLimits (mem1_gym.retrieval.server), one flag each.
_LIMITS = (
    ("--max-body-bytes", "largest request body, in bytes"),
    ("--max-queries", "most queries in one request"),
    ("--max-query-chars", "longest query, in characters"),
    ("--max-topk", "largest topk a request may ask for"),
)


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backend options (only the ones given are passed on)")
    for flag, kind, help_text in _BACKEND_OPTIONS:
        if kind is bool:  # a switch: given means True, absent means the backend's default
            group.add_argument(flag, action="store_const", const=True, default=None, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=None, help=help_text)


def _backend_options(args: argparse.Namespace) -> dict:
    names = (_dest(flag) for flag, _, _ in _BACKEND_OPTIONS)
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def add_commands(subparsers) -> None:
    """Register ``build-index`` and ``serve-retriever`` on an argparse ``add_subparsers()`` object."""
    p = subparsers.add_parser("build-index", help="build (or rebuild) a retrieval index from a corpus jsonl")
    p.add_argument("--backend", required=True, choices=(*BACKENDS, "faiss"), help='"faiss" takes --index-type')
    p.add_argument("--index-type", choices=tuple(INDEX_TYPES), default=None,
                   help="with --backend faiss: flat (exact), hnsw, compressed: ivf-pq, hnsw-sq8, ivf-sq4; default flat")
    p.add_argument("--from-index", type=Path, default=None,
                   help="faiss: compress this flat index of the corpus (e5_Flat.index) instead of encoding it")
    p.add_argument("--corpus", required=True, type=Path, help="Search-R1-format jsonl(.gz): {id, contents} lines")
    p.add_argument("--out", type=Path, default=None, help="index directory (default: the cache, keyed by corpus)")
    p.add_argument("--skip-bad-lines", action="store_true",
                   help="skip (and count) corpus lines that are not {id, contents} objects instead of stopping")
    _add_backend_options(p)
    p.set_defaults(func=cmd_build_index)

    p = subparsers.add_parser("serve-retriever", help="serve an index over Search-R1's POST /retrieve format")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="needed unless --index has a meta.json")
    p.add_argument("--index", type=Path, default=None, help="index directory, a FAISS file, or a Lucene directory")
    p.add_argument("--corpus", type=Path, default=None, help="corpus jsonl (builds and caches the index if needed)")
    p.add_argument("--host", default="127.0.0.1", help="bind address; 0.0.0.0 exposes it (no auth) (%(default)s)")
    p.add_argument("--port", type=int, default=8013, help="(default: %(default)s)")
    p.add_argument("--topk", type=int, default=3, help="passages per query when a request omits topk (%(default)s)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes, each opening the index (memory-mapped indexes share pages) (%(default)s)")
    group = p.add_argument_group("request limits (a request over one gets HTTP 413 or 422 and the reason)")
    for flag, help_text in _LIMITS:
        default = getattr(ServerLimits(), _dest(flag))
        group.add_argument(flag, type=int, default=default, help=f"{help_text} (default: %(default)s)")
    _add_backend_options(p)
    p.set_defaults(func=cmd_serve_retriever)


def cmd_build_index(args: argparse.Namespace) -> int:
    try:
        backend = _index_backend(args.backend, args.index_type)
        out = build_index(backend, args.corpus, args.out, skip_bad_lines=args.skip_bad_lines,
                          from_index=args.from_index, **_backend_options(args))
    except (RetrievalError, ValueError, FileNotFoundError) as err:
        return _fail(err)
    meta = json.loads((out / META_FILE).read_text())
    skipped = meta["corpus"].get("skipped_lines", 0)
    note = f" ({skipped} bad lines skipped)" if skipped else ""
    print(f"built {backend} index of {meta['corpus']['n_docs']} passages{note} in {meta['build_seconds']:.1f} s: {out}")
    return 0


def cmd_serve_retriever(args: argparse.Namespace) -> int:
    options = _backend_options(args)
    try:
        limits = ServerLimits(**{_dest(flag): getattr(args, _dest(flag)) for flag, _ in _LIMITS})
        check_default_topk(args.topk, limits)  # before a long index load
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        if args.index is not None:
            backend = args.backend or _recorded_backend(args.index)
            retriever = load_retriever(backend, args.index, args.corpus, **options)
            where = args.index
        elif args.backend is not None and args.corpus is not None:
            backend = args.backend
            retriever = make_retriever(backend, corpus_path=args.corpus, **options)
            where = default_index_dir(args.corpus, backend)
        else:
            raise ValueError("give --index PATH, or --backend and --corpus (the index is then built and cached)")
    except (RetrievalError, ValueError, FileNotFoundError) as err:
        return _fail(err)

    def ready(url: str) -> None:  # once bound: with --port 0 this line says which port
        print(f"serving the {backend} index {where} on {url}/retrieve ({args.workers} worker(s))", file=sys.stderr,
              flush=True)

    with retriever:
        if args.workers == 1:
            serve(retriever, args.host, args.port, args.topk, limits, on_ready=ready)
            return 0
    # Opened above only to check (or build) it; each worker process opens its own.
    corpus = None if args.corpus is None else str(args.corpus)
    spec = IndexSpec(backend, str(where), corpus, options)
    serve_workers(spec, args.workers, args.host, args.port, args.topk, limits, on_ready=ready)
    return 0


def _index_backend(backend: str, index_type: str | None) -> str:
    """``--backend faiss --index-type T`` is the backend faiss-T; --index-type means nothing elsewhere."""
    if backend == "faiss":
        return f"faiss-{index_type or 'flat'}"
    if index_type is not None:
        raise ValueError(f"--index-type goes with --backend faiss, not {backend}")
    return backend


def _recorded_backend(index: Path) -> str:
    try:
        return json.loads((index / META_FILE).read_text())["backend"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{index} has no readable {META_FILE}; say which index it is with --backend") from err


def _fail(err: Exception) -> int:
    print(f"mem1-gym: error: {err}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run one of this module's commands, e.g. ``main(["build-index", "--backend", "bm25s", ...])``."""
    parser = argparse.ArgumentParser(prog="mem1-gym")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
