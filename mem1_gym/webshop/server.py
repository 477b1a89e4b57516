"""The WebShop web site: a Flask app over :class:`~mem1_gym.webshop.site.Site`, served from a thread.

``ShopServer.start(site)`` binds 127.0.0.1 on a free port (port 0: the OS picks one, so a port in
use is never a problem) and serves with werkzeug's threaded server in a daemon thread; browser envs
of one process share one server per shop through :func:`acquire_server` / :func:`release_server`,
and the last release stops it. ``mem1-gym serve-shop`` runs the same app for people.

No page shows an exception (issue 21): URLs the site does not serve get its 404/410/422 pages,
other methods than GET/POST a 405, and a failure of the site a 500 page without internals; the
exception is logged, and kept for in-process envs by :meth:`ShopServer.failure`.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable

from mem1_gym.webshop.pages import Node, Page, clean_text, render_html
from mem1_gym.webshop.site import Site

_NONCES = itertools.count(1)  # every rendered page gets a new one: the browser env waits for it to change
_FAILURES_KEPT = 64  # failure messages a server keeps for ShopServer.failure (one per failed path)
_log = logging.getLogger(__name__)


def error_page(path: str, status: int, title: str) -> Page:
    """An HTTP error or a failure of the site: a title and no internals. The browser env turns a
    page named "error" (status 500) into a SiteError."""
    message = "The server's log has the cause." if status >= 500 else "The shop only serves the pages its links lead to."
    nodes = (Node("title", title), Node("text", message))
    return Page("error" if status >= 500 else "refused", clean_text(path[:200]), nodes, status=status)


def create_app(site: Site, on_failure: Callable[[str, str], None] | None = None):
    """The Flask app: ``/`` starts a session with a goal of ``site.human_split``; every other URL is
    routed by :meth:`Site.dispatch`. A failure of the site answers 500 with a page that says only
    that; the exception is logged and handed to ``on_failure(path, "Type: message")``."""
    from flask import Flask, Response, redirect, request
    from werkzeug.exceptions import HTTPException

    app = Flask("mem1_gym.webshop")

    def html(page: Page) -> Response:
        return Response(render_html(page, next(_NONCES)), status=page.status, mimetype="text/html")

    @app.get("/")
    def index():
        return redirect(f"/{uuid.uuid4().hex[:10]}")

    @app.get("/favicon.ico")  # browsers ask for it; without this route it would open a session
    def favicon():
        return Response(status=204)

    @app.route("/<path:path>", methods=["GET", "POST"])
    def page(path: str):
        return html(site.dispatch("/" + path, request.args.to_dict()))

    @app.errorhandler(HTTPException)
    def refused(err: HTTPException):  # a client error (405 for PUT, ...): no log, no traceback
        response = html(error_page(request.path, err.code or 400, f"{err.code} {err.name}"))
        response.headers.update({k: v for k, v in err.get_headers() if k.lower() == "allow"})
        return response

    @app.errorhandler(Exception)
    def failed(err: Exception):
        _log.error("the shop site failed on %s", request.path, exc_info=err)
        if on_failure is not None:
            on_failure(request.path, f"{type(err).__name__}: {err}")
        return html(error_page(request.path, 500, "The shop site failed"))

    return app


class ShopServer:
    """A threaded werkzeug server for one :class:`Site`; ``stop()`` is idempotent."""

    def __init__(self, site: Site, host: str = "127.0.0.1", port: int = 0, quiet: bool = True):
        from werkzeug.serving import WSGIRequestHandler, make_server

        class _Handler(WSGIRequestHandler):
            def log_request(self, *args, **kwargs) -> None:
                if not quiet:
                    super().log_request(*args, **kwargs)

        self.site = site
        self.moved_from: tuple[int, str] | None = None
        self._failures: OrderedDict[str, str] = OrderedDict()  # path -> "Type: message", newest last
        self._failures_lock = threading.Lock()
        taken = _port_taken(host, port)
        if taken:  # any free port serves as well (the URL says which); werkzeug would sys.exit instead
            self.moved_from, port = (port, taken), 0
        app = create_app(site, self._record_failure)
        self._server = make_server(host, port, app, threaded=True, request_handler=_Handler)
        self.host, self.port = host, self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"webshop-server-{self.port}", daemon=True)
        self._thread.start()
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _record_failure(self, path: str, message: str) -> None:
        with self._failures_lock:
            self._failures.pop(path, None)
            self._failures[path] = message
            while len(self._failures) > _FAILURES_KEPT:
                self._failures.popitem(last=False)

    def failure(self, path: str) -> str:
        """Why the site failed on ``path`` (the exception its error page does not show), "" if it
        did not: how an env in this process names the cause of a SiteError."""
        with self._failures_lock:
            return self._failures.pop(path, "")

    def serve_until_interrupted(self, on_ready: Callable[[str], None]) -> None:
        on_ready(self.url)
        try:
            self._thread.join()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _port_taken(host: str, port: int) -> str:
    """Why ``port`` cannot be bound ("" when it can, or when it is 0)."""
    if port == 0:
        return ""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            return str(err)
    return ""


_SERVERS: dict[int, tuple[ShopServer, int]] = {}  # id(site) -> (server, users)
_SERVERS_LOCK = threading.Lock()


def acquire_server(site: Site, host: str = "127.0.0.1") -> ShopServer:
    """The process's server for ``site`` (started on first use); pair with :func:`release_server`."""
    with _SERVERS_LOCK:
        server, users = _SERVERS.get(id(site), (None, 0))
        if server is None:
            server = ShopServer(site, host)
        _SERVERS[id(site)] = (server, users + 1)
        return server


def release_server(server: ShopServer) -> None:
    """One user fewer; the last one stops the server."""
    with _SERVERS_LOCK:
        key = id(server.site)
        current, users = _SERVERS.get(key, (None, 0))
        if current is not server:
            return
        if users <= 1:
            del _SERVERS[key]
            server.stop()
        else:
            _SERVERS[key] = (server, users - 1)
