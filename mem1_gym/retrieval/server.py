"""Serve any :class:`Retriever` over Search-R1's ``POST /retrieve`` format (FastAPI + uvicorn).

One index in one process, shared by many env workers (and by unmodified Search-R1/MEM1 clients).
Requests that arrive together are merged into one batched ``retriever.search`` call, because a
batch costs about as much as one query for the dense encoder and far less per query for BM25.

Differences from the original server (reference/search-r1.md §3.1), all deliberate:
``return_scores: false`` works (the original crashes), documents are always ``{"id", "contents"}``,
it binds 127.0.0.1 unless told otherwise, ``GET /health`` reports the backend and the limits, and
every request is bounded (issue 21), each limit a :class:`ServerLimits` field and a
``mem1-gym serve-retriever`` flag:

* body: at most ``max_body_bytes`` (``--max-body-bytes``, 8 MiB), else 413 (before reading it when
  ``Content-Length`` says so);
* ``queries``: at most ``max_queries`` (``--max-queries``, 4,096: Search-R1's GRPO recipe sends
  512 × 5 = 2,560 in one request) of at most ``max_query_chars`` characters each
  (``--max-query-chars``, 4,096: a whole 500-token Search-R1 turn), else 422;
* ``topk``: an integer up to ``max_topk`` (``--max-topk``, 100), else 422; ``0`` or ``null`` (or
  none) means ``default_topk`` (``--topk``), as in Search-R1's server (issue 23).

A 422 says which field broke which limit and never echoes the request. The BM25 backends also
score at most ``max_query_terms`` distinct terms per query (``--max-query-terms``, 64), so a query
of 10,000 words (allowed once ``--max-query-chars`` is raised) costs its tokenisation and 64 terms.

Answers do not depend on other traffic: the requests of a merged batch that ask for the same
``topk`` are searched together, once per distinct ``topk``, so each gets what the backend answers
in process for its own ``topk`` (a backend that proposes candidates, tantivy beyond its 30 or a
refined dense index beyond ``refine_depth``, need not answer a larger ``topk`` with a longer list
of the same passages). Every backend ranks on (score, then corpus row; pyserini and tantivy: the
passage id, Lucene's order). Dense backends are the exception at the last float bit: a query's
embedding can differ by ~1e-7 with the other queries of its encoder batch, which can swap two
passages whose scores differ by less.

Speed: answers are serialised with ``orjson`` straight to bytes, and :func:`serve_workers` runs N
processes (``--workers N``) that share one listening socket, each opening the index itself. Memory
per worker (PSS, benchmarks/bench_retrieval_server.py, 20k passages): bm25s ~75 MB, as its score
matrix and docstore are memory-mapped (one copy in the page cache for all workers; each worker
still holds its vocabulary dict); pyserini ~0.5 GB, Lucene's segments are memory-mapped but each
worker starts its own JVM; FAISS reads the whole index and loads the encoder in each worker, so
dense indexes want ``--workers 1`` (the encoder batch is where their time goes anyway). Workers pay
off only with idle cores: on 2 busy cores 4 pyserini workers were slower than 1.
"""

# No `from __future__ import annotations`: FastAPI must see the request model class, not a string.

import contextlib
import json
import logging
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Callable, Sequence

from mem1_gym.retrieval.base import Doc, RetrievalError, Retriever
from mem1_gym.serving import BodyLimit, bind, problem, socket_url


log = logging.getLogger(__name__)
INSTALL_HINT = 'pip install "mem1-gym[web]"'
_MAX_BATCH_QUERIES = 1024  # merged queries per search call: bounds encoder memory
_ERRORS_SHOWN = 3  # a 422 names this many invalid fields (a bad batch can have thousands)
_WORKER_ENV = "MEM1_GYM_RETRIEVAL_WORKER"  # how serve_workers tells its worker processes what to open
# Seconds a worker may leave uvicorn's health ping unanswered before it is killed and replaced. Its
# default, 5, killed every pyserini worker while its JVM started (that holds the GIL) on busy cores.
_WORKER_STARTUP_S = 300


