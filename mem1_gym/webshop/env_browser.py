"""``MEM1-WebShop``: the WebShop site served over HTTP and driven through Selenium + headless Chromium."""

from __future__ import annotations

import json
import time
import weakref
from typing import Any

from mem1_gym.extras import require
from mem1_gym.webshop.browser import Browser, BrowserConfig, browser_errors
from mem1_gym.webshop.env_base import (
    Frontend,
    FrontendFault,
    PageView,
    WebShopEnvBase,
    split_kwargs,
)
from mem1_gym.webshop.goals import Goal
from mem1_gym.webshop.pages import PAGE_SEPARATOR, label_clickables
from mem1_gym.webshop.server import ShopServer, acquire_server, release_server
from mem1_gym.webshop.site import SiteError, get_site


class BrowserFrontend(Frontend):
    """Real DOM actions: type into ``#search_input`` and press Enter, click links, buttons and radios."""

    def __init__(self, browser: Browser, server: ShopServer):
        self.browser, self.server = browser, server
        self._sid = ""
        self._page: dict[str, Any] = {}
        self._errors = browser_errors()

    def _read(self, old_nonce: str | None) -> PageView:
        """Read the page once it is a new one (chromedriver normally waits for the navigation itself)."""
        deadline = time.monotonic() + self.browser.config.page_load_timeout
        page = self.browser.read()
        while page["nonce"] == old_nonce and time.monotonic() < deadline:
            time.sleep(0.005)
            page = self.browser.read()
        if page["nonce"] == old_nonce:
            raise FrontendFault(f"no new page within {self.browser.config.page_load_timeout} s")
        self._page = page
        if page["page"] == "error":
            path = page["path"].split("?")[0]
            raise SiteError(f"the shop site failed on {path}: {self.server.failure(path) or 'see the server log'}")
        info = json.loads(page["info"]) if page["info"] else None
        clickables = tuple((kind, text, group) for kind, text, group in page["clickables"])
        return PageView(page["page"], page["path"], PAGE_SEPARATOR.join(page["texts"]), clickables,
                        page["searchInput"] is not None, info)

    def _do(self, action, *args) -> PageView:
        """Run a DOM action and read the resulting page; browser failures become FrontendFault."""
        old = self._page.get("nonce")
        try:
            action(*args)
            return self._read(old)
        except self._errors as err:
            first_line = (str(err).strip().splitlines() or [""])[0]
            raise FrontendFault(f"{type(err).__name__}: {first_line}") from err

    def start(self, sid: str, goal: Goal) -> PageView:
        self._sid = sid
        return self._do(self.browser.driver.get, self.server.url + self.server.site.open_session(sid, goal))

    def search(self, keywords: str) -> PageView:
        from selenium.webdriver.common.keys import Keys

        if self._page.get("searchInput") is None:  # search from any page: the search page first
            self._do(self.browser.driver.get, f"{self.server.url}/{self._sid}")
        # Typed key by key, then Enter submits the form: one WebDriver command.
        return self._do(self._page["searchInput"].send_keys, keywords + Keys.ENTER)

    def click(self, label: str) -> PageView:
        from selenium.common.exceptions import ElementNotInteractableException

        labels = label_clickables([tuple(c) for c in self._page["clickables"]])
        element = self._page["elements"][labels.index(label)]

        def click() -> None:
            if not self.browser.config.native_clicks:
                self.browser.driver.execute_script("arguments[0].click();", element)
                return
            try:
                element.click()
            except ElementNotInteractableException:  # a radio hidden by a custom theme: click via the DOM
                self.browser.driver.execute_script("arguments[0].click();", element)

        return self._do(click)

    def close(self) -> None:
        if self._sid:
            self.server.site.close_session(self._sid)


class _Resources:
    """The browser and the server reference of one env, released by ``close()``, by garbage
    collection or at interpreter exit (a ``weakref.finalize`` holds this, never the env)."""

    def __init__(self, server: ShopServer):
        self.server: ShopServer | None = server
        self.browser: Browser | None = None

    def release(self) -> None:
        if self.browser is not None:
            self.browser.quit()
            self.browser = None
        if self.server is not None:
            release_server(self.server)
            self.server = None


