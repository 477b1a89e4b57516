"""The one HTTP helper: a ``requests`` session with urllib3 ``Retry``, timeouts, capped bodies, one error type.

The retrieval client, the web QA client (searches and pages), the search providers and the agent's
OpenAI-compatible policy all send through :class:`HttpClient`, so they follow one set of rules
(issue 21: there were three hand-written retry loops with different rules):

* **Retries** are urllib3's ``Retry``, mounted on the session: after a connection error, a timeout,
  a connection that broke before the answer's headers, or HTTP 429/500/502/503/504, for every
  method (the APIs called are POSTs that are safe to repeat). The first retry goes at once, the
  n-th after ``backoff x 2^(n-1)`` s, at most ``max_backoff`` s; a ``Retry-After`` is obeyed up to
  ``max_backoff`` s too (a provider that asks for an hour must not hang an env). A body that
  breaks off while it is read is not retried: urllib3 has handed the response over by then.
* **Waits are bounded**: ``timeout`` for the connection and, separately, for each read, so one
  request costs at most ``(retries + 1) x 2 x timeout`` plus the backoffs.
* **Bodies are capped**: an answer over ``max_body_bytes`` (by its Content-Length, or counted after
  decompression while it is read) is an error, never read whole; so is JSON nested deeper than
  :data:`MAX_JSON_DEPTH` (Python's parser recurses once per level: ``[[[...]]]`` 100k deep raises
  ``RecursionError``, and code that walks a merely deep answer would too).
* **One error type**: every failure, whether raised while sending or lazily while the body is read
  (``ChunkedEncodingError``, ``ContentDecodingError``, urllib3's ``ProtocolError``/``DecodeError``),
  becomes :class:`HttpError` (or the subclass a client names in :attr:`HttpClient.error`), with a
  message that says what failed and never holds a secret.
* **Secrets** (API keys) given to a client are redacted from its messages and dropped from a request
  redirected to another host: requests drops ``Authorization`` there, but not ``X-API-KEY``.
"""

from __future__ import annotations

import http.client
import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import DecodeError, MaxRetryError, NewConnectionError, ProtocolError
from urllib3.util.retry import Retry

USER_AGENT = "mem1-gym/0.1 (research environment; +https://pypi.org/project/mem1-gym/)"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
"""Worth another attempt: rate limited, or a server-side failure that may pass."""
MAX_JSON_DEPTH = 64
"""Deepest JSON nesting accepted (the APIs called nest 5 levels)."""
_READ_BYTES = 1 << 16
_Timeout = float | tuple[float, float] | None  # requests' timeout: seconds, or (connect, read)
# What sending or reading can raise: requests' errors, urllib3's (a body read from ``raw``),
# http.client's and the socket's underneath them.
_NETWORK_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


class HttpError(RuntimeError):
    """A request failed: no connection, no answer in time, an error status after every retry, a broken,
    oversized or undecodable body. The message is safe to show (no secrets).

    ``cause`` is the reason alone ("no answer within 10 s"); ``attempts`` how many requests were sent.
    """

    def __init__(self, message: str, *, cause: str = "", attempts: int = 1):
        super().__init__(message)
        self.cause = cause or message
        self.attempts = attempts


@dataclass(frozen=True)
class HttpConfig:
    """Options of :class:`HttpClient`."""

    timeout: float = 10.0
    """Seconds to wait for the connection and, separately, for each read of the answer."""
    retries: int = 2
    """Extra attempts after a connection error, a timeout, HTTP 429 or 500/502/503/504."""
    backoff: float = 0.5
    """urllib3's backoff factor: the first retry goes at once, the n-th after backoff x 2^(n-1) s."""
    max_backoff: float = 8.0
    """Longest wait before a retry, also when a server's Retry-After asks for more (no hangs)."""
    max_body_bytes: int = 32 << 20
    """Largest answer read (after decompression); larger ones are errors. 32 MiB holds a batch of
    hundreds of queries' passages or a long completion with log-probs, and bounds a hostile server."""

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError(f"backoff and max_backoff must be >= 0 seconds, got {self.backoff}, {self.max_backoff}")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")


