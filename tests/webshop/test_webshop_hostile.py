"""The shop under hostile requests (issue 21): clean 4xx pages, no internals, bounded sessions."""

import gc
import html
import json
import logging
import types

import gymnasium as gym
import pytest
import requests

import mem1_gym  # noqa: F401  (registers the ids)
from mem1_gym.webshop import site as site_module
from mem1_gym.webshop.server import ShopServer
from mem1_gym.webshop.shop import ShopConfig, get_shop
from mem1_gym.webshop.site import Site, SiteLimits, get_site

INTERNALS = ("Traceback", "ValueError", "RecursionError", "MethodNotAllowed", "int()", "Exceeds the limit", "secret")


@pytest.fixture(scope="module")
def shop():
    return get_shop(ShopConfig())


@pytest.fixture(scope="module")
def server(shop):
    server = ShopServer(Site(shop))
    yield server
    server.stop()


def test_hostile_requests_get_a_4xx_page_without_internals(server, shop):
    asin = next(iter(shop.catalog)).asin
    deep = "[" * 2000 + "]" * 2000  # under max_options_chars, past the recursion limit
    cases = [
        ("GET", "/fixed_²", 404),  # "²".isdigit() is True, int("²") raises
        ("GET", "/fixed_" + "1" * 5000, 404),  # past Python's 4,300-digit int() limit
        ("GET", f"/fixed_{len(shop.goals['test'])}", 404),
        ("GET", f"/s1/item/{asin}?options={deep}", 422),
        ("GET", f"/s1/item/{asin}?options=" + json.dumps({"color": ["x"]}), 422),
        ("GET", f"/s1/item/{asin}?options=" + json.dumps({"color": "x" * 5000}), 422),
        ("GET", f"/s1/buy/{asin}?options=not-json", 422),
        ("PUT", "/s1", 405),
        ("DELETE", "/", 405),
        ("PATCH", "/s1/results", 405),
    ]
    for method, path, status in cases:
        response = requests.request(method, server.url + path, timeout=10)
        assert response.status_code == status, (method, path[:40])
        assert not any(word in response.text for word in INTERNALS), (method, path[:40], response.text[-300:])
    fine = requests.get(f"{server.url}/fixed_0/results", params={"q": "tea"}, timeout=10)
    assert fine.status_code == 200 and html.escape(shop.goals["test"][0].instruction, quote=False) in fine.text


def test_a_failing_site_answers_500_without_internals_and_logs_the_cause(server, shop, monkeypatch, caplog):
    def broken(keywords):
        raise RuntimeError("secret detail of the index")

    monkeypatch.setattr(shop.search, "search", broken)
    with caplog.at_level(logging.ERROR, logger="mem1_gym.webshop.server"):
        response = requests.get(f"{server.url}/s2/results", params={"q": "tea"}, timeout=10)
    assert response.status_code == 500 and 'data-page="error"' in response.text
    assert "secret" not in response.text
    assert "secret detail of the index" in caplog.text
    assert server.failure("/s2/results") == "RuntimeError: secret detail of the index"  # for the browser env


def test_least_recently_used_sessions_are_dropped_and_then_say_expired(shop):
    site = Site(shop, limits=SiteLimits(max_sessions=2))
    goal = shop.goals["test"][0]
    site.open_session("a", goal)
    site.open_session("b", goal)
    site.dispatch("/a", {})  # a is now used more recently than b
    site.open_session("c", goal)
    assert "a" in site and "c" in site and "b" not in site
    page = site.dispatch("/b/results", {"q": "tea"})
    assert (page.name, page.status) == ("expired", 410) and "expired" in page.text
    site.open_session("b", goal)  # a new session under the old id works again
    assert site.dispatch("/b", {}).name == "search"


def test_unused_sessions_expire_after_the_ttl(shop, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(site_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    site = Site(shop)
    site.open_session("old", shop.goals["test"][0])
    now[0] += SiteLimits.session_ttl_s - 1
    assert site.dispatch("/old", {}).name == "search"  # used: the clock restarts
    now[0] += SiteLimits.session_ttl_s + 1
    assert site.dispatch("/old", {}).name == "expired" and "old" not in site


def test_an_env_whose_session_was_dropped_truncates_and_reset_recovers():
    env = gym.make("MEM1-WebShop-Text")
    env.reset(seed=0)
    site = get_site(env.unwrapped.shop)
    goal = env.unwrapped.goal
    fillers = [f"filler{i}" for i in range(site.limits.max_sessions)]
    for sid in fillers:  # as many newer sessions as the site keeps: the env's is the oldest, dropped
        site.open_session(sid, goal)
    try:
        obs, reward, terminated, truncated, info = env.step("search[tea]")
        assert truncated and not terminated and info["page"] == "expired" and "reset()" in obs
        assert env.reset(seed=0)[1]["page"] == "search" and env.step("search[tea]")[4]["page"] == "results"
    finally:
        for sid in fillers:
            site.close_session(sid)
        env.close()


def test_an_env_dropped_without_close_frees_its_session():
    env = gym.make("MEM1-WebShop-Text")
    env.reset(seed=0)
    sid, site = env.unwrapped._sid, get_site(env.unwrapped.shop)
    assert sid in site
    del env
    gc.collect()
    assert sid not in site