class WebShopEnv(WebShopEnvBase):
    """WebShop (Yao et al., 2022) in a real browser: the env serves the site and drives Chromium.

    ## Description
    The same task as ``MEM1-WebShop-Text`` (see its docstring for the shop, the goals and the
    reward), played on real HTML pages: the env starts the Flask site on a free 127.0.0.1 port (one
    server per shop, shared by every env of the process) and a headless Chromium through Selenium
    (Debian ``chromium`` + ``chromium-driver``; no Selenium Manager downloads). ``search[...]``
    types into the search box and presses Enter, ``click[...]`` clicks the link, button or radio
    (a DOM click; ``native_clicks=True`` for WebDriver's pointer click);
    the observation is read back from the DOM. Same actions -> the same observations, available
    actions and rewards as the text env. Chromium starts at the first ``reset`` (about 1 s).

    ## Action Space
    :class:`~mem1_gym.core.UnicodeText`, as ``MEM1-WebShop-Text``.

    ## Observation Space
    :class:`~mem1_gym.core.UnicodeText`, as ``MEM1-WebShop-Text``.

    ## Rewards
    As ``MEM1-WebShop-Text`` (the done page carries the score; the breakdown is read from it).

    ## Starting State
    As ``MEM1-WebShop-Text``: the search page of a seeded goal, or ``options["task_index"]`` (alias ``goal_index``).

    ## Episode End
    * Termination: ``click[buy now]``.
    * Truncation: ``max_turns`` actions without a purchase, or a browser failure
      (``info["browser_error"]``): the browser died or hung past ``command_timeout`` /
      ``page_load_timeout``. The step then returns an observation that says so; the next ``reset``
      kills what is left of the old browser and starts a fresh one (also when the browser died
      between episodes).

    ## Information
    The keys of ``MEM1-WebShop-Text``; ``browser_error`` is True on the step where the browser failed.
    A failure of the site itself (it raised while serving a page) raises
    :class:`~mem1_gym.webshop.site.SiteError` with the site's message, as in the text env.

    ## Arguments
    The text env's kwargs plus :class:`~mem1_gym.webshop.browser.BrowserConfig` fields
    (``chromium_path``, ``chromedriver_path``, ``headless``, ``page_load_timeout``, ``command_timeout``,
    ``native_clicks``).
    ``close()`` quits the browser and, with the last env of the process, stops the server; it is
    idempotent and also runs when the env is garbage-collected or the interpreter exits.

    ## Example
    >>> import gymnasium as gym, mem1_gym
    >>> env = gym.make("MEM1-WebShop")
    >>> obs, info = env.reset(seed=0)
    >>> info["page"], info["url"].startswith("/")
    ('search', True)
    >>> obs, reward, terminated, truncated, info = env.step("<answer>search[bed frame under bed storage]</answer>")
    >>> info["page"], info["valid_action"]
    ('results', True)
    >>> env.close()
    """

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        require("web", "werkzeug", "flask", "selenium", purpose='MEM1-WebShop (a Flask site driven by Chromium)')
        config, (browser_config,) = split_kwargs(kwargs, BrowserConfig)
        super().__init__(config, render_mode)
        self.browser_config = browser_config
        self._resources = _Resources(acquire_server(get_site(self.shop)))
        self._finalizer = weakref.finalize(self, self._resources.release)
        self._browser_frontend: BrowserFrontend | None = None
        self._browser_broken = False  # Chromium starts at the first reset (BrowserConfig checked the binaries)

    def _frontend(self) -> Frontend:
        if self._closed:
            raise RuntimeError("this WebShop env is closed; make a new one")
        if self._resources.browser is None:
            self._resources.browser = Browser(self.browser_config)
            self._browser_frontend = BrowserFrontend(self._resources.browser, self._resources.server)
        return self._browser_frontend

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        if self._browser_broken and self._resources.browser is not None:
            self._resources.browser.kill()  # a browser that failed is never reused
            self._resources.browser = None
        self._browser_broken = False
        try:
            return super().reset(seed=seed, options=options)
        except FrontendFault:  # the browser died between episodes: one fresh start, same goal
            self._resources.browser.kill()
            self._resources.browser = None
            return super().reset(seed=seed, options={**(options or {}), "goal_index": self._goal_index})

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        result = super().step(action)
        self._browser_broken = self._browser_broken or result[4]["browser_error"]
        return result

    @property
    def browser_pids(self) -> list[int]:
        """chromedriver's pid (Chromium runs in its process group): for tests and fault injection."""
        return self._resources.browser.pids if self._resources.browser is not None else []

    def close(self) -> None:
        if not self._closed and self._browser_frontend is not None:
            self._browser_frontend.close()
        self._closed = True
        self._finalizer()