@dataclass(frozen=True)
class ServerLimits:
    """What one ``POST /retrieve`` may ask for; over a limit the answer is 413 or 422 with the reason."""

    max_body_bytes: int = 8 << 20
    """Largest request body; 2,560 queries of 1,000 characters take 2.6 MB."""
    max_queries: int = 4096
    """Most queries in one request (Search-R1 sends a whole turn's batch, 2,560 in its GRPO recipe)."""
    max_query_chars: int = 4096
    """Longest query, in characters (a whole 500-token turn of Search-R1 fits)."""
    max_topk: int = 100
    """Largest ``topk``: bounds the answer (``max_queries`` × ``max_topk`` passages)."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} (--{name.replace('_', '-')}) must be an integer >= 1, got {value!r}")


def check_default_topk(default_topk: int, limits: ServerLimits) -> None:
    """Raise ValueError unless ``default_topk`` is a ``topk`` the server's limits allow."""
    if not 1 <= default_topk <= limits.max_topk:
        raise ValueError(
            f"default_topk (--topk) must be in [1, max_topk (--max-topk) = {limits.max_topk}], got {default_topk}"
        )


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
        by_k: dict[int, list[_Request]] = {}
        for r in batch:
            by_k.setdefault(r.k, []).append(r)
        for k, requests in by_k.items():  # one search per distinct k: each answer is the backend's for its k
            try:
                hits = self.retriever.search([q for r in requests for q in r.queries], k)
            except Exception as err:  # handed to every waiting request thread, which re-raises it
                for r in requests:
                    r.error = err
            else:
                start = 0
                for r in requests:
                    r.result = hits[start : start + len(r.queries)]
                    start += len(r.queries)
        for r in batch:
            r.done.set()


def create_app(
    retriever: Retriever, default_topk: int = 3, limits: ServerLimits = ServerLimits(), close_retriever: bool = False
):
    """A FastAPI app with ``POST /retrieve`` and ``GET /health`` over ``retriever`` (closed with the
    app when ``close_retriever``; otherwise it belongs to the caller)."""
    try:
        import orjson
        from fastapi import FastAPI, HTTPException
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, Response
        from pydantic import BaseModel, Field, Strict, StrictStr
    except ImportError as err:
        raise RetrievalError(f"the retrieval server needs fastapi and uvicorn: {INSTALL_HINT}") from err
    check_default_topk(default_topk, limits)

    class RetrieveRequest(BaseModel):
        queries: list[Annotated[StrictStr, Field(max_length=limits.max_query_chars)]] = Field(
            max_length=limits.max_queries
        )
        # Strict: JSON's 3.0, "3", true and Infinity are not a number of passages.
        topk: Annotated[int, Strict()] | None = Field(default=None, ge=0, le=limits.max_topk)
        return_scores: bool = False

    searcher = BatchingSearcher(retriever)
    usage = (
        f'send {{"queries": [at most {limits.max_queries} strings of at most {limits.max_query_chars} '
        f'characters], "topk": 1..{limits.max_topk} (0 or null: {default_topk}), "return_scores": true|false}}'
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        searcher.close()
        if close_retriever:
            retriever.close()

    app = FastAPI(title="mem1-gym retrieval", description=__doc__, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    # FastAPI's own 422 echoes the request, so one with topk Infinity became a 500 (the echo is not
    # JSON) and a 1 MB query came back whole; this one names the fields and the limits only.
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request, err: RequestValidationError) -> JSONResponse:
        problems = [problem(e) for e in err.errors()[:_ERRORS_SHOWN]]
        return JSONResponse(status_code=422, content={"detail": f"{'; '.join(problems)}; {usage}"})

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "backend": retriever.name, "default_topk": default_topk, "limits": asdict(limits)}

    # A plain `def`: FastAPI runs it in its thread pool, so a slow batch never blocks the event loop.
    @app.post("/retrieve")
    def retrieve(request: RetrieveRequest) -> Response:
        k = request.topk or default_topk  # 0 and null: the default, as in Search-R1's server
        try:
            hits = searcher.search(request.queries, k)
        except RetrievalError as err:
            raise HTTPException(status_code=503, detail=str(err)) from err
        # Bytes straight from orjson: FastAPI's own path (jsonable_encoder, then json.dumps) took
        # most of a 64-query request's time.
        wire = _wire_with_score if request.return_scores else _wire_doc
        return Response(orjson.dumps({"result": [[wire(doc) for doc in docs] for docs in hits]}),
                        media_type="application/json")

    return app


def _wire_doc(doc: Doc) -> dict:
    return {"id": doc.id, "contents": doc.contents}


def _wire_with_score(doc: Doc) -> dict:
    return {"document": {"id": doc.id, "contents": doc.contents}, "score": doc.score}


def _uvicorn():
    try:
        import uvicorn
    except ImportError as err:
        raise RetrievalError(f"the retrieval server needs fastapi and uvicorn: {INSTALL_HINT}") from err
    return uvicorn


