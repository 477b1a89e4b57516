"""``mem1-gym serve-shop``: the WebShop site for people, on 127.0.0.1 by default.

Examples::

    mem1-gym serve-shop                                   # generated shop, http://127.0.0.1:3000
    mem1-gym serve-shop --split train --attrs --port 8080
    mem1-gym serve-shop --products items_shuffle_1000.json --attributes items_ins_v2_1000.json \\
        --human-goals items_human_ins.json

Open the printed URL: every visit to ``/`` starts a session with a goal of the split;
``/fixed_<n>`` always shows goal n (as in the original). At most ``--max-sessions`` sessions are
kept (the least recently used goes first) and one unused for ``--session-ttl`` seconds expires;
their URLs then show an "expired" page.
"""

from __future__ import annotations

import argparse
import sys


def add_commands(subparsers) -> None:
    """Register ``serve-shop`` on an argparse ``add_subparsers()`` object."""
    from mem1_gym.webshop.site import SiteLimits

    p = subparsers.add_parser("serve-shop", help="serve the WebShop site for people to try (127.0.0.1 by default)")
    p.add_argument("--host", default="127.0.0.1", help="bind address; 0.0.0.0 exposes the shop to the network")
    p.add_argument("--port", type=int, default=3000, help="port; a port in use falls back to a free one (default %(default)s)")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"), help="goals shown to visitors")
    p.add_argument("--attrs", action="store_true", help="show the Attributes sub-page (the hidden attributes)")
    p.add_argument("--products", default=None, help="WebShop items_shuffle*.json (default: the generated shop)")
    p.add_argument("--attributes", default=None, help="WebShop items_ins_v2*.json")
    p.add_argument("--human-goals", default=None, help="WebShop items_human_ins.json")
    p.add_argument("--search-backend", default="bm25s", choices=("bm25s", "pyserini"))
    p.add_argument("--max-sessions", type=int, default=SiteLimits.max_sessions,
                   help="sessions kept; one more drops the least recently used (default %(default)s)")
    p.add_argument("--session-ttl", type=float, default=SiteLimits.session_ttl_s,
                   help="seconds after which an unused session expires; 0: never (default %(default)s: a day)")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=serve_shop)


def serve_shop(args: argparse.Namespace) -> int:
    from mem1_gym.webshop.server import ShopServer
    from mem1_gym.webshop.shop import ShopConfig, get_shop
    from mem1_gym.webshop.site import Site, SiteLimits

    config = ShopConfig(
        products_path=args.products, attributes_path=args.attributes, human_goals_path=args.human_goals,
        search_backend=args.search_backend, show_attributes=args.attrs,
    )
    limits = SiteLimits(max_sessions=args.max_sessions, session_ttl_s=args.session_ttl or None)
    shop = get_shop(config)
    server = ShopServer(Site(shop, human_split=args.split, limits=limits), args.host, args.port, quiet=not args.verbose)
    if server.moved_from is not None:
        print(f"port {server.moved_from[0]} is in use ({server.moved_from[1]}); using {server.port}", file=sys.stderr)

    def ready(url: str) -> None:
        print(f"WebShop: {len(shop.catalog)} products, {len(shop.goals[args.split])} {args.split} goals")
        print(f"open {url}/  (a new session per visit; {url}/fixed_0 is goal 0). Ctrl-C stops.", flush=True)

    server.serve_until_interrupted(ready)
    return 0
