"""Optional dependencies: one check that names the pip extra to install.

The core install (``pip install mem1-gym``) runs MEM1-MultiHopQA, MEM1-WebQA and MEM1-WebShop-Text.
Everything else needs an extra; a command or env that lacks one fails at its start with the
install line instead of a bare ``ModuleNotFoundError`` deep in a server thread or at the first
``reset`` (issue 24: ``gym.make("MEM1-WebShop").reset()`` ended in ``No module named 'werkzeug'``).

>>> require("agent", "json", purpose="this doctest")  # a present module: nothing happens
>>> require("web", "no_such_module_x", purpose="MEM1-WebShop")
Traceback (most recent call last):
...
mem1_gym.extras.MissingExtraError: MEM1-WebShop needs no_such_module_x, which is not installed: pip install "mem1-gym[web]"
"""

from __future__ import annotations

import importlib

EXTRAS = ("data", "dense", "web", "pyserini", "agent", "sb3")
"""The extras of pyproject.toml that a feature can require (``dev`` and ``test`` are for contributors)."""


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is missing; the message names the extra that brings it."""


def install_line(extra: str) -> str:
    """The command that installs ``extra``."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; pyproject.toml defines {', '.join(EXTRAS)}")
    return f'pip install "mem1-gym[{extra}]"'


def require(extra: str, *modules: str, purpose: str) -> None:
    """Import each of ``modules``; the first missing one raises :class:`MissingExtraError` naming ``extra``."""
    line = install_line(extra)
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise MissingExtraError(f"{purpose} needs {module}, which is not installed: {line}",
                                    name=module) from err