def serve(
    retriever: Retriever,
    host: str = "127.0.0.1",
    port: int = 8013,
    default_topk: int = 3,
    limits: ServerLimits = ServerLimits(),
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C). Bind 0.0.0.0 only on a trusted network: there is no auth.
    ``on_ready(url)`` is called once the port is bound (port 0: a free one)."""
    uvicorn = _uvicorn()
    app = create_app(retriever, default_topk, limits)
    with bind(host, port) as sock:
        if on_ready is not None:
            on_ready(socket_url(sock))
        uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])


@dataclass(frozen=True)
class IndexSpec:
    """An index as each worker process of :func:`serve_workers` opens it (processes share no objects)."""

    backend: str
    """A backend name of :data:`mem1_gym.retrieval.build.BACKENDS`."""
    index: str
    """The index directory (or FAISS file)."""
    corpus: str | None = None
    """The corpus jsonl; None: the one recorded in the index's meta.json."""
    options: dict = field(default_factory=dict)
    """Search-time backend options, as for :func:`mem1_gym.retrieval.build.load_retriever`."""


def serve_workers(
    spec: IndexSpec,
    workers: int,
    host: str = "127.0.0.1",
    port: int = 8013,
    default_topk: int = 3,
    limits: ServerLimits = ServerLimits(),
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``spec`` from ``workers`` processes sharing one listening socket, until interrupted.

    Each worker opens the index itself (memory-mapped indexes share their pages; see the module
    docstring for what each backend costs per worker) and merges the requests it accepts into
    batches of its own. uvicorn's supervisor restarts a worker that dies.
    """
    if workers < 1:
        raise ValueError(f"workers (--workers) must be >= 1, got {workers}")
    check_default_topk(default_topk, limits)
    spec = worker_spec(spec, workers)
    uvicorn = _uvicorn()
    from uvicorn.supervisors import Multiprocess

    # Spawned workers inherit the environment; that is how they learn what to open.
    os.environ[_WORKER_ENV] = json.dumps({"spec": asdict(spec), "default_topk": default_topk, "limits": asdict(limits)})
    config = uvicorn.Config(f"{__name__}:worker_app", factory=True, workers=workers, log_level="info",
                            timeout_worker_healthcheck=_WORKER_STARTUP_S)
    with bind(host, port) as sock:
        if on_ready is not None:
            on_ready(socket_url(sock))
        Multiprocess(config, sockets=[sock]).run()


def worker_spec(spec: IndexSpec, workers: int, cores: int | None = None) -> IndexSpec:
    """``spec`` as each of ``workers`` processes opens it: tantivy searches a batch on a thread pool of
    its own, so unless ``threads`` is given each worker gets ``cores // workers`` search threads (at
    least 1) and the workers together do not ask for more threads than the machine has cores. On 2
    cores, 4 workers with 1 thread each served 6,595 q/s where 2 threads each served 5,448
    (benchmarks/bench_retrieval_server.py, docs/benchmarks.md)."""
    if spec.backend != "tantivy" or "threads" in spec.options:
        return spec
    cores = cores or _usable_cores()
    threads = max(1, cores // workers)
    log.info("tantivy: %d search thread(s) per worker (%d cores, %d workers; --threads overrides)", threads, cores, workers)
    return replace(spec, options={**spec.options, "threads": threads})


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_app():
    """The app of one :func:`serve_workers` process (a uvicorn factory): opens its own retriever."""
    from mem1_gym.retrieval.build import load_retriever

    settings = json.loads(os.environ[_WORKER_ENV])
    spec = IndexSpec(**settings["spec"])
    retriever = load_retriever(spec.backend, spec.index, spec.corpus, **spec.options)
    return create_app(retriever, settings["default_topk"], ServerLimits(**settings["limits"]), close_retriever=True)


class RunningServer:
    """A server on a background thread of this process; :meth:`stop` (or ``with``) shuts it down."""

    def __init__(
        self,
        retriever: Retriever,
        host: str = "127.0.0.1",
        port: int = 0,
        default_topk: int = 3,
        limits: ServerLimits = ServerLimits(),
    ):
        uvicorn = _uvicorn()
        app = create_app(retriever, default_topk, limits)  # before binding: it fails without fastapi
        self._socket = bind(host, port)
        self.host, self.port = self._socket.getsockname()[:2]
        self.url = socket_url(self._socket)
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
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


def start_server(
    retriever: Retriever,
    host: str = "127.0.0.1",
    port: int = 0,
    default_topk: int = 3,
    limits: ServerLimits = ServerLimits(),
) -> RunningServer:
    """Serve ``retriever`` in the background on a free loopback port; returns ``.url`` and ``.stop()``."""
    return RunningServer(retriever, host, port, default_topk, limits)
