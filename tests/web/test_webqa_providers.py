"""Search providers against loopback servers that speak their wire formats: results, failures, retries, secrets."""

import logging
import time

import gymnasium as gym
import pytest
from webqa_fakeweb import Reply, json_reply, serper_payload

import mem1_gym  # noqa: F401
from mem1_gym.web.client import ClientConfig, RateLimiter, WebClient, WebError
from mem1_gym.web.providers import BraveProvider, MiniWebProvider, SerperProvider

FAST = ClientConfig(timeout=0.5, retries=2, backoff=0.01, max_backoff=0.05)
KEY = "sk-test-5ecret-value-123"


@pytest.fixture
def serper_key(monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", KEY)
    monkeypatch.setenv("BRAVE_API_KEY", KEY)


def test_serper_client_sends_serpers_request_and_reads_organic(fake_web, serper_key):
    fake_web.routes["/search"] = lambda r: json_reply(serper_payload("kest river", 10))
    provider = SerperProvider(FAST, endpoint=fake_web.url + "/search")
    results = provider.search("kest river", 3)
    request = fake_web.seen[-1]
    assert request.method == "POST" and request.headers["X-API-KEY"] == KEY
    assert request.body == b'{"q": "kest river", "num": 3}'
    assert [(r.title, r.url, r.snippet, r.position) for r in results] == [
        (f"Result {i} for kest river", f"https://example.org/r{i}", f"snippet {i}", i) for i in (1, 2, 3)
    ]
    assert provider.live  # real-web results: episodes are not reproducible
    assert provider.url_policy.origins == ()
    provider.close()


def test_serper_without_organic_is_no_results_and_odd_rows_are_skipped(fake_web, serper_key):
    provider = SerperProvider(FAST, endpoint=fake_web.url + "/search")
    fake_web.routes["/search"] = lambda r: json_reply({"searchParameters": {"q": "x"}})
    assert provider.search("x", 5) == []
    rows = [{"title": "no link"}, "junk", {"link": "https://a.example/", "position": 7}]
    fake_web.routes["/search"] = lambda r: json_reply({"organic": rows})
    (only,) = provider.search("x", 5)
    assert only.url == "https://a.example/" and only.position == 1 and only.title == "https://a.example/"
    provider.close()


def test_brave_client_reads_web_results_and_strips_highlights(fake_web, serper_key):
    payload = {"type": "search", "query": {"original": "kest"}, "web": {"type": "search", "results": [
        {"title": "The <strong>Kest</strong> River", "url": "https://b.example/kest",
         "description": "The <strong>Kest</strong> flows &amp; floods."}]}}
    fake_web.routes["/res/v1/web/search"] = lambda r: json_reply(payload)
    provider = BraveProvider(FAST, endpoint=fake_web.url + "/res/v1/web/search")
    (result,) = provider.search("kest", 50)
    request = fake_web.seen[-1]
    assert request.method == "GET" and request.query == {"q": ["kest"], "count": ["20"]}  # Brave's maximum
    assert request.headers["X-Subscription-Token"] == KEY and request.headers["Accept"] == "application/json"
    assert (result.title, result.snippet) == ("The Kest River", "The Kest flows & floods.")
    provider.close()


def test_429_is_retried_after_retry_after_then_succeeds(fake_web, serper_key):
    replies = iter([json_reply({"message": "slow down"}, 429, **{"Retry-After": "0"}),
                    json_reply(serper_payload("q", 2))])
    fake_web.routes["/search"] = lambda r: next(replies)
    provider = SerperProvider(FAST, endpoint=fake_web.url + "/search")
    assert len(provider.search("q", 2)) == 2 and len(fake_web.seen) == 2
    provider.close()


@pytest.mark.parametrize("status", [429, 500, 503])
def test_persistent_failure_is_a_web_error_after_all_attempts(fake_web, serper_key, status):
    fake_web.routes["/search"] = lambda r: Reply(status, b"boom", {"Retry-After": "3600"})  # an hour: capped
    provider = SerperProvider(FAST, endpoint=fake_web.url + "/search")
    started = time.perf_counter()
    with pytest.raises(WebError, match=f"3 attempt.*HTTP {status}"):
        provider.search("q", 2)
    assert len(fake_web.seen) == 3 and time.perf_counter() - started < 2.0
    provider.close()


def test_timeouts_and_refused_connections_are_bounded(fake_web, serper_key):
    fake_web.routes["/search"] = lambda r: Reply(200, b"{}", delay=1.0)
    provider = SerperProvider(ClientConfig(timeout=0.2, retries=1, backoff=0.0), endpoint=fake_web.url + "/search")
    started = time.perf_counter()
    with pytest.raises(WebError, match="no answer within 0.2 s"):
        provider.search("q", 2)
    assert time.perf_counter() - started < 1.5
    provider.close()
    closed = SerperProvider(FAST, endpoint="http://127.0.0.1:9/search")  # discard port: nothing listens
    with pytest.raises(WebError, match="cannot connect"):
        closed.search("q", 2)
    closed.close()
    with pytest.raises(WebError, match="closed"):
        closed.search("q", 2)


@pytest.mark.parametrize("status", [401, 403, 400])
def test_non_retryable_errors_fail_at_once(fake_web, serper_key, status):
    fake_web.routes["/search"] = lambda r: Reply(status, f"bad key {KEY}".encode())
    provider = SerperProvider(FAST, endpoint=fake_web.url + "/search")
    with pytest.raises(WebError) as caught:
        provider.search("q", 2)
    assert len(fake_web.seen) == 1 and KEY not in str(caught.value)
    assert ("API key" in str(caught.value)) == (status in (401, 403))


def test_invalid_json_is_a_web_error(fake_web, serper_key):
    fake_web.routes["/search"] = lambda r: Reply(200, b"<html>not json", {"Content-Type": "text/html"})
    with pytest.raises(WebError, match="invalid JSON"):
        SerperProvider(FAST, endpoint=fake_web.url + "/search").search("q", 1)


def test_env_turns_provider_failures_into_observations_and_never_leaks_the_key(
    fake_web, serper_key, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    fake_web.routes["/search"] = lambda r: Reply(500, f"internal error for key {KEY}".encode())
    with pytest.warns(UserWarning):
        env = gym.make("MEM1-WebQA-1", search_provider="serper", search_url=fake_web.url + "/search",
                       retries=1, backoff=0.0, allow_open=True)
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("<search>anything</search>")
    assert "The search failed" in obs and "HTTP 500" in info["search_error"] == info["error"]
    assert reward == 0.0 and not terminated and not truncated and info["valid_action"]
    fake_web.routes["/search"] = lambda r: json_reply({"organic": [{"title": "T", "link": fake_web.url + "/p"}]})
    obs, *_, info = env.step("<search>anything</search>")
    assert info["search_error"] == "" and info["result_urls"] == [fake_web.url + "/p"]
    obs, *_, info = env.step(f"<open>{fake_web.url}/p</open>")  # a live provider never opens loopback pages
    assert "local and private" in info["open_error"] and all(s.path != "/p" for s in fake_web.seen)
    out = capsys.readouterr()
    everything = [obs, repr(env.unwrapped.provider), repr(env.unwrapped.provider.client), out.out, out.err,
                  caplog.text, repr(info)]
    assert not any(KEY in text for text in everything)
    env.close()


def test_rate_limiter_spaces_requests():
    clock = [0.0]
    waits = []
    limiter = RateLimiter(4.0, clock=lambda: clock[0], sleep=waits.append)
    assert [limiter.wait() for _ in range(3)] == [0.0, 0.25, 0.5]
    assert waits == [0.25, 0.5]
    assert RateLimiter(None).wait() == 0.0


def test_client_rate_limit_holds_over_real_requests(fake_web):
    fake_web.routes["/ok"] = lambda r: Reply(200, b"ok")
    client = WebClient(ClientConfig(rate_limit=20.0))
    started = time.perf_counter()
    for _ in range(5):
        client.request("GET", fake_web.url + "/ok", what="page")
    assert time.perf_counter() - started >= 4 / 20.0 * 0.95
    client.close()
    client.close()


def test_mini_web_provider_is_keyless_local_and_reports_no_live_results():
    provider = MiniWebProvider(FAST, "http://127.0.0.1:1")
    assert provider.live is False and provider.url_policy.origins == ("http://miniweb.test:80",)
    with pytest.raises(ValueError, match="search_url must look like"):
        MiniWebProvider(FAST, "127.0.0.1:8030")
