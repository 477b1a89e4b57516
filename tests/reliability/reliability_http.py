"""Raw HTTP and server processes for the reliability tests (a uniquely named module, not a conftest).

``requests`` computes ``Content-Length`` itself and cannot send ``Content-Length: abc``. Every hostile
request therefore goes out over a plain socket, on a connection of its own, and its answer is read with
``http.client``: the test sees plainly whether the server answered, dropped the connection or stalled.
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit

import requests

CLIENT_TIMEOUT = 5.0
"""Seconds a server may take to answer one request: a stall fails the test instead of hanging it."""
# What a server must never show a client: a traceback, an internal exception's "Name: message", or
# a path into the code. FastAPI's "JSON decode error" and OpenAI's "invalid_request_error" do not match.
LEAK = re.compile(r'Traceback|File "|\b[A-Z]\w*(?:Error|Exception): |site-packages|mem1_gym/|mem1_agent/|\.py\b')


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def exchange(url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
             timeout: float = CLIENT_TIMEOUT) -> Answer:
    """Send one request over a fresh connection and read the whole answer.

    ``path`` goes out as given (percent-encode it); ``headers`` override the defaults (Host,
    Content-Type, Content-Length, Connection: close). A server that drops the connection without an
    answer, or does not answer within ``timeout``, fails the test.
    """
    parts = urlsplit(url)
    fields = {"Host": parts.netloc, "Content-Type": "application/json", "Content-Length": str(len(body)),
              "Connection": "close", **(headers or {})}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        try:
            sock.sendall(head.encode("ascii") + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a server may answer and close before it read a body it refuses: read what it said
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
            return Answer(response.status, response.read())
        except TimeoutError:
            raise AssertionError(f"no answer to {method} {path[:80]} within {timeout:g} s") from None
        except (http.client.HTTPException, ConnectionError) as err:
            raise AssertionError(f"the server dropped {method} {path[:80]} without an answer ({err!r})") from None


def assert_refused(answer: Answer, *statuses: int) -> None:
    """A 4xx (one of ``statuses`` when given) whose body gives nothing of the server's insides away."""
    wanted = statuses or range(400, 500)
    expected = "/".join(map(str, statuses)) or "4xx"
    assert answer.status in wanted, f"HTTP {answer.status}, expected {expected}: {answer.text[:300]!r}"
    leaked = LEAK.search(answer.text)
    assert leaked is None, f"the answer shows {leaked.group()!r}: {answer.text[:300]!r}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server started in a child process; :meth:`wait_healthy` waits for it, :meth:`kill` (idempotent)
    ends it. Its stderr goes to a file, not a pipe: a server that logs more than a pipe holds would block."""

    def __init__(self, argv: list[str], url: str, health_path: str):
        self.argv = argv
        self.url = url
        self.health_url = url + health_path
        self._log: IO[str] = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self._log, text=True)

    def wait_healthy(self, wait_s: float = 60.0) -> None:
        """Return once the health URL answers 200; kill the server if it exits first or never does."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if requests.get(self.health_url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.argv[1:4]} did not answer {self.health_url} within {wait_s:g} s "
                           f"(exit code {self.proc.returncode}): {self.log()[-2000:]}")

    def log(self) -> str:
        """What the server wrote to stderr so far."""
        self._log.seek(0)
        return self._log.read()

    def kill(self) -> None:
        """SIGKILL, and reap the process."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def serve_retriever(corpus: str, port: int) -> ServerProcess:
    """``mem1-gym serve-retriever`` on ``port`` over the BM25 index of ``corpus``, as users run it,
    once it answers."""
    argv = [sys.executable, "-m", "mem1_gym", "serve-retriever", "--backend", "bm25s", "--corpus", corpus,
            "--port", str(port)]
    server = ServerProcess(argv, f"http://127.0.0.1:{port}", "/health")
    server.wait_healthy()
    return server
