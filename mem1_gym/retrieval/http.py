"""A client for the Search-R1 ``/retrieve`` wire format (our server, Search-R1's, or any clone).

Request ``{"queries": [...], "topk": k, "return_scores": true}``; response
``{"result": [[{"document": {"id", "contents"}, "score": s}, ...], ...]}``, one list per query
(reference/search-r1.md §3.1). The client also reads the shapes other servers send: bare
documents (``return_scores: false``), documents without ids (the SerpAPI server) and BM25-style
documents ``{"title", "text", "contents"}``.
"""

from __future__ import annotations

from typing import Any, Sequence
from urllib.parse import urlsplit

from mem1_gym.http import HttpClient, HttpConfig, HttpError
from mem1_gym.retrieval.base import Doc, RetrievalError, Retriever

__all__ = ["HttpConfig", "HttpRetriever"]  # HttpConfig: the options, kept importable from here

SERVE_HINT = (
    "start one with `mem1-gym serve-retriever --backend bm25s --corpus CORPUS.jsonl --port 8013`, "
    'or search in process with retriever="bm25s"'
)


class HttpRetriever(Retriever):
    """Search through a ``/retrieve`` server with :mod:`mem1_gym.http`'s client (retries, timeouts, size
    cap). Worst-case wait: ``(retries + 1) x 2 x timeout`` plus backoff. Every failure, a broken or
    oversized answer included, is a :class:`RetrievalError` that names the URL.

    ``url`` is the server root (``http://127.0.0.1:8013``) or the full endpoint (``.../retrieve``).
    """

    name = "http"

    def __init__(self, url: str, timeout: float = 10.0, retries: int = 2, backoff: float = 0.2):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url must look like http://127.0.0.1:8013 or http://host:port/retrieve, got {url!r}")
        self.url = url.rstrip("/") if parts.path.rstrip("/") else url.rstrip("/") + "/retrieve"
        self.config = HttpConfig(timeout, retries, backoff)
        self._client: HttpClient | None = HttpClient(self.config)

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
        if self._client is None:
            raise RetrievalError(f"HttpRetriever for {self.url} is closed")
        try:
            reply = self._client.request("POST", self.url, what="search", json=payload)
            if reply.status != 200:
                raise RetrievalError(f"retrieval server at {self.url} returned HTTP {reply.status}: {reply.text[:300]!r}")
            return self._client.json(reply, "search")
        except HttpError as err:
            raise RetrievalError(
                f"retrieval server at {self.url} failed {err.attempts} attempt(s), last: {err.cause}; {SERVE_HINT}"
            ) from err

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _parse_hit(hit: Any, url: str) -> Doc:
    """One result entry: ``{"document": {...}, "score": s}`` or a bare document."""
    if isinstance(hit, dict) and isinstance(hit.get("document"), dict):
        doc, score = hit["document"], hit.get("score")
    else:
        doc, score = hit, None
    if not isinstance(doc, dict):
        raise RetrievalError(f"retrieval server at {url} sent a hit that is not a JSON object: {_describe(doc)}")
    score = _score(score)
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


def _score(value: Any) -> float | None:
    """A hit's score; None when absent or not a number a float holds (JSON integers are unbounded)."""
    if not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."
