"""Search providers behind one interface: the local mini-web, Serper (Google results) and Brave Search.

A provider turns a query into ranked :class:`SearchResult` (title, URL, snippet) and says which
pages ``<open>`` may fetch (:attr:`SearchProvider.url_policy`). API keys come only from the
environment (``SERPER_API_KEY``, ``BRAVE_API_KEY``); they are sent in request headers, never in
URLs (urllib3 logs URLs), and redacted from every error. SerpAPI was not chosen as the second
provider for that reason: it takes the key as a query parameter. A key goes only to its provider's
API: it rides on the search request alone (pages that ``<open>`` fetches never carry it), and a
redirect of that request to another host drops it (issue 21).

Wire formats (what the clients send and read):

* Serper: ``POST https://google.serper.dev/search``, header ``X-API-KEY``, body ``{"q", "num"}``;
  answer ``{"organic": [{"title", "link", "snippet", "position"}, ...], ...}``.
  The mini-web speaks the same format, so one client serves both.
* Brave: ``GET https://api.search.brave.com/res/v1/web/search?q=&count=`` (count <= 20), headers
  ``X-Subscription-Token`` and ``Accept: application/json``; answer
  ``{"web": {"results": [{"title", "url", "description"}, ...]}, ...}`` with ``<strong>`` in descriptions.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mem1_gym.web.client import ClientConfig, WebClient, WebError
from mem1_gym.web.extract import strip_tags
from mem1_gym.web.fetch import Page, UrlPolicy, fetch_page, origin

SERPER_URL = "https://google.serper.dev/search"
MINIWEB_HOST = "miniweb.test"
BRAVE_URL = "https://api.search.brave.com/res/v1/web/search"
_BRAVE_MAX_COUNT = 20  # the API rejects larger counts


@dataclass(frozen=True)
class SearchResult:
    """One ranked result, as the agent sees it."""

    title: str
    url: str
    snippet: str
    position: int  # 1-based rank


class SearchProvider(abc.ABC):
    """Web search for one env: :meth:`search`, :meth:`open`, :meth:`close`."""

    name = "provider"
    live = True
    """Results come from the changing real web (episodes are then not reproducible)."""
    default_rate_limit: float | None = None
    """Requests per second when the env's ``rate_limit`` is None."""
    _route = None  # maps an allowed URL to the URL requested (see MiniWebProvider); None: itself
    endpoint = ""  # the search API's URL, set by each provider

    def __init__(self, client: WebClient, url_policy: UrlPolicy, api_headers: dict[str, str] | None = None):
        self.client = client
        self.url_policy = url_policy
        self._api_headers = dict(api_headers or {})  # the key: sent with searches, never with pages

    @abc.abstractmethod
    def search(self, query: str, k: int) -> list[SearchResult]:
        """At most ``k`` results, best first; :class:`WebError` when the provider fails."""

    def open(self, url: str, *, max_bytes: int, max_chars: int, max_links: int) -> Page:
        """Fetch and extract ``url`` if :attr:`url_policy` allows it; :class:`WebError` otherwise."""
        deadline = 2 * self.client.config.timeout  # a whole download, however slowly it trickles
        return fetch_page(self.client, url, self.url_policy, max_bytes=max_bytes, max_chars=max_chars,
                          max_links=max_links, deadline=deadline, route=self._route)

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:  # keys live in the API headers and are never shown
        return f"{type(self).__name__}()"

    def _api_json(self, method: str, key_hint: str, **kwargs: Any) -> Any:
        """Call the search API (with the key) and return its JSON, or a :class:`WebError` that says what to fix."""
        reply = self.client.request(method, self.endpoint, what="search", headers=self._api_headers, **kwargs)
        if reply.status in (401, 403):
            raise WebError(f"{self.name} refused the API key (HTTP {reply.status}); check {key_hint}")
        if reply.status != 200:
            raise WebError(f"{self.name} answered HTTP {reply.status}: {self.client.redact(reply.text[:200])!r}")
        return self.client.json(reply, f"{self.name} search")


