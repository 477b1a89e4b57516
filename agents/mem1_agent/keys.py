"""API keys come from environment variables, never from the command line (issue 21, item 8).

A flag's value shows in ``ps`` to every user of the machine and lands in shell history; an
environment variable does neither. Every ``mem1-agent`` command that needs a key takes
``--api-key-env NAME`` (the variable to read) and refuses ``--api-key VALUE`` with this advice.
"""

from __future__ import annotations

import argparse
import os

OPENAI_KEY_ENV = "OPENAI_API_KEY"
"""Where OpenAI-compatible clients look for their key by default (as the openai package does)."""


def add_key_arguments(parser: argparse.ArgumentParser, default_env: str, purpose: str) -> None:
    """``--api-key-env NAME`` (default ``default_env``) and a hidden ``--api-key`` that :func:`api_key` refuses."""
    parser.add_argument("--api-key-env", default=None, metavar="NAME",
                        help=f"environment variable holding the API key {purpose} (default {default_env}; unset: "
                             f"no key). Keys are never taken on the command line, where ps shows them to every user")
    parser.add_argument("--api-key", default=None, help=argparse.SUPPRESS)


def api_key(args: argparse.Namespace, default_env: str) -> str | None:
    """The key in the variable ``--api-key-env`` names (else ``default_env``); None when it is unset.

    ``--api-key VALUE`` is an error that says where to put the key instead; a variable named
    explicitly with ``--api-key-env`` must be set.
    """
    name = args.api_key_env or default_env
    if args.api_key is not None:
        raise ValueError(f"--api-key is not taken: a command line shows in ps to every user of the machine; "
                         f"put the key in ${name} instead (export {name}=...)")
    key = os.environ.get(name)
    if args.api_key_env and not key:
        raise ValueError(
            f"--api-key-env {name}: ${name} is not set; export it with the key, or drop the flag to go without one"
        )
    return key or None
