"""``mem1-gym serve-miniweb``: run the mini-web alone, for many env processes or a browser.

Examples::

    mem1-gym serve-miniweb --port 8030                       # the synthetic world
    mem1-gym serve-miniweb --corpus wiki-18.jsonl --port 8030
    # then: gym.make("MEM1-WebQA-4", search_url="http://127.0.0.1:8030")
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mem1_gym.retrieval.base import RetrievalError
from mem1_gym.retrieval.build import BACKENDS
from mem1_gym.web.miniweb import MiniWebConfig


def add_commands(subparsers) -> None:
    """Register ``serve-miniweb`` on an argparse ``add_subparsers()`` object."""
    p = subparsers.add_parser("serve-miniweb", help="serve a corpus as a local web site with a Serper-style search API")
    p.add_argument("--corpus", type=Path, default=None, help="Search-R1-format jsonl (default: the synthetic world)")
    p.add_argument("--backend", choices=BACKENDS, default="bm25s", help="search backend (default: %(default)s)")
    p.add_argument("--index", type=Path, default=None, help="index directory (default: the cache, keyed by corpus)")
    p.add_argument("--host", default="127.0.0.1", help="bind address; 0.0.0.0 exposes it (no auth) (%(default)s)")
    p.add_argument("--port", type=int, default=8030, help="(default: %(default)s)")
    p.add_argument("--snippet-chars", type=int, default=240, help="longest snippet per result (%(default)s)")
    p.add_argument("--public-url", default=MiniWebConfig.public_url,
                   help="scheme and host of result links, never the request's Host header (%(default)s)")
    group = p.add_argument_group("request limits (a search over one gets HTTP 413 or 422 and the reason)")
    group.add_argument("--max-body-bytes", type=int, default=MiniWebConfig.max_body_bytes,
                       help="largest POST /search body (%(default)s)")
    group.add_argument("--max-query-chars", type=int, default=MiniWebConfig.max_query_chars,
                       help="longest query q, in characters (%(default)s)")
    group.add_argument("--max-results", type=int, default=MiniWebConfig.max_results,
                       help="largest num a search may ask for (%(default)s)")
    p.set_defaults(func=cmd_serve_miniweb)


def cmd_serve_miniweb(args: argparse.Namespace) -> int:
    from mem1_gym.web.server import serve

    try:
        config = MiniWebConfig(
            corpus_path=str(args.corpus) if args.corpus else None,
            backend=args.backend,
            index_dir=str(args.index) if args.index else None,
            snippet_chars=args.snippet_chars,
            public_url=args.public_url,
            max_body_bytes=args.max_body_bytes,
            max_query_chars=args.max_query_chars,
            max_results=args.max_results,
        )
        serve(config, host=args.host, port=args.port)
    except (RetrievalError, ValueError, FileNotFoundError, OSError) as err:
        print(f"mem1-gym: error: {err}", file=sys.stderr)
        return 2
    return 0