class SerperProvider(SearchProvider):
    """Google results through serper.dev (the provider of MEM1's web QA, reference/mem1.md §4.5)."""

    name = "serper"
    key_env = "SERPER_API_KEY"
    default_rate_limit = 5.0  # Serper's plans allow more; 5/s per env keeps a 16-env run near 80/s

    def __init__(self, config: ClientConfig, endpoint: str | None = None):
        key = _key(self.key_env, self.name)
        super().__init__(WebClient(config, secrets=(key,)), UrlPolicy(), api_headers={"X-API-KEY": key})
        self.endpoint = endpoint or SERPER_URL

    def search(self, query: str, k: int) -> list[SearchResult]:
        body = self._api_json("POST", f"the {self.key_env} environment variable", json={"q": query, "num": k})
        organic = body.get("organic") if isinstance(body, dict) else None
        if organic is None:
            return []  # Serper omits "organic" when nothing matched
        if not isinstance(organic, list):
            raise WebError(f"{self.name} sent 'organic' that is not a list")
        return _ranked(((r.get("title"), r.get("link"), r.get("snippet")) for r in organic if isinstance(r, dict)), k)


class MiniWebProvider(SerperProvider):
    """The local mini-web (:mod:`mem1_gym.web.server`): Serper's format, no key, only its own pages.

    The agent sees the mini-web at the stable address ``http://miniweb.test`` (a reserved name,
    RFC 6761), whatever port the server got: observations are then the same in every process and
    on every machine. Requests go to ``base_url`` with ``Host: miniweb.test``; the server writes its
    links for its configured ``public_url`` (``http://miniweb.test`` by default), never for the Host
    header of a request.
    """

    name = "miniweb"
    live = False
    default_rate_limit = None  # loopback: nothing to protect, and the benchmark needs every request

    def __init__(self, config: ClientConfig, base_url: str):
        _split(base_url)  # fail now on a malformed URL
        # Not SerperProvider.__init__: there is no key to read, and only the mini-web's own pages open.
        client = WebClient(config, headers={"Host": MINIWEB_HOST}, use_proxies=False)
        SearchProvider.__init__(self, client, UrlPolicy(origins=(origin("http", MINIWEB_HOST, None),)))
        self.base_url = base_url.rstrip("/")
        self.endpoint = self.base_url + "/search"

    def _route(self, url: str) -> str:
        parts = urlsplit(url)
        return self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")


class BraveProvider(SearchProvider):
    """Brave Search's independent web index (free plan: 1 request/s)."""

    name = "brave"
    key_env = "BRAVE_API_KEY"
    default_rate_limit = 1.0  # the free plan's limit; raise it with rate_limit= on a paid plan

    def __init__(self, config: ClientConfig, endpoint: str | None = None):
        key = _key(self.key_env, self.name)
        headers = {"X-Subscription-Token": key, "Accept": "application/json"}
        super().__init__(WebClient(config, secrets=(key,)), UrlPolicy(), api_headers=headers)
        self.endpoint = endpoint or BRAVE_URL

    def search(self, query: str, k: int) -> list[SearchResult]:
        params = {"q": query, "count": min(k, _BRAVE_MAX_COUNT)}
        body = self._api_json("GET", f"the {self.key_env} environment variable", params=params)
        web = body.get("web") if isinstance(body, dict) else None
        results = web.get("results") if isinstance(web, dict) else None
        if not isinstance(results, list):
            return []  # Brave omits "web" when nothing matched
        rows = ((r.get("title"), r.get("url"), r.get("description")) for r in results if isinstance(r, dict))
        return _ranked(((strip_tags(_text(t)), u, strip_tags(_text(d))) for t, u, d in rows), k)


PROVIDERS = {"miniweb": MiniWebProvider, "serper": SerperProvider, "brave": BraveProvider}


def _ranked(rows, k: int) -> list[SearchResult]:
    """Results with a string URL, renumbered 1..k (providers skip positions for ads and widgets)."""
    results = []
    for title, url, snippet in rows:
        if isinstance(url, str) and url and len(results) < k:
            results.append(SearchResult(_text(title) or url, url, _text(snippet), len(results) + 1))
    return results


def _text(value: Any) -> str:
    """A provider's text field; anything else (null, a number, an object) reads as empty."""
    return value if isinstance(value, str) else ""


def _key(env_var: str, name: str) -> str:
    key = os.environ.get(env_var, "").strip()
    if not key:
        raise ValueError(
            f"search_provider={name!r} needs an API key in the {env_var} environment variable "
            f"(export {env_var}=...); keys are never taken from code or kwargs. "
            f"Use search_provider='miniweb' (the default) to run offline"
        )
    return key


def _split(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"search_url must look like http://127.0.0.1:8030, got {url!r}")
    return parts.scheme, parts.hostname, parts.port
