"""A scriptable loopback web server for the web QA tests: fake search APIs, hostile pages, failures.

A uniquely named module (not conftest) so that tests can import it whatever else is on sys.path.

Each route is ``path -> handler(request) -> Reply``; the server records every request it saw.
Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable
from urllib.parse import parse_qs, urlsplit

@dataclass
class Reply:
    status: int = 200
    body: bytes | Iterable[bytes] = b""  # an iterable is streamed chunk by chunk
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    chunk_delay: float = 0.0  # seconds between streamed chunks


@dataclass
class Seen:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes


def json_reply(payload, status: int = 200, **headers) -> Reply:
    return Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers})


def html_reply(markup: str | bytes, charset: str | None = "utf-8") -> Reply:
    body = markup.encode(charset or "utf-8") if isinstance(markup, str) else markup
    kind = f"text/html; charset={charset}" if charset else "text/html"
    return Reply(200, body, {"Content-Type": kind})


class FakeWeb:
    def __init__(self):
        self.routes: dict[str, Callable[[Seen], Reply]] = {}
        self.seen: list[Seen] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _handle(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers),
                               self.rfile.read(length) if length else b"")
                fake.seen.append(request)
                route = fake.routes.get(parts.path)
                reply = route(request) if route else Reply(404, b"not found")
                time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                try:
                    if isinstance(reply.body, bytes):
                        self.send_header("Content-Length", str(len(reply.body)))
                        self.end_headers()
                        self.wfile.write(reply.body)
                    else:
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.close_connection = True
                        for chunk in reply.body:
                            self.wfile.write(chunk)
                            time.sleep(reply.chunk_delay)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client stopped reading: what a byte cap does

            do_GET = do_POST = _handle

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()


def serper_payload(query: str, n: int, base: str = "https://example.org") -> dict:
    """A response in Serper's shape (searchParameters, organic with positions, extra widgets)."""
    return {
        "searchParameters": {"q": query, "type": "search", "engine": "google"},
        "knowledgeGraph": {"title": "Ignored"},
        "organic": [
            {"title": f"Result {i} for {query}", "link": f"{base}/r{i}", "snippet": f"snippet {i}", "position": i,
             "sitelinks": [{"title": "x", "link": f"{base}/x"}]}
            for i in range(1, n + 1)
        ],
        "peopleAlsoAsk": [],
        "credits": 1,
    }
