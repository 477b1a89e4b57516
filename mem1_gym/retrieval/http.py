"""A client for the Search-R1 ``/retrieve`` wire format (our server, Search-R1's, or any clone).

Request ``{"queries": [...], "topk": k, "return_scores": true}``; response
``{"result": [[{"document": {"id", "contents"}, "score": s}, ...], ...]}``, one list per query
(reference/search-r1.md §3.1). The client also reads the shapes other servers send: bare
documents (``return_scores: false``), documents without ids (the SerpAPI server) and BM25-style
documents ``{"title", "text", "contents"}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import urlsplit

import requests

from mem1_gym.retrieval.base import Doc, RetrievalError, Retriever

SERVE_HINT = (
    "start one with `mem1-gym serve-retriever --backend bm25s --corpus CORPUS.jsonl --port 8013`, "
    'or search in process with retriever="bm25s"'
)
_RETRYABLE_STATUS = (502, 503, 504)  # a server restarting or overloaded, not a bad request


@dataclass(frozen=True)
class HttpConfig:
    """Options of :class:`HttpRetriever`."""

    timeout: float = 10.0
    """Seconds to wait for the connection and, separately, for the response."""
    retries: int = 2
    """Extra attempts after a connection error, a timeout or a 502/503/504."""
    backoff: float = 0.2
    """Seconds before the first retry; doubles for each further one."""

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {self.backoff}")


class HttpRetriever(Retriever):
    """Search through a ``/retrieve`` server. Worst-case wait: ``(retries + 1) * timeout`` plus backoff.

    ``url`` is the server root (``http://127.0.0.1:8013``) or the full endpoint (``.../retrieve``).
    """

    name = "http"

    def __init__(self, url: str, timeout: float = 10.0, retries: int = 2, backoff: float = 0.2):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url must look like http://127.0.0.1:8013 or http://host:port/retrieve, got {url!r}")
        self.url = url.rstrip("/") if parts.path.rstrip("/") else url.rstrip("/") + "/retrieve"
        self.config = HttpConfig(timeout, retries, backoff)
        self._session: requests.Session | None = requests.Session()

    def search(self, queries: Sequence[str], k: int = 3) -> list[list[Doc]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not queries:
            return []
        payload = {"queries": list(queries), "topk": k, "return_scores": True}
        body = self._post(payload)
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, list) or len(result) != len(queries) or not all(isinstance(h, list) for h in result):
            raise RetrievalError(
                f"retrieval server at {self.url} answered {len(queries)} queries with "
                f"{_describe(result)}; expected {{\"result\": [[...], ...]}} with one list per query"
            )
        return [[_parse_hit(hit, self.url) for hit in hits[:k]] for hits in result]

    def _post(self, payload: dict) -> Any:
        if self._session is None:
            raise RetrievalError(f"HttpRetriever for {self.url} is closed")
        timeout = (self.config.timeout, self.config.timeout)  # (connect, read): never wait forever
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.config.backoff * 2 ** (attempt - 1))
            try:
                response = self._session.post(self.url, json=payload, timeout=timeout)
            except requests.Timeout as err:
                why = f"no answer within {self.config.timeout:g} s ({type(err).__name__})"
                continue
            except requests.ConnectionError as err:
                why = f"cannot connect ({_root_cause(err)})"
                continue
            if response.status_code in _RETRYABLE_STATUS:
                why = f"HTTP {response.status_code}: {response.text[:200]!r}"
                continue
            return _decode(response, self.url)
        raise RetrievalError(f"retrieval server at {self.url} failed {attempts} attempt(s), last: {why}; {SERVE_HINT}")

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def _decode(response: requests.Response, url: str) -> Any:
    if response.status_code != 200:
        raise RetrievalError(f"retrieval server at {url} returned HTTP {response.status_code}: {response.text[:300]!r}")
    try:
        return response.json()
    except ValueError as err:
        raise RetrievalError(f"retrieval server at {url} returned invalid JSON: {response.text[:300]!r}") from err


def _root_cause(err: BaseException) -> str:
    """The innermost error: "[Errno 111] Connection refused" rather than urllib3's nested wrappers."""
    while err.__context__ is not None or err.__cause__ is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {err}"


def _parse_hit(hit: Any, url: str) -> Doc:
    """One result entry: ``{"document": {...}, "score": s}`` or a bare document."""
    if isinstance(hit, dict) and isinstance(hit.get("document"), dict):
        doc, score = hit["document"], hit.get("score")
    else:
        doc, score = hit, None
    if not isinstance(doc, dict):
        raise RetrievalError(f"retrieval server at {url} sent a hit that is not a JSON object: {_describe(doc)}")
    score = float(score) if isinstance(score, (int, float)) else None
    doc_id = str(doc.get("id", doc.get("docid", "")))
    if isinstance(doc.get("contents"), str):
        return Doc.from_contents(doc_id, doc["contents"], score)
    if isinstance(doc.get("title"), str) and isinstance(doc.get("text"), str):
        # Search-R1's BM25 documents strip the quotes off the title; the protocol keeps them.
        return Doc(doc_id, f'"{doc["title"]}"', doc["text"], score)
    raise RetrievalError(
        f"retrieval server at {url} sent a document without \"contents\" (or \"title\" and \"text\"): "
        f"{_describe(doc)}"
    )


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."
