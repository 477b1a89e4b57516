"""HTTP for the web QA env: :mod:`mem1_gym.http`'s client plus a per-env rate limit and :class:`WebError`.

Every request the env makes (a search, a page) goes through one :class:`WebClient`, so one env
never exceeds its rate limit (retries count against it) and never waits longer than a known bound
(see :mod:`mem1_gym.http`). Every failure is a :class:`WebError`; the env turns it into an observation.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterable

from mem1_gym.http import HttpClient, HttpConfig, HttpError


class WebError(HttpError):
    """A search or page request failed or was refused; the message is safe to show (no secrets)."""


@dataclass(frozen=True)
class ClientConfig(HttpConfig):
    """Options of :class:`WebClient`: :class:`~mem1_gym.http.HttpConfig`'s and the rate limit."""

    rate_limit: float | None = None
    """Most requests per second this client sends (searches, pages and retries together); None: no limit."""

    def __post_init__(self) -> None:
        super().__post_init__()
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


class WebClient(HttpClient):
    """An :class:`~mem1_gym.http.HttpClient` that keeps to ``config.rate_limit`` and raises :class:`WebError`.

    ``headers`` go with every request (never put an API key there: pages would get it too; pass it
    per request to the API call); ``secrets`` (API keys) are replaced by ``***`` in every error and
    dropped from redirects to other hosts; ``use_proxies`` honours ``HTTP(S)_PROXY`` / ``NO_PROXY``.
    """

    error = WebError

    def __init__(
        self,
        config: ClientConfig = ClientConfig(),
        headers: dict[str, str] | None = None,
        secrets: Iterable[str] = (),
        use_proxies: bool = True,
    ):
        limiter = RateLimiter(config.rate_limit)
        super().__init__(config, headers=headers, secrets=secrets, use_proxies=use_proxies, pace=limiter.wait)
