"""A loopback HTTP server that misbehaves at the socket level, for the clients' failure tests (issue 21).

It sends raw bytes exactly as given (status line, headers, body), so answers that ``http.server``
never produces reach the client as they are: a chunked body cut short, a bad chunk size, a gzip
header on bytes that are not gzip, JSON 100k levels deep, a body past the clients' size cap.
Every connection gets one answer, then is closed. A uniquely named module (tests/ is on sys.path
through the root conftest), shared by the web, retrieval and agent tests. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import threading

OVERSIZE = (32 << 20) + (1 << 20)  # just past the clients' default max_body_bytes (32 MiB)


def answer(body: bytes, status: str = "200 OK", **headers: str) -> bytes:
    """A well-formed answer with a Content-Length (headers as keyword arguments, ``_`` for ``-``)."""
    fields = {"Content-Length": str(len(body)), **{k.replace("_", "-"): v for k, v in headers.items()}}
    return _head(status, fields) + body


def truncated_chunked(prefix: bytes, kind: str = "application/json") -> bytes:
    """A chunk announced 1000 bytes longer than what arrives before the connection closes."""
    head = _head("200 OK", {"Content-Type": kind, "Transfer-Encoding": "chunked"})
    return head + b"%x\r\n" % (len(prefix) + 1000) + prefix


def bad_chunk_size(kind: str = "application/json") -> bytes:
    """A chunked body whose first chunk size is not hexadecimal."""
    return _head("200 OK", {"Content-Type": kind, "Transfer-Encoding": "chunked"}) + b"zz\r\n{}\r\n0\r\n\r\n"


def bad_gzip(kind: str = "application/json") -> bytes:
    """``Content-Encoding: gzip`` on bytes that are not gzip."""
    return answer(b"this is not gzip, whatever the header says", Content_Type=kind, Content_Encoding="gzip")


def deep_json() -> bytes:
    """Valid JSON nested 100,000 levels deep (Python's parser recurses once per level)."""
    return answer(b"[" * 100_000 + b"]" * 100_000, Content_Type="application/json")


def oversize_json(payload: dict, filler: str) -> bytes:
    """``payload`` as chunked JSON whose string ``filler`` grows it past :data:`OVERSIZE` bytes: a
    valid answer, only too large (no Content-Length, so only counting while reading can catch it)."""
    head, _, tail = json.dumps(payload).encode().partition(filler.encode())
    body = head + b"x" * OVERSIZE + tail
    piece = 1 << 20
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + piece]), body[i:i + piece]) for i in range(0, len(body), piece))
    return _head("200 OK", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}) + chunks + b"0\r\n\r\n"


def _head(status: str, fields: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in fields.items()), "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


class BrokenHttp:
    """Answers connection n with ``replies[n]`` (the last one repeats); records each request's head.

    ``seen`` holds ``(method, path, headers)`` with header names lower-cased.
    """

    def __init__(self, *replies: bytes):
        self.replies = list(replies)
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # so that the accept loop sees stop()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._count = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                reply = self.replies[min(self._count, len(self.replies) - 1)]
                self._count += 1
            threading.Thread(target=self._serve, args=(conn, reply), daemon=True).start()

    def _serve(self, conn: socket.socket, reply: bytes) -> None:
        with conn:
            try:
                head, body = self._read_request(conn)
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
                self.seen.append((method, path, headers))
                conn.sendall(reply)
            except OSError:  # the client hung up first: what a size cap does
                pass

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(65536)
            if not piece:
                raise ConnectionResetError("the client closed before sending a request")
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            piece = conn.recv(65536)
            if not piece:
                break
            body += piece
        return head, body

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._listener.close()
