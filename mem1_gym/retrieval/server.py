"""Serve any :class:`Retriever` over Search-R1's ``POST /retrieve`` format (FastAPI + uvicorn).

One index in one process, shared by many env workers (and by unmodified Search-R1/MEM1 clients).
Requests that arrive together are merged into one batched ``retriever.search`` call, because a
batch costs about as much as one query for the dense encoder and far less per query for BM25.

Differences from the original server (reference/search-r1.md §3.1), all deliberate:
``return_scores: false`` works (the original crashes), a missing ``topk`` means ``default_topk``,
documents are always ``{"id", "contents"}``, it binds 127.0.0.1 unless told otherwise, and
``GET /health`` reports the backend and whether it is up.
"""

# No `from __future__ import annotations`: FastAPI must see the request model class, not a string.

import contextlib
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

from mem1_gym.retrieval.base import Doc, RetrievalError, Retriever

INSTALL_HINT = 'pip install "mem1-gym[web]"'
MAX_TOPK = 1000  # bounds the work one request can ask for
_MAX_BATCH_QUERIES = 1024  # merged queries per search call: bounds encoder memory


@dataclass
class _Request:
    queries: list[str]
    k: int
    done: threading.Event = field(default_factory=threading.Event)
    result: list[list[Doc]] | None = None
    error: BaseException | None = None


class BatchingSearcher:
    """Funnels concurrent callers into one worker thread that searches their queries in one batch.

    The worker is also the only thread that touches the retriever, so backends need not be
    thread-safe, and pyserini's JVM sees one Python thread.
    """

    def __init__(self, retriever: Retriever, max_batch_queries: int = _MAX_BATCH_QUERIES):
        self.retriever = retriever
        self._max = max_batch_queries
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="mem1-gym-retrieval", daemon=True)
        self._worker.start()

    def search(self, queries: Sequence[str], k: int) -> list[list[Doc]]:
        if self._closed:
            raise RetrievalError("the retrieval server is shutting down")
        request = _Request(list(queries), k)
        self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def close(self) -> None:
        """Finish the batch in progress, fail what is still queued, stop the worker. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._worker.join(timeout=10)
        while True:  # requests queued behind the stop marker would otherwise wait forever
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                request.error = RetrievalError("the retrieval server is shutting down")
                request.done.set()

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, n_queries, stop = [first], len(first.queries), False
            while n_queries < self._max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                n_queries += len(nxt.queries)
            self._serve(batch)
            if stop:
                return

    def _serve(self, batch: list[_Request]) -> None:
        k = max(r.k for r in batch)
        try:
            hits = self.retriever.search([q for r in batch for q in r.queries], k)
        except Exception as err:  # handed to every waiting request thread, which re-raises it
            for r in batch:
                r.error = err
        else:
            start = 0
            for r in batch:
                r.result = [docs[: r.k] for docs in hits[start : start + len(r.queries)]]
                start += len(r.queries)
        for r in batch:
            r.done.set()


def create_app(retriever: Retriever, default_topk: int = 3):
    """A FastAPI app with ``POST /retrieve`` and ``GET /health`` over ``retriever``."""
    try:
        from fastapi import FastAPI, HTTPException
        from pydantic import BaseModel, Field
    except ImportError as err:
        raise RetrievalError(f"the retrieval server needs fastapi and uvicorn: {INSTALL_HINT}") from err
    if not 1 <= default_topk <= MAX_TOPK:
        raise ValueError(f"default_topk must be in [1, {MAX_TOPK}], got {default_topk}")

    class RetrieveRequest(BaseModel):
        queries: list[str]
        topk: int | None = Field(default=None, ge=1, le=MAX_TOPK)
        return_scores: bool = False

    searcher = BatchingSearcher(retriever)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        searcher.close()  # the retriever itself belongs to the caller, who closes it

    app = FastAPI(title="mem1-gym retrieval", description=__doc__, lifespan=lifespan)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "backend": retriever.name, "default_topk": default_topk}

    # A plain `def`: FastAPI runs it in its thread pool, so a slow batch never blocks the event loop.
    @app.post("/retrieve")
    def retrieve(request: RetrieveRequest) -> dict:
        k = request.topk or default_topk
        try:
            hits = searcher.search(request.queries, k)
        except RetrievalError as err:
            raise HTTPException(status_code=503, detail=str(err)) from err
        return {"result": [[_wire_doc(doc, request.return_scores) for doc in docs] for docs in hits]}

    return app


def _wire_doc(doc: Doc, with_score: bool) -> dict:
    document = {"id": doc.id, "contents": doc.contents}
    return {"document": document, "score": doc.score} if with_score else document


def serve(retriever: Retriever, host: str = "127.0.0.1", port: int = 8013, default_topk: int = 3) -> None:
    """Serve until interrupted (Ctrl-C). Bind 0.0.0.0 only on a trusted network: there is no auth."""
    try:
        import uvicorn
    except ImportError as err:
        raise RetrievalError(f"the retrieval server needs fastapi and uvicorn: {INSTALL_HINT}") from err
    uvicorn.run(create_app(retriever, default_topk), host=host, port=port, log_level="info")


class RunningServer:
    """A server on a background thread of this process; :meth:`stop` (or ``with``) shuts it down."""

    def __init__(self, retriever: Retriever, host: str = "127.0.0.1", port: int = 0, default_topk: int = 3):
        import uvicorn

        # Bind here, not in uvicorn: port 0 then gives a free port with no window for another
        # process to take it between choosing and binding. The explicit IPPROTO_TCP matters: asyncio
        # sets TCP_NODELAY only on sockets whose proto says TCP, and without it every request waits
        # out a delayed ACK (43 ms per request instead of 1.2 ms, measured).
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        self._socket = socket.socket(family, kind, proto)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(address)
        self.host, self.port = self._socket.getsockname()[:2]
        bracketed = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self.url = f"http://{bracketed}:{self.port}"
        config = uvicorn.Config(create_app(retriever, default_topk), log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="mem1-gym-retrieval-http", daemon=True
        )
        self._thread.start()
        self._wait_started()

    def _wait_started(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            if self._server.started:
                return
            time.sleep(0.01)
        self.stop()
        raise RetrievalError(f"the retrieval server on {self.url} did not start within {timeout:g} s")

    def stop(self) -> None:
        """Shut the server down and free the port. Idempotent."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(retriever: Retriever, host: str = "127.0.0.1", port: int = 0, default_topk: int = 3) -> RunningServer:
    """Serve ``retriever`` in the background on a free loopback port; returns ``.url`` and ``.stop()``."""
    try:
        import fastapi  # noqa: F401  (fail here with the install hint, not inside the server thread)
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise RetrievalError(f"the retrieval server needs fastapi and uvicorn: {INSTALL_HINT}") from err
    return RunningServer(retriever, host, port, default_topk)