@dataclass(frozen=True)
class Reply:
    """A whole answer (any status)."""

    status: int
    reason: str
    body: bytes  # decompressed, at most max_body_bytes
    attempts: int  # requests sent, retries included

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class HttpClient:
    """A session with the retry, timeout and size rules of :class:`HttpConfig`; failures raise :attr:`error`.

    ``headers`` go with every request; ``secrets`` are replaced by ``***`` in every message and
    dropped from cross-host redirects; ``use_proxies`` honours ``HTTP(S)_PROXY`` / ``NO_PROXY``;
    ``pace`` is called before every attempt, retries included (a rate limiter's wait);
    ``pool_size`` is the connections kept per host (the requests sent at once).
    """

    error: type[HttpError] = HttpError
    """What this client raises; a client whose callers catch their own type names a subclass."""

    def __init__(
        self,
        config: HttpConfig = HttpConfig(),
        *,
        headers: dict[str, str] | None = None,
        secrets: Iterable[str | None] = (),
        use_proxies: bool = True,
        pace: Callable[[], object] | None = None,
        pool_size: int = 10,
    ):
        self.config = config
        self._secrets = tuple(s for s in secrets if s)
        self._pace = pace
        retry = _PacedRetry(
            total=config.retries, allowed_methods=None, status_forcelist=RETRY_STATUS, raise_on_status=False,
            backoff_factor=config.backoff, backoff_max=config.max_backoff, retry_after_max=config.max_backoff,
            pace=pace,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=pool_size)
        session = _Session(self._secrets)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update({"User-Agent": USER_AGENT, **(headers or {})})
        # HTTP(S)_PROXY from the environment is right for the real web and wrong for loopback: a
        # proxy cannot reach this machine's 127.0.0.1 (use_proxies=False for local servers).
        session.trust_env = use_proxies
        self._session: requests.Session | None = session

    def request(self, method: str, url: str, *, what: str, **kwargs: Any) -> Reply:
        """Send with retries and read the whole answer, whatever its status, except a retryable
        status (429, 5xx) that outlasted every attempt: that is an error too.

        ``what`` names the request in messages ("search", "page"); ``kwargs`` go to ``requests``.
        """
        timeout = kwargs.setdefault("timeout", (self.config.timeout, self.config.timeout))
        response = self.stream(method, url, what=what, **kwargs)
        retries = getattr(response.raw, "retries", None)
        attempts = len(retries.history) + 1 if retries is not None else 1
        with response, self.mapped(what, attempts, timeout):
            body = self._read_capped(response, what, attempts)
        reply = Reply(response.status_code, response.reason or "", body, attempts)
        if reply.status in RETRY_STATUS:
            raise self._error(what, f"HTTP {reply.status} {reply.reason}: {reply.text[:200]!r}", attempts)
        return reply

    def stream(self, method: str, url: str, *, what: str, **kwargs: Any) -> requests.Response:
        """Send with retries; return as soon as the headers are in (any status). Read the body
        inside :meth:`mapped` (it fails lazily, while read) and close the response."""
        if self._session is None:
            raise self.error(f"the HTTP client is closed; cannot send the {what} request")
        timeout = kwargs.setdefault("timeout", (self.config.timeout, self.config.timeout))
        if self._pace is not None:
            self._pace()
        with self.mapped(what, timeout=timeout):
            return self._session.request(method, url, stream=True, **kwargs)

    @contextmanager
    def mapped(self, what: str, attempts: int = 1, timeout: _Timeout = None) -> Iterator[None]:
        """Turn any network or decoding failure inside the block into :attr:`error` (``timeout``: the
        one the requests used, when not ``config.timeout``)."""
        try:
            yield
        except _NETWORK_ERRORS as err:
            reason, used_up = _unwrap(err)
            raise self._error(what, _describe(reason, timeout or self.config.timeout),
                              self.config.retries + 1 if used_up else attempts) from err

    def json(self, reply: Reply, what: str) -> Any:
        """The body as JSON; :attr:`error` if it is not JSON or nests deeper than :data:`MAX_JSON_DEPTH`."""
        try:
            value = json.loads(reply.body)
        except RecursionError:  # the C parser recurses once per level, and a deeper answer recurses past the stack
            raise self._error(what, f"JSON nested more than {MAX_JSON_DEPTH} levels deep", reply.attempts) from None
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
            raise self._error(what, f"invalid JSON ({err}): {reply.text[:200]!r}", reply.attempts) from None
        if _nests_deeper(value, MAX_JSON_DEPTH):
            raise self._error(what, f"JSON nested more than {MAX_JSON_DEPTH} levels deep", reply.attempts)
        return value

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        """Close the connections. Idempotent."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def __repr__(self) -> str:  # never shows the secrets
        return f"{type(self).__name__}({self.config})"

    def _read_capped(self, response: requests.Response, what: str, attempts: int) -> bytes:
        cap = self.config.max_body_bytes
        if _declared_over(response.headers.get("Content-Length", ""), cap):  # refuse before reading a byte
            raise self._error(what, f"the answer is larger than {cap} bytes", attempts)
        body = bytearray()
        for chunk in response.iter_content(_READ_BYTES):
            body += chunk
            if len(body) > cap:
                raise self._error(what, f"the answer is larger than {cap} bytes", attempts)
        return bytes(body)

    def _error(self, what: str, cause: str, attempts: int) -> HttpError:
        cause = self.redact(cause)
        return self.error(f"{what} request failed after {attempts} attempt(s): {cause}", cause=cause, attempts=attempts)


class _PacedRetry(Retry):
    """urllib3's ``Retry`` that calls ``pace`` before each retry, so retries count against a rate limit."""

    def __init__(self, *args: Any, pace: Callable[[], object] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pace = pace

    def new(self, **kwargs: Any) -> _PacedRetry:  # urllib3 makes a new Retry per attempt: carry pace over
        return super().new(pace=self.pace, **kwargs)

    def sleep(self, response: Any = None) -> None:
        super().sleep(response)
        if self.pace is not None:
            self.pace()


class _Session(requests.Session):
    """A session that also drops every header holding a secret when a redirect leaves the host
    (requests itself drops only ``Authorization``; an ``X-API-KEY`` would follow to any site)."""

    def __init__(self, secrets: tuple[str, ...]):
        super().__init__()
        self._secrets = secrets

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if self._secrets and self.should_strip_auth(response.request.url, prepared_request.url):
            for name, value in list(prepared_request.headers.items()):
                if isinstance(value, str) and any(secret in value for secret in self._secrets):
                    del prepared_request.headers[name]


def _unwrap(err: BaseException) -> tuple[BaseException, bool]:
    """The failure inside requests' wrapper, and whether urllib3 used up the retries on it."""
    inner = err.args[0] if isinstance(err, requests.RequestException) and err.args else err
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        return inner.reason, True
    return (inner if isinstance(inner, BaseException) else err), False


def _describe(reason: BaseException, timeout: float | tuple[float, float]) -> str:
    root = _root_cause(reason)
    timeout = max(timeout) if isinstance(timeout, tuple) else timeout
    if isinstance(reason, NewConnectionError):  # before timeouts: urllib3 derives it from ConnectTimeoutError
        return f"cannot connect ({root})"
    if isinstance(reason, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, (requests.exceptions.ContentDecodingError, DecodeError)):
        return f"the answer could not be decompressed ({root})"
    if isinstance(reason, (requests.exceptions.ChunkedEncodingError, ProtocolError, http.client.HTTPException, ConnectionError)):
        return f"the connection broke ({root})"
    return f"the request failed ({root})"


def _root_cause(err: BaseException) -> str:
    """The innermost error ("ConnectionRefusedError: ..."), not urllib3's nested wrappers."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {err}"


def _declared_over(content_length: str, cap: int) -> bool:
    """Whether a Content-Length says more than ``cap`` bytes (int() refuses a hostile 5,000-digit value)."""
    digits = content_length.strip().lstrip("0")
    return digits.isascii() and digits.isdigit() and (len(digits) > len(str(cap)) or int(digits) > cap)


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether lists and objects nest deeper than ``limit`` (iterative: no recursion to run out of)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
