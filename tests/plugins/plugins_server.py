"""Starting a real ``mem1_agent.serve`` process for the tests (not a test module)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``python -m mem1_agent.serve`` on a free loopback port (``env``: its environment); returns once
    /v1/models answers."""
    import requests

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mem1_agent.serve", "--model", str(model), "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stdout.read()}")
        try:
            if requests.get(f"{url}/models", timeout=1).status_code in (200, 401):
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not answer within 60 s")
