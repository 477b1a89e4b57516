"""A headless Chromium driven by Selenium, with a hard kill so nothing outlives ``close()``.

Selenium is pointed at Debian's ``/usr/bin/chromedriver`` and ``/usr/bin/chromium`` with
``SE_OFFLINE=true``, so Selenium Manager never downloads anything (SETUP-NOTES, Browser).
chromedriver runs in its own session (``start_new_session``), and Chromium's processes inherit its
process group: :meth:`Browser.kill` sends SIGKILL to the whole group and reaps chromedriver, which
works even when the browser hangs and ``quit()`` would block.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

STARTUP_TIMEOUT = 30.0  # seconds a freshly started browser may take for its first page

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--disable-breakpad", "--disable-crash-reporter", "--window-size=1280,1000",
)

# Reads the page the way WebShop's "text" mode parses HTML: every non-empty text node of the body
# (outside script/style), trimmed, plus the clickables in document order, in one round trip.
READ_PAGE_JS = """
const skip = new Set(["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE"]);
const texts = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  if (skip.has(n.parentNode.nodeName)) continue;
  const t = n.nodeValue.trim();
  if (t) texts.push(t);
}
const clickables = [], elements = [];
for (const el of document.querySelectorAll("a.btn, a.product-link, input[type=radio]")) {
  if (el.tagName === "INPUT") clickables.push(["option", el.value, el.name]);
  else clickables.push([el.classList.contains("btn") ? "button" : "product", el.textContent.trim(), ""]);
  elements.push(el);
}
const reward = document.getElementById("reward");
return {page: document.body.dataset.page || "", nonce: document.body.dataset.nonce || "", texts: texts,
        clickables: clickables, elements: elements, searchInput: document.getElementById("search_input"),
        searchButton: document.querySelector("#search-form button[type=submit]"),
        info: reward ? reward.dataset.info : null, path: location.pathname + location.search};
"""


def browser_errors() -> tuple[type[BaseException], ...]:
    """What a dead or hung browser raises: WebDriver errors, and urllib3/socket errors from the HTTP
    connection to chromedriver (a timeout when it hangs, a refused connection when it died)."""
    import urllib3
    from selenium.common.exceptions import WebDriverException

    return (WebDriverException, urllib3.exceptions.HTTPError, OSError)


@dataclass(frozen=True)
class BrowserConfig:
    """How the browser env starts Chromium and how long it waits for it."""

    chromium_path: str = "/usr/bin/chromium"
    """The Chromium binary (Debian package ``chromium``)."""
    chromedriver_path: str = "/usr/bin/chromedriver"
    """chromedriver matching that Chromium (Debian package ``chromium-driver``)."""
    headless: bool = True
    """False opens a visible window (needs a display)."""
    page_load_timeout: float = 10.0
    """Seconds a page may take to load before the step fails with a browser error."""
    command_timeout: float = 15.0
    """Seconds any command to chromedriver may take; a hung browser fails the step after this."""
    native_clicks: bool = False
    """True: WebDriver's pointer click (scroll, hit test, mouse events; ~100 ms). False: the DOM's
    ``element.click()``, which runs the same handlers and navigation in ~45 ms (measured)."""

    def __post_init__(self) -> None:
        for name in ("chromium_path", "chromedriver_path"):
            if not os.path.isfile(getattr(self, name)):
                raise FileNotFoundError(
                    f"{name}={getattr(self, name)} does not exist; install Chromium and its driver with "
                    f"`apt-get install -y chromium chromium-driver` or pass {name}="
                )
        if self.page_load_timeout <= 0 or self.command_timeout <= 0:
            raise ValueError("page_load_timeout and command_timeout must be > 0 seconds")


class Browser:
    """One Chromium + chromedriver pair with a private, temporary profile."""

    def __init__(self, config: BrowserConfig):
        os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never reach the network
        os.environ.setdefault("SE_AVOID_STATS", "true")
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        self.config = config
        self.profile = tempfile.mkdtemp(prefix="mem1-webshop-chromium-")
        options = Options()
        options.binary_location = config.chromium_path
        for flag in CHROMIUM_FLAGS:
            if flag != "--headless=new" or config.headless:
                options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        self.service = Service(config.chromedriver_path, popen_kw={"start_new_session": True})
        try:
            self.driver = webdriver.Chrome(options=options, service=self.service)
        except BaseException:  # a half-started chromedriver must not outlive the error
            self.kill()
            raise
        self.driver.set_page_load_timeout(max(config.page_load_timeout, STARTUP_TIMEOUT))
        self.driver.set_script_timeout(config.page_load_timeout)
        # A cold Chromium on a busy 2-core machine can need more than 5 s for its first page (a CI
        # run timed out there right after a restart): warm it up under a generous limit, then hold
        # every later command to the configured one.
        self.driver.command_executor._client_config.timeout = max(config.command_timeout, STARTUP_TIMEOUT)
        try:
            self.driver.get("about:blank")
        except BaseException:
            self.kill()
            raise
        self.driver.set_page_load_timeout(config.page_load_timeout)
        self.driver.command_executor._client_config.timeout = config.command_timeout

    @property
    def pids(self) -> list[int]:
        """chromedriver's pid (its process group holds Chromium's processes)."""
        process = getattr(self.service, "process", None)
        return [process.pid] if process is not None else []

    def read(self) -> dict[str, Any]:
        return self.driver.execute_script(READ_PAGE_JS)

    def quit(self) -> None:
        """Close politely (fast when healthy), then make sure with :meth:`kill`."""
        driver = getattr(self, "driver", None)
        if driver is not None:
            driver.command_executor._client_config.timeout = 5
            try:
                driver.quit()
            except browser_errors():  # a dead or hung browser: kill() below cleans up either way
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL chromedriver's process group (Chromium included), reap it, delete the profile."""
        process = getattr(self.service, "process", None)
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # unkillable (D state): nothing more we can do
                pass
            _wait_group_dead(process.pid)
        shutil.rmtree(self.profile, ignore_errors=True)


def _live_group_members(pgid: int) -> list[int]:
    """Pids of the process group that are still running (zombies already handed to init excluded)."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    live = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # exited while we looked
            continue
        state, _, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group) == pgid and state not in "ZX":
            live.append(int(entry))
    return live


def _wait_group_dead(pgid: int, timeout: float = 5.0) -> None:
    """Wait until no process of the group runs. Chromium's helpers, orphaned when its main process
    exits, stay zombies until init reaps them (about a second on this machine): they hold nothing
    and are not ours to wait for, so only running members count."""
    deadline = time.monotonic() + timeout
    while _live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
