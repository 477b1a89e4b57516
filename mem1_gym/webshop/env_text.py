"""``MEM1-WebShop-Text``: the WebShop site rendered in process, no browser and no HTTP."""

from __future__ import annotations

import weakref
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mem1_gym.webshop.env_base import Frontend, PageView, WebShopEnvBase, split_kwargs
from mem1_gym.webshop.goals import Goal
from mem1_gym.webshop.pages import Page
from mem1_gym.webshop.site import Site, SiteError, get_site


def page_view(page: Page) -> PageView:
    return PageView(page.name, page.url, page.text, tuple(page.raw_clickables()), bool(page.search_url), page.reward_info)


class TextFrontend(Frontend):
    """Follows links by calling the site's router with the URL a browser would have requested."""

    def __init__(self, site: Site):
        self.site = site
        self._sid = ""
        self._page: Page | None = None

    def _go(self, url: str, args: dict[str, str] | None = None) -> PageView:
        parts = urlsplit(url)
        args = {**dict(parse_qsl(parts.query, keep_blank_values=True)), **(args or {})}
        try:
            self._page = self.site.dispatch(parts.path, args)
        except Exception as err:  # a broken backend or a bug in the site: surfaced, never swallowed
            raise SiteError(f"the shop site failed on {parts.path}: {type(err).__name__}: {err}") from err
        return page_view(self._page)

    def start(self, sid: str, goal: Goal) -> PageView:
        self._sid = sid
        return self._go(self.site.open_session(sid, goal))

    def search(self, keywords: str) -> PageView:
        if not self._page.search_url:  # search from any page: the search page first, as the browser does
            self._go(f"/{self._sid}")
        return self._go(self._page.search_url, {"q": keywords, "page": "1"})

    def click(self, label: str) -> PageView:
        return self._go(self._page.clickable_targets()[label].href)

    def close(self) -> None:
        if self._sid:
            self.site.close_session(self._sid)


class WebShopTextEnv(WebShopEnvBase):
    """WebShop (Yao et al., 2022) as text: search a shop, open products, pick options, buy.

    ## Description
    The agent gets a shopping instruction ("i need a 3 ounce deodorant for sensitive skin with
    scent: bright citrus, and price lower than 30.00 dollars"), searches the catalogue, opens
    products, selects options and buys; the reward scores the purchase against the goal. The pages
    are those of the ``MEM1-WebShop`` site, rendered in process from the same page model: for the
    same actions this env returns the same observations, available actions and rewards as the
    browser env, hundreds of times faster. Default data: a generated 1,000-product catalogue in
    WebShop's five categories with ~6,800 goals; WebShop's own files load by path.

    ## Action Space
    :class:`~mem1_gym.core.UnicodeText`. A MEM1 turn
    ``<think>…</think><summary>memory</summary><answer>search[keywords]</answer>`` (or
    ``click[label]``; the first complete ``<answer>`` block counts), or a bare ``search[...]`` /
    ``click[...]``. Labels are case-insensitive. Unparsable or unavailable actions are not errors:
    the page stays, the observation says why and ``info["valid_action"]`` is False.

    ## Observation Space
    :class:`~mem1_gym.core.UnicodeText`. ``reset``: the task prompt (protocol, turn budget,
    instruction) followed by the first state. ``step``: ``"\\n\\n<state>\\n[HINT]…[/HINT]\\n<page
    text: visible texts joined by ' [SEP] '>\\nAvailable actions:\\nsearch[<keywords>]\\nclick[…]\\n</state>\\n\\n"``,
    with a message line after the hint when an action was rejected or an option selected.

    ## Rewards
    0 until the purchase, then ``reward_scale`` x WebShop's score in [0, 1]: type match x (matched
    attributes + matched options + price under the cap) / (attributes + options + 1); fuzzy
    match threshold 85, strings processed as the original's matcher does (:mod:`mem1_gym.webshop.reward`). ``-invalid_action_penalty`` for a rejected action.

    ## Starting State
    The search page of a goal drawn uniformly from the split by the seeded generator, or
    ``options["task_index"]`` (alias ``options["goal_index"]``): goal ``env.unwrapped.protocol.task_ids[i]``.
    The same seed gives the same goal, prices and price cap.

    ## Episode End
    * Termination: ``click[buy now]`` on a product page.
    * Truncation: ``max_turns`` actions (default 15) without a purchase, or the shop dropped the
      session (``info["page"] == "expired"``: more than ``SiteLimits.max_sessions`` sessions opened
      after it in this process, or a day unused); ``reset()`` opens a new one.

    ## Information
    Every step: ``turn``, ``turns_left``, ``max_turns``, ``goal_id``, ``goal_index``, ``split``,
    ``action_type`` ("search", "click", "invalid"; "" after reset), ``action`` (canonical, e.g.
    "click[buy now]"), ``valid_action``, ``error`` (why it was rejected; ""), ``page`` (search,
    results, item, description, features, reviews, attributes, done, expired), ``url``,
    ``available_actions``, ``has_think``, ``has_summary``, ``consumed_chars``, ``browser_error``
    (always False here), ``injected`` (the exact text injected: the observation). After the purchase
    also the breakdown: ``reward``, ``r_type``, ``query_match``, ``category_match``, ``title_score``,
    ``r_att``, ``n_att``, ``w_att``, ``r_option`` (None without goal options), ``n_option``,
    ``w_option``, ``r_price``, ``w_price``; and ``success`` (reward == 1; False on truncation).

    ## Arguments
    :class:`~mem1_gym.webshop.env_base.WebShopConfig` and
    :class:`~mem1_gym.webshop.shop.ShopConfig` fields as flat kwargs, e.g.
    ``gym.make("MEM1-WebShop-Text", split="test", max_turns=20, products_path="items_shuffle_1000.json",
    attributes_path="items_ins_v2_1000.json")``.
    ``close()`` ends the env's session on the shared site; it is idempotent and also runs when the
    env is garbage-collected.

    ## Example
    >>> import gymnasium as gym, mem1_gym
    >>> env = gym.make("MEM1-WebShop-Text")
    >>> obs, info = env.reset(seed=0)
    >>> info["page"], info["available_actions"]
    ('search', ['search[<keywords>]'])
    >>> turn = "<think>.</think><summary>.</summary><answer>search[bed frame under bed storage]</answer>"  # seed 0's goal
    >>> obs, reward, terminated, truncated, info = env.step(turn)
    >>> info["page"], info["valid_action"], "click[next >]" in info["available_actions"]
    ('results', True, True)
    >>> env.step("click[buy now]")[4]["valid_action"]
    False
    >>> env.close()
    """

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        config, _ = split_kwargs(kwargs)
        super().__init__(config, render_mode)
        self._text = TextFrontend(get_site(self.shop))
        # The finalizer holds the frontend, never the env: a dropped env still frees its session
        self._finalizer = weakref.finalize(self, self._text.close)

    def _frontend(self) -> Frontend:
        return self._text

    def close(self) -> None:
        self._closed = True
        self._finalizer()
