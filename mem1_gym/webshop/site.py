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
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
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


@dataclass
class Session:
    goal: Goal
    purchase: tuple[str, dict[str, str]] | None = None  # (asin, options) once bought
    result: RewardBreakdown | None = field(default=None)


@dataclass(frozen=True)
class _View:
    """Navigation state carried by a URL."""

    sid: str
    q: str = ""
    page: int = 1
    options: dict = field(default_factory=dict)

    def query(self, **extra: str) -> str:
        params = {"q": self.q, "page": str(self.page)}
        if self.options:
            params["options"] = json.dumps(self.options, ensure_ascii=False, separators=(",", ":"))
        return "?" + urlencode({**params, **extra})


class Site:
    """Sessions of one :class:`Shop` and the router. Thread-safe (the Flask server is threaded)."""

    def __init__(self, shop: Shop, human_split: str = "test"):
        self.shop = shop
        self.human_split = human_split
        self.show_attributes = shop.config.show_attributes
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- sessions

    def open_session(self, sid: str, goal: Goal) -> str:
        """Start session ``sid`` on ``goal``; returns the URL of its search page."""
        with self._lock:
            self._sessions[sid] = Session(goal)
        return f"/{quote(sid)}"

    def close_session(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def session(self, sid: str) -> Session:
        """The session; unknown ids (a human typing a URL) get a goal of ``human_split``:
        ``fixed_<n>`` is goal n, as in the original, anything else a goal chosen by its hash."""
        with self._lock:
            if sid not in self._sessions:
                goals = self.shop.goals[self.human_split]
                if sid.startswith("fixed_") and sid[6:].isdigit():
                    index = int(sid[6:]) % len(goals)
                else:
                    index = int(hashlib.sha1(sid.encode()).hexdigest(), 16) % len(goals)
                self._sessions[sid] = Session(goals[index])
            return self._sessions[sid]

    # ----------------------------------------------------------------- routing

    def dispatch(self, path: str, args: Mapping[str, str]) -> Page:
        """The page at ``path`` with query arguments ``args``; a not-found page for unknown URLs."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            return self._not_found(path)
        view = _View(parts[0], " ".join(str(args.get("q", "")).split()), _page_number(args.get("page")), {})
        rest = parts[1:]
        if not rest:
            return self.search_page(view)
        if rest == ["results"]:
            return self.results_page(view)
        if len(rest) in (2, 3) and rest[0] in ("item", "buy") and rest[1] in self.shop.catalog:
            product = self.shop.catalog[rest[1]]
            view = _View(view.sid, view.q, view.page, _options(product, args.get("options")))
            if rest[0] == "buy" and len(rest) == 2:
                return self.done_page(view, product)
            if len(rest) == 2:
                return self.item_page(view, product)
            if rest[2] in SUB_PAGES and (rest[2] != "attributes" or self.show_attributes):
                return self.sub_page(view, product, rest[2])
        return self._not_found(path)

    # ----------------------------------------------------------------- pages

    def _header(self, view: _View) -> list[Node]:
        return [Node("heading", "Instruction:"), Node("text", clean_text(self.session(view.sid).goal.instruction))]

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
        session = self.session(view.sid)
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

    def _not_found(self, path: str) -> Page:
        nodes = [Node("title", "Page not found"), Node("text", clean_text(f"There is no page at {path}."))]
        return Page("not_found", path, tuple(nodes))


def _page_number(raw) -> int:
    try:
        return max(1, int(raw))
    except (TypeError, ValueError):
        return 1


def _options(product: Product, raw: str | None) -> dict[str, str]:
    """Selected options from a URL, keeping only values the product offers."""
    try:
        wanted = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    if not isinstance(wanted, dict):
        return {}
    offered = dict(product.options)
    return {g: v for g, v in wanted.items() if isinstance(v, str) and v in offered.get(g, ())}


_SITES: dict[int, Site] = {}
_SITES_LOCK = threading.Lock()


def get_site(shop: Shop) -> Site:
    """The process-wide :class:`Site` of ``shop``: text envs and the web server share its sessions."""
    with _SITES_LOCK:
        if id(shop) not in _SITES:
            _SITES[id(shop)] = Site(shop)
        return _SITES[id(shop)]
