"""The site: sessions and the URL router that turns a request into a :class:`~mem1_gym.webshop.pages.Page`.

One router serves both envs: the Flask app calls :meth:`Site.dispatch` for every request, and the
text env calls it directly with the URL a click would have followed. Pages carry all navigation
state in their URLs (keywords, results page, selected options); a session holds only its goal and,
once bought, the purchase and its reward.

URLs (``sid`` = session id)::

    /<sid>                                   search page
    /<sid>/results?q=<keywords>&page=<n>      results, 10 per page
    /<sid>/item/<asin>?q=&page=&options=<json>            item page with option radios
    /<sid>/item/<asin>/<sub>?q=&page=&options=<json>      description | features | reviews | attributes
    /<sid>/buy/<asin>?options=<json>         buys: computes the reward once, shows the done page

Sessions are bounded (:class:`SiteLimits`): the least recently used one is dropped when more than
``max_sessions`` are open, and one unused for ``session_ttl_s`` expires. A dropped session's URLs
show an "expired" page (status 410) until a new session takes its place. Hostile URLs get a page
with a 4xx status, never an exception: an unknown or malformed URL is "not found" (404), an
``options`` argument that is not a small JSON object of strings is "invalid" (422).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from mem1_gym.webshop.catalog import Product
from mem1_gym.webshop.goals import Goal
from mem1_gym.webshop.pages import Node, Page, clean_text
from mem1_gym.webshop.reward import RewardBreakdown, get_reward
from mem1_gym.webshop.search import RESULTS_PER_PAGE
from mem1_gym.webshop.shop import Shop

SUB_PAGES = ("description", "features", "reviews", "attributes")
BUTTONS = {"back": "Back to Search", "prev": "< Prev", "next": "Next >", "buy": "Buy Now"}


class SiteError(RuntimeError):
    """The site failed while serving a page (a bug or a broken backend, never bad agent input)."""


@dataclass(frozen=True)
class SiteLimits:
    """What one site keeps and accepts (issue 21: sessions piled up and hostile URLs raised)."""

    max_sessions: int = 10_000
    """Open sessions kept; opening one more drops the least recently used (a session is a goal
    reference and a result: 10,000 take a few MB, far more than the envs of one process)."""
    session_ttl_s: float | None = 86_400.0
    """A session unused this long expires (None: never). A day outlasts any pause between two
    steps of an episode, so only abandoned sessions expire."""
    max_sid_chars: int = 64
    """Longest session id accepted in a URL (env ids and the site's own have 10 to 20 characters)."""
    max_options_chars: int = 4_096
    """Longest ``options`` argument (JSON of one value per option group: a few hundred characters)."""
    max_results_page: int = 1_000
    """Largest results page number (WebShop shows 50 hits, 5 pages); larger numbers are capped."""

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.session_ttl_s is not None and not self.session_ttl_s > 0:
            raise ValueError(f"session_ttl_s must be > 0 seconds, or None to keep idle sessions, got {self.session_ttl_s}")
        if min(self.max_sid_chars, self.max_options_chars, self.max_results_page) < 1:
            raise ValueError("max_sid_chars, max_options_chars and max_results_page must be >= 1")


@dataclass
class Session:
    goal: Goal
    last_used: float  # time.monotonic() of the last request (for session_ttl_s)
    purchase: tuple[str, dict[str, str]] | None = None  # (asin, options) once bought
    result: RewardBreakdown | None = field(default=None)


@dataclass(frozen=True)
class _View:
    """Navigation state carried by a URL (``session``: the session it belongs to, not part of URLs)."""

    sid: str
    q: str = ""
    page: int = 1
    options: dict = field(default_factory=dict)
    session: Session | None = field(default=None, compare=False)

    def query(self, **extra: str) -> str:
        params = {"q": self.q, "page": str(self.page)}
        if self.options:
            params["options"] = json.dumps(self.options, ensure_ascii=False, separators=(",", ":"))
        return "?" + urlencode({**params, **extra})


class Site:
    """Sessions of one :class:`Shop` and the router. Thread-safe (the Flask server is threaded)."""

    def __init__(self, shop: Shop, human_split: str = "test", limits: SiteLimits = SiteLimits()):
        self.shop = shop
        self.human_split = human_split
        self.limits = limits
        self.show_attributes = shop.config.show_attributes
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._dropped: OrderedDict[str, None] = OrderedDict()  # evicted or expired ids, as many at most
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- sessions

    def open_session(self, sid: str, goal: Goal) -> str:
        """Start session ``sid`` on ``goal``; returns the URL of its search page."""
        with self._lock:
            self._add(sid, Session(goal, time.monotonic()))
        return f"/{quote(sid)}"

    def close_session(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def __contains__(self, sid: object) -> bool:
        """Whether session ``sid`` is open."""
        with self._lock:
            return sid in self._sessions

    def _add(self, sid: str, session: Session) -> Session:
        """Insert (lock held), dropping the least recently used sessions beyond ``max_sessions``."""
        self._dropped.pop(sid, None)
        self._sessions[sid] = session
        self._sessions.move_to_end(sid)
        while len(self._sessions) > self.limits.max_sessions:
            self._drop(next(iter(self._sessions)))
        return session

    def _drop(self, sid: str) -> None:
        """Forget a session but remember that it existed (lock held), so its URLs say "expired"."""
        del self._sessions[sid]
        self._dropped[sid] = None
        while len(self._dropped) > self.limits.max_sessions:
            self._dropped.popitem(last=False)

    def _lookup(self, sid: str, path: str) -> Session | Page:
        """The session of a request (used now), or the page that says why there is none.

        Unknown ids (a human typing a URL) get a session with a goal of ``human_split``:
        ``fixed_<n>`` is goal n, as in the original, anything else a goal chosen by its hash."""
        now = time.monotonic()
        with self._lock:
            ttl = self.limits.session_ttl_s
            while ttl is not None and self._sessions and next(iter(self._sessions.values())).last_used < now - ttl:
                self._drop(next(iter(self._sessions)))
            session = self._sessions.get(sid)
            if session is not None:
                session.last_used = now
                self._sessions.move_to_end(sid)
                return session
            if sid in self._dropped:
                return _expired(path, self.limits)
            goals = self.shop.goals[self.human_split]
            if len(sid) > self.limits.max_sid_chars:
                return _not_found(path, f"session ids have at most {self.limits.max_sid_chars} characters")
            if sid.startswith("fixed_"):
                number = sid[6:]
                # isdigit() alone accepts "²", and int() of thousands of digits raises (issue 21)
                if not (number.isascii() and number.isdigit() and len(number) < 10 and int(number) < len(goals)):
                    return _not_found(path, f"fixed_<n> needs a goal number n in 0..{len(goals) - 1}")
                index = int(number)
            else:
                index = int(hashlib.sha1(sid.encode("utf-8", "surrogatepass")).hexdigest(), 16) % len(goals)
            return self._add(sid, Session(goals[index], now))

    # ----------------------------------------------------------------- routing

    def dispatch(self, path: str, args: Mapping[str, str]) -> Page:
        """The page at ``path`` with query arguments ``args``; a not-found, invalid or expired page
        (status 404, 422, 410) for URLs no link of the site leads to."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            return _not_found(path)
        session = self._lookup(parts[0], path)
        if isinstance(session, Page):
            return session
        q = " ".join(str(args.get("q", "")).split())
        view = _View(parts[0], q, _page_number(args.get("page"), self.limits.max_results_page), {}, session)
        rest = parts[1:]
        if not rest:
            return self.search_page(view)
        if rest == ["results"]:
            return self.results_page(view)
        if len(rest) in (2, 3) and rest[0] in ("item", "buy") and rest[1] in self.shop.catalog:
            product = self.shop.catalog[rest[1]]
            options = _options(product, args.get("options"), self.limits.max_options_chars)
            if options is None:
                return _invalid(path, "options must be a JSON object of option group -> value, "
                                      f"at most {self.limits.max_options_chars} characters")
            view = dataclasses.replace(view, options=options)
            if rest[0] == "buy" and len(rest) == 2:
                return self.done_page(view, product)
            if len(rest) == 2:
                return self.item_page(view, product)
            if rest[2] in SUB_PAGES and (rest[2] != "attributes" or self.show_attributes):
                return self.sub_page(view, product, rest[2])
        return _not_found(path)

    # ----------------------------------------------------------------- pages

    def _header(self, view: _View) -> list[Node]:
        return [Node("heading", "Instruction:"), Node("text", clean_text(view.session.goal.instruction))]

    def search_page(self, view: _View) -> Page:
        nodes = [Node("title", "WebShop"), *self._header(view), Node("search", "Search")]
        return Page("search", f"/{view.sid}", tuple(nodes), search_url=f"/{view.sid}/results")

    def results_page(self, view: _View) -> Page:
        asins = self.shop.search.search(view.q)
        last = max(1, math.ceil(len(asins) / RESULTS_PER_PAGE))
        nodes = [*self._header(view), Node("button", BUTTONS["back"], href=f"/{view.sid}")]
        nodes.append(Node("text", f"Page {view.page} (Total results: {len(asins)})"))
        if view.page > 1:
            nodes.append(Node("button", BUTTONS["prev"], href=self._results_url(view, view.page - 1)))
        if view.page < last:  # the original always showed "Next >", paging into empty pages
            nodes.append(Node("button", BUTTONS["next"], href=self._results_url(view, view.page + 1)))
        start = (view.page - 1) * RESULTS_PER_PAGE
        for asin in asins[start : start + RESULTS_PER_PAGE]:
            product = self.shop.catalog[asin]
            nodes.append(Node("product", asin, href=f"/{view.sid}/item/{asin}" + _View(view.sid, view.q, view.page).query()))
            nodes += [Node("text", clean_text(product.title)), Node("text", product.price_text)]
        return Page("results", self._results_url(view, view.page), tuple(nodes))

    def _results_url(self, view: _View, page: int) -> str:
        return f"/{view.sid}/results" + _View(view.sid, view.q, page).query()

    def _item_nav(self, view: _View, prev_href: str) -> list[Node]:
        return [*self._header(view), Node("button", BUTTONS["back"], href=f"/{view.sid}"),
                Node("button", BUTTONS["prev"], href=prev_href)]

    def item_page(self, view: _View, product: Product) -> Page:
        base = f"/{view.sid}/item/{product.asin}"
        nodes = self._item_nav(view, self._results_url(view, view.page))
        for group, values in product.options:
            nodes.append(Node("heading", clean_text(group)))
            for value in values:
                chosen = _View(view.sid, view.q, view.page, {**view.options, group: value})
                nodes.append(Node("option", value, href=base + chosen.query(), group=group, checked=view.options.get(group) == value))
        nodes += [Node("text", clean_text(product.title)), Node("text", f"Price: {product.price_text}"),
                  Node("text", f"Rating: {product.rating_text}")]
        for sub in SUB_PAGES if self.show_attributes else SUB_PAGES[:3]:
            nodes.append(Node("button", sub.capitalize(), href=f"{base}/{sub}" + view.query()))
        nodes.append(Node("button", BUTTONS["buy"], href=f"/{view.sid}/buy/{product.asin}" + view.query()))
        return Page("item", base + view.query(), tuple(nodes))

    def sub_page(self, view: _View, product: Product, sub: str) -> Page:
        base = f"/{view.sid}/item/{product.asin}"
        nodes = self._item_nav(view, base + view.query())
        if sub == "description":
            texts = [product.description]
        elif sub == "features":
            texts = list(product.bullet_points)
        elif sub == "reviews":
            texts = [t for r in product.reviews for t in (r.title, f"Rating: {r.rating} out of 5", r.body)]
        else:
            texts = [*product.attributes, f"Category: {product.category}", f"Query: {product.query}",
                     f"Product category: {product.product_category}"]
        nodes += [Node("text", clean_text(t)) for t in texts]
        return Page(sub, f"{base}/{sub}" + view.query(), tuple(nodes))

    def done_page(self, view: _View, product: Product) -> Page:
        session = view.session
        with self._lock:  # the reward is computed once per session, like the original
            if session.result is None:
                session.purchase = (product.asin, dict(view.options))
                session.result = get_reward(product, session.goal, product.price, view.options)
        asin, options = session.purchase
        bought = ", ".join(f"{g}: {v}" for g, v in options.items()) or "none"
        nodes = [Node("title", "Thank you for shopping with us!"), Node("text", f"You bought {asin}"),
                 Node("text", f"Options: {clean_text(bought)}"), Node("heading", "Your score (min 0.0, max 1.0)"),
                 Node("reward", repr(session.result.reward), data=json.dumps(session.result.as_dict()))]
        return Page("done", f"/{view.sid}/buy/{asin}", tuple(nodes), reward_info=session.result.as_dict())

def _message_page(name: str, status: int, path: str, title: str, message: str) -> Page:
    path = path[:200]  # a hostile URL can be 64 KB long
    return Page(name, path, (Node("title", title), Node("text", clean_text(message.format(path=path)))), status=status)


def _not_found(path: str, why: str = "") -> Page:
    return _message_page("not_found", 404, path, "Page not found", "There is no page at {path}. " + why)


def _invalid(path: str, why: str) -> Page:
    return _message_page("invalid", 422, path, "Invalid request", "The shop cannot show {path}: " + why + ".")


def _expired(path: str, limits: SiteLimits) -> Page:
    why = f"more than {limits.max_sessions} sessions were opened after it"
    if limits.session_ttl_s is not None:
        why += f", or it was unused for {limits.session_ttl_s:g} s"
    message = "The session of {path} has expired (" + why + "). Open / for a new one (an env: reset())."
    return _message_page("expired", 410, path, "Session expired", message)


def _page_number(raw, largest: int) -> int:
    try:
        return min(max(1, int(raw)), largest)
    except (TypeError, ValueError):  # int() also refuses more than 4,300 digits
        return 1


def _options(product: Product, raw: str | None, max_chars: int) -> dict[str, str] | None:
    """Selected options from a URL, keeping only values the product offers; None if malformed."""
    if not raw:
        return {}
    if len(raw) > max_chars:
        return None
    try:
        wanted = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested a thousand deep
        return None
    if not isinstance(wanted, dict) or not all(isinstance(v, str) for v in wanted.values()):
        return None
    offered = dict(product.options)
    return {g: v for g, v in wanted.items() if v in offered.get(g, ())}


_SITES: dict[int, Site] = {}
_SITES_LOCK = threading.Lock()


def get_site(shop: Shop) -> Site:
    """The process-wide :class:`Site` of ``shop``: text envs and the web server share its sessions."""
    with _SITES_LOCK:
        if id(shop) not in _SITES:
            _SITES[id(shop)] = Site(shop)
        return _SITES[id(shop)]
