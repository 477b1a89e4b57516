"""``mem1-gym serve-env``: registered env ids over HTTP for ``gym.make("MEM1-Remote", ...)``.

Examples::

    mem1-gym serve-env --env MEM1-WebShop --port 8040 --max-sessions 64
    mem1-gym serve-env --env MEM1-MultiHopQA-2 --env MEM1-WebShop-Text --host 0.0.0.0   # MEM1_GYM_ENV_TOKEN exported
    mem1-gym serve-env --env MEM1-MultiHopQA-4 --env-kwargs '{"retriever": "http://127.0.0.1:8013/retrieve"}'
"""

from __future__ import annotations

import argparse
import json
import sys

_LIMITS = (  # (flag, EnvServerConfig field, type, help)
    ("--max-sessions", "max_sessions", int, "sessions open at once; one more gets HTTP 429"),
    ("--idle-timeout", "idle_timeout_s", float, "seconds after which an unused session is closed"),
    ("--max-body-bytes", "max_body_bytes", int, "largest request body, in bytes (413 over it)"),
    ("--max-action-chars", "max_action_chars", int, "longest action, in characters (413 over it)"),
)


def add_commands(subparsers) -> None:
    """Register ``serve-env`` on an argparse ``add_subparsers()`` object."""
    from mem1_gym.remote.wire import TOKEN_ENV

    p = subparsers.add_parser("serve-env", help="serve env ids over HTTP for gym.make('MEM1-Remote', ...)")
    p.add_argument("--env", action="append", required=True, metavar="ENV_ID",
                   help="a registered id to serve (repeat for more)")
    p.add_argument("--env-kwargs", type=json.loads, default={}, metavar="JSON",
                   help="gym.make kwargs of every session, e.g. paths and retrievers (clients may set only a few)")
    p.add_argument("--host", default="127.0.0.1", help="bind address; 0.0.0.0 exposes it: set a token (%(default)s)")
    p.add_argument("--port", type=int, default=8040, help="port; 0 takes a free one (default %(default)s)")
    p.add_argument("--token-env", default=TOKEN_ENV, metavar="NAME",
                   help="environment variable with the bearer token clients must send; unset: no auth (%(default)s)")
    group = p.add_argument_group("limits (a request over one gets an HTTP 4xx that says which)")
    for flag, name, kind, help_text in _LIMITS:
        group.add_argument(flag, dest=name, type=kind, default=None, metavar="N",
                           help=f"{help_text} (default: {_default(name)})")
    p.set_defaults(func=serve_env)


def _default(name: str):
    from dataclasses import fields

    from mem1_gym.remote.server import EnvServerConfig

    return next(f.default for f in fields(EnvServerConfig) if f.name == name)


def serve_env(args: argparse.Namespace) -> int:
    from mem1_gym.remote.server import EnvServerConfig, serve

    limits = {name: getattr(args, name) for _, name, _, _ in _LIMITS if getattr(args, name) is not None}
    if not isinstance(args.env_kwargs, dict):
        return _fail(f"--env-kwargs must be a JSON object, got {args.env_kwargs!r}")
    try:
        config = EnvServerConfig(env_ids=tuple(args.env), env_kwargs=args.env_kwargs, token_env=args.token_env,
                                 **limits)
    except ValueError as err:
        return _fail(str(err))
    auth = f"bearer token from ${config.token_env}" if config.token else f"no auth (${config.token_env} is unset)"

    def ready(url: str) -> None:  # once bound: with --port 0 this line says which port
        print(f"serving {', '.join(config.env_ids)} on {url} ({auth}, at most {config.max_sessions} sessions)",
              file=sys.stderr, flush=True)

    if not config.token and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: {args.host} without a token lets anyone who reaches it open sessions; set "
              f"${config.token_env}", file=sys.stderr)
    serve(config, args.host, args.port, on_ready=ready)
    return 0


def _fail(message: str) -> int:
    print(f"mem1-gym serve-env: error: {message}", file=sys.stderr)
    return 2
