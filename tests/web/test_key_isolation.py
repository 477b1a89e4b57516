"""API keys go only to their provider's API host (issue 21): never with a page that ``<open>`` fetches,
never along a redirect of the API call to another host. Two loopback servers record every header."""

import pytest
from webqa_fakeweb import FakeWeb, Reply, html_reply, json_reply, serper_payload

from mem1_gym.web.client import ClientConfig
from mem1_gym.web.fetch import UrlPolicy
from mem1_gym.web.providers import BraveProvider, SerperProvider

KEY = "sk-test-isolated-key-123"
# (provider, its endpoint path, the header that carries its key)
PROVIDERS = {"serper": (SerperProvider, "/search", "X-API-KEY"),
             "brave": (BraveProvider, "/res/v1/web/search", "X-Subscription-Token")}


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", KEY)
    monkeypatch.setenv("BRAVE_API_KEY", KEY)


@pytest.fixture
def pages():
    """A second host: the pages the agent opens, or where a redirect leads."""
    web = FakeWeb()
    yield web
    web.stop()


def _carries_key(seen) -> bool:
    return any(KEY in value for value in seen.headers.values())


@pytest.mark.parametrize("name", PROVIDERS)
def test_opened_pages_never_get_the_key(fake_web, pages, keys, name):
    provider_cls, path, header = PROVIDERS[name]
    fake_web.routes[path] = lambda r: json_reply(serper_payload("q", 1) if name == "serper" else {})
    pages.routes["/article"] = lambda r: html_reply("<p>A page.</p>")
    provider = provider_cls(ClientConfig(timeout=2.0, retries=0), endpoint=fake_web.url + path)
    provider.url_policy = UrlPolicy(allow_private=True)  # the shipped policy refuses loopback pages
    provider.search("q", 1)
    page = provider.open(pages.url + "/article", max_bytes=1 << 16, max_chars=100, max_links=0)
    assert page.text == "A page."
    assert fake_web.seen[-1].headers[header] == KEY  # the API gets its key
    assert [s.path for s in pages.seen] == ["/article"] and not _carries_key(pages.seen[0])
    provider.close()


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_redirect_of_the_api_call_to_another_host_drops_the_key(fake_web, pages, keys, name):
    provider_cls, path, header = PROVIDERS[name]
    fake_web.routes[path] = lambda r: Reply(307, b"", {"Location": pages.url + "/elsewhere"})
    pages.routes["/elsewhere"] = lambda r: json_reply({})
    provider = provider_cls(ClientConfig(timeout=2.0, retries=0), endpoint=fake_web.url + path)
    assert provider.search("q", 1) == []
    assert fake_web.seen[-1].headers[header] == KEY
    assert [s.path for s in pages.seen] == ["/elsewhere"] and not _carries_key(pages.seen[0])
    provider.close()
