"""The mini-web over HTTP: ``mem1-gym serve-miniweb``, or a background server shared by the envs of a process.

Routes: ``GET /wiki/<id>`` (a page), ``GET|POST /search`` (Serper's JSON), ``GET /health``, ``GET /``.

Every bad request gets a 4xx and a JSON ``{"message"}`` that says what to send (issue 21): a bad
or missing ``Content-Length`` 400/411, a body over ``max_body_bytes`` 413, a body that is not
JSON (or nested too deeply to parse) 400, a query over ``max_query_chars`` or a ``num`` that is
not an integer in [1, ``max_results``] (``Infinity``, ``1e400``, ``"10"``, ``true``) 422. The
limits are :class:`~mem1_gym.web.miniweb.MiniWebConfig` fields and ``serve-miniweb`` flags.

Built on the standard library's ``ThreadingHTTPServer`` rather than FastAPI + uvicorn (the
retrieval server's stack): the offline default of ``MEM1-WebQA-N`` then works with the core
install, and it is faster here: 1185 against 1084 requests/s for a small JSON answer with 8
keep-alive clients on 2 cores (uvicorn without httptools parses HTTP in pure Python). Nagle's
algorithm is off on every connection, for the reason given in ``mem1_gym.retrieval.server``:
without it a keep-alive request waits out a delayed ACK (about 40 ms).
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from mem1_gym.web.miniweb import MiniWebConfig, MiniWebSite

logger = logging.getLogger(__name__)
_USAGE = 'send JSON {"q": "query", "num": 10}'
_IDLE_SECONDS = 60  # keep-alive connections idle this long are closed (one thread each)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: an env reuses one connection for every request
    server_version = "mem1-gym-miniweb/0.1"
    disable_nagle_algorithm = True
    timeout = _IDLE_SECONDS
    server: "_Server"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        site = self.server.site
        if parts.path.startswith("/wiki/"):
            page = site.page(unquote(parts.path[len("/wiki/") :]))
            if page is None:
                self._send(404, b"<h1>404: no such page on the mini-web</h1>", "text/html; charset=utf-8")
            else:
                self._send(200, page.encode("utf-8"), "text/html; charset=utf-8")
        elif parts.path == "/search":
            params = parse_qs(parts.query)
            num = params.get("num", ["10"])[0]
            if num.isascii() and num.isdigit() and len(num) < 10:  # int() of 5,000 digits raises
                num = int(num)  # anything else stays a string, which _search refuses
            self._search(params.get("q", [""])[0], num)
        elif parts.path == "/health":
            self._json(200, {"status": "ok", "pages": len(site.corpus)})
        elif parts.path == "/":
            self._send(200, site.home().encode("utf-8"), "text/html; charset=utf-8")
        else:
            self._json(404, {"message": f"no route {parts.path}; try /search or /wiki/<id>"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/search":
            self._json(404, {"message": "POST only to /search"})
            return
        body = self._read_body()
        if body is None:
            return
        try:
            request = json.loads(body)
            query, num = request["q"], request.get("num", 10)
        except RecursionError:  # json's C parser recurses per nesting level
            self._json(400, {"message": f"the body is nested too deeply to be a search; {_USAGE}"})
            return
        except (ValueError, KeyError, TypeError, AttributeError):  # ValueError: not JSON, or not UTF-8
            self._json(400, {"message": _USAGE})
            return
        self._search(query, num)

    def _read_body(self) -> bytes | None:
        """The request body, or None once an error is answered (a body left unread closes the connection)."""
        limit = self.server.site.config.max_body_bytes
        declared = self.headers.get("Content-Length")
        digits = (declared or "").lstrip("0")  # int() refuses strings of over 4,300 digits, zeros too
        if declared is None:
            problem = 411, "send the body with a Content-Length header"
        elif not (declared.isascii() and declared.isdigit()):
            problem = 400, f"Content-Length must be a number of bytes, got {declared[:40]!r}"
        elif len(digits) > len(str(limit)) or int(digits or 0) > limit:
            problem = 413, f"the body is over {limit} bytes; {_USAGE}"
        elif not digits:
            problem = 400, f"the body is empty; {_USAGE}"
        else:
            return self.rfile.read(int(digits))
        self.close_connection = True  # the unread body would be taken for the next request
        self._json(problem[0], {"message": problem[1]})
        return None

    def _search(self, query, num) -> None:
        config = self.server.site.config
        if not isinstance(query, str):
            self._json(422, {"message": f"the query q must be a string; {_USAGE}"})
        elif not query.strip():
            self._json(400, {"message": "the query q must be a non-empty string"})
        elif len(query) > config.max_query_chars:
            limit = config.max_query_chars
            self._json(422, {"message": f"the query has {len(query)} characters; the limit is {limit}"})
        # bool is an int in Python, and JSON's 1e400 and Infinity parse to a float: none is a count.
        elif isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= config.max_results:
            self._json(422, {"message": f"num must be an integer from 1 to {config.max_results}"})
        else:
            self._json(200, self.server.site.search(query, num))

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        logger.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a keep-alive connection must not keep the process alive at exit
    allow_reuse_address = True

    def __init__(self, site: MiniWebSite, host: str, port: int):
        self.site = site
        super().__init__((host, port), _Handler)


class MiniWebServer:
    """The mini-web on a background thread of this process; :meth:`stop` (or ``with``) shuts it down."""

    def __init__(self, site: MiniWebSite, host: str = "127.0.0.1", port: int = 0):
        self.site = site
        self._httpd = _Server(site, host, port)  # binds now: port 0 gives a free port, with no race
        self.host, self.port = self._httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="mem1-gym-miniweb", daemon=True
        )
        self._thread.start()
        self._stopped = False

    def stop(self) -> None:
        """Stop serving and free the port (the site's index stays open). Idempotent."""
        if not self._stopped:
            self._stopped = True
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> "MiniWebServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# One mini-web per corpus and process: every env of a SyncVectorEnv (or of a thread pool) shares it.
_SHARED: dict[MiniWebConfig, MiniWebServer] = {}
_SHARED_LOCK = threading.Lock()


def shared_server(config: MiniWebConfig = MiniWebConfig()) -> MiniWebServer:
    """This process's mini-web for ``config`` on a free loopback port, started on first use."""
    config = config.resolved()  # corpus_path=None and the world's path are one server
    with _SHARED_LOCK:
        if config not in _SHARED:
            _SHARED[config] = MiniWebServer(MiniWebSite.load(config))
        return _SHARED[config]


@atexit.register
def _stop_shared() -> None:
    for server in _SHARED.values():
        server.stop()
        server.site.close()
    _SHARED.clear()


def serve(config: MiniWebConfig = MiniWebConfig(), host: str = "127.0.0.1", port: int = 8030) -> None:
    """Serve until interrupted (Ctrl-C). Bind 0.0.0.0 only on a trusted network: there is no auth."""
    site = MiniWebSite.load(config)
    httpd = _Server(site, host, port)
    print(f"mini-web: {len(site.corpus)} pages on http://{host}:{httpd.server_address[1]} "
          f"(search: /search?q=..., pages: /wiki/<id>)", file=sys.stderr)
    try:
        httpd.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        site.close()
