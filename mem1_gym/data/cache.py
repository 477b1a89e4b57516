"""Where generated worlds and built indexes are cached."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV_VAR = "MEM1_GYM_CACHE"


def cache_dir() -> Path:
    """``$MEM1_GYM_CACHE``, else ``$XDG_CACHE_HOME/mem1-gym``, else ``~/.cache/mem1-gym``."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mem1-gym"
