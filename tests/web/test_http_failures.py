"""Broken answers at the socket level (issue 21): the one HTTP helper maps each to its error type, and
the web QA env turns each into an observation plus ``info`` flag instead of raising from ``step``."""

import gymnasium as gym
import pytest
from brokenhttp import (
    BrokenHttp,
    answer,
    bad_chunk_size,
    bad_gzip,
    deep_json,
    oversize_json,
    truncated_chunked,
)

import mem1_gym  # noqa: F401
from mem1_gym.http import HttpClient, HttpConfig, HttpError

# (the raw answer, what the error says); the shipped HttpConfig() defaults throughout.
BROKEN = {
    "truncated-chunked": (lambda: truncated_chunked(b'{"organic": ['), "the connection broke"),
    "bad-chunk-size": (bad_chunk_size, "the connection broke"),
    "bad-gzip": (bad_gzip, "could not be decompressed"),
    "deep-json": (deep_json, "nested more than 64 levels"),
    "oversize-chunked": (lambda: oversize_json({"organic": [{"snippet": "FILL"}]}, "FILL"), "larger than 33554432 bytes"),
    "oversize-declared": (lambda: answer(b"{}", Content_Length=str(1 << 40)), "larger than 33554432 bytes"),
}


@pytest.fixture
def broken():
    server = BrokenHttp()
    yield server
    server.stop()


@pytest.mark.parametrize("case", BROKEN)
def test_every_broken_answer_is_one_error_type(broken, case):
    reply, says = BROKEN[case]
    broken.replies = [reply()]
    client = HttpClient(HttpConfig(), secrets=("sk-secret",))
    with pytest.raises(HttpError, match=says) as caught:
        client.json(client.request("POST", broken.url + "/search", what="search", json={"q": "x"}), "search")
    assert caught.value.attempts == 1 and len(broken.seen) == 1  # a broken body is not retried
    assert str(caught.value).startswith("search request failed after 1 attempt(s): ")
    client.close()


def test_retries_wait_for_the_pace_and_a_capped_retry_after(broken):
    busy = answer(b"busy", "503 Service Unavailable", Retry_After="3600")  # an hour, capped at max_backoff
    broken.replies = [busy, busy, answer(b'{"ok": true}', Content_Type="application/json")]
    paced = []
    client = HttpClient(HttpConfig(backoff=0.0, max_backoff=0.01), pace=lambda: paced.append(1))
    reply = client.request("POST", broken.url, what="search", json={})
    assert (reply.status, client.json(reply, "search"), reply.attempts) == (200, {"ok": True}, 3)
    assert len(paced) == 3  # a rate limiter sees every attempt, retries included
    broken.replies = [busy]
    with pytest.raises(HttpError, match=r"after 3 attempt\(s\): HTTP 503 Service Unavailable: 'busy'"):
        client.request("GET", broken.url, what="search")
    client.close()


@pytest.mark.parametrize("case", ["deep-json", "oversize-chunked"])
def test_env_search_on_a_broken_answer_is_an_observation(broken, case):
    reply, says = BROKEN[case]
    broken.replies = [reply()]
    env = gym.make("MEM1-WebQA-1", search_url=broken.url)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("<think>t</think><search>anything</search>")
    assert says in info["search_error"] == info["error"] and "The search failed" in obs
    assert info["valid_action"] and info["result_urls"] == [] and (reward, terminated, truncated) == (0.0, False, False)
    env.close()


@pytest.mark.parametrize("reply", [lambda: truncated_chunked(b"<p>the start", "text/html"),
                                   lambda: bad_chunk_size("text/html"), lambda: bad_gzip("text/html")],
                         ids=["truncated-chunked", "bad-chunk-size", "bad-gzip"])
def test_env_open_on_a_broken_page_is_an_observation(broken, reply):
    broken.replies = [reply()]
    env = gym.make("MEM1-WebQA-1", search_url=broken.url, allow_open=True)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("<open>http://miniweb.test/wiki/1</open>")
    assert info["open_error"].startswith("page request failed") and info["error"] == info["open_error"]
    assert "could not be opened" in obs and info["valid_action"] and not (terminated or truncated)
    assert broken.seen[-1][1] == "/wiki/1"
    env.close()
