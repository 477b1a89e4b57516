"""HTTP for the web QA env: timeouts, retries with backoff, a per-env rate limit, secrets kept out of errors.

Every request the env makes (a search, a page) goes through one :class:`WebClient`, so one env
never exceeds its rate limit and never waits longer than a known bound: ``(retries + 1)`` attempts
of at most ``timeout`` seconds each for the connection and for each read, plus backoffs capped at
``max_backoff`` (also when a provider's ``Retry-After`` asks for more). Failures are
:class:`WebError`; the env turns them into observations.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

import requests

logger = logging.getLogger(__name__)

USER_AGENT = "mem1-gym-webqa/0.1 (research environment; +https://pypi.org/project/mem1-gym/)"
# Worth another attempt: rate limited (429) or a server-side failure that may pass (5xx).
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class WebError(RuntimeError):
    """A search or page request failed or was refused; the message is safe to show (no secrets)."""


@dataclass(frozen=True)
class ClientConfig:
    """Options of :class:`WebClient`."""

    timeout: float = 10.0
    """Seconds to wait for a connection and, separately, for each read of the answer."""
    retries: int = 2
    """Extra attempts after a timeout, a connection error, HTTP 429 or HTTP 5xx."""
    backoff: float = 0.5
    """Seconds before the first retry; doubles for each further one."""
    max_backoff: float = 8.0
    """Longest wait before a retry, also when a provider's Retry-After asks for more (no hangs)."""
    rate_limit: float | None = None
    """Most requests per second this client sends (searches and pages together); None: no limit."""

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError(f"backoff and max_backoff must be >= 0 seconds, got {self.backoff}, {self.max_backoff}")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError(f"rate_limit must be > 0 requests/s, or None for no limit; got {self.rate_limit}")


class RateLimiter:
    """Spaces calls at least ``1 / rate`` seconds apart (thread-safe; waits, never fails)."""

    def __init__(self, rate: float | None, clock=time.monotonic, sleep=time.sleep):
        self.interval = 0.0 if rate is None else 1.0 / rate
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until this call may go; return the seconds waited."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)
        return start - now


class WebClient:
    """A ``requests`` session with the retry, backoff and rate-limit policy of :class:`ClientConfig`.

    ``headers`` go with every request; ``secrets`` (API keys) are replaced by ``***`` in every
    error message this client raises; ``use_proxies`` honours ``HTTP(S)_PROXY`` / ``NO_PROXY``.
    """

    def __init__(
        self,
        config: ClientConfig = ClientConfig(),
        headers: dict[str, str] | None = None,
        secrets: Iterable[str] = (),
        use_proxies: bool = True,
    ):
        self.config = config
        self._secrets = tuple(s for s in secrets if s)
        self._limiter = RateLimiter(config.rate_limit)
        self._session: requests.Session | None = requests.Session()
        self._session.headers.update({"User-Agent": USER_AGENT, **(headers or {})})
        # HTTP(S)_PROXY from the environment is right for the real web and wrong for loopback: a
        # proxy cannot reach this machine's 127.0.0.1 (use_proxies=False for the mini-web).
        self._session.trust_env = use_proxies

    def request(self, method: str, url: str, *, what: str, **kwargs: Any) -> requests.Response:
        """Send with retries; return the first response that is not retryable (any status).

        ``what`` names the request in errors ("search", "page"). Raises :class:`WebError` after the
        last attempt, or at once when the client is closed.
        """
        if self._session is None:
            raise WebError(f"the web client is closed; cannot send the {what} request")
        kwargs.setdefault("timeout", (self.config.timeout, self.config.timeout))
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            self._limiter.wait()
            try:
                response = self._session.request(method, url, **kwargs)
            except requests.Timeout:
                why, delay = f"no answer within {self.config.timeout:g} s", self._backoff(attempt)
            except requests.RequestException as err:
                why, delay = f"cannot connect ({_root_cause(err)})", self._backoff(attempt)
            else:
                if response.status_code not in RETRYABLE_STATUS:
                    return response
                why = f"HTTP {response.status_code} {response.reason or ''}".strip()
                delay = self._backoff(attempt, response.headers.get("Retry-After"))
                response.close()
            if attempt + 1 < attempts:
                logger.debug("%s request failed (%s); retry %d/%d in %.2f s", what, self.redact(why), attempt + 1,
                             attempts - 1, delay)
                time.sleep(delay)
        raise WebError(self.redact(f"{what} request failed after {attempts} attempt(s): {why}"))

    def _backoff(self, attempt: int, retry_after: str | None = None) -> float:
        delay = self.config.backoff * 2**attempt
        if retry_after is not None and retry_after.strip().isdigit():  # seconds; HTTP dates are ignored
            delay = max(delay, float(retry_after))
        return min(delay, self.config.max_backoff)

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
        return f"WebClient({self.config})"


def _root_cause(err: BaseException) -> str:
    """The innermost error ("ConnectionRefusedError: ..."), not urllib3's nested wrappers."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {err}"
