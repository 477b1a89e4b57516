"""Fuzzed and hostile actions against MEM1-WebQA with <open> on: never an exception, never a request off the mini-web."""

import gymnasium as gym
import pytest
from webqa_fakeweb import Reply, json_reply
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mem1_gym  # noqa: F401

HOSTILE_URLS = [
    "file:///etc/passwd", "http://example.org/", "https://miniweb.test/wiki/0", "http://miniweb.test:8080/wiki/0",
    "http://127.0.0.1/", "http://localhost:22/", "http://169.254.169.254/latest/meta-data/", "gopher://x/",
    "http://user:pw@miniweb.test/wiki/0", "http://[::1]/", "//miniweb.test/wiki/0", "/wiki/0", "data:text/html,hi",
    "http://miniweb.test/wiki/999999999", "http://miniweb.test/wiki/0", "http://miniweb.test/../../etc/passwd",
    "http://miniweb.test/wiki/%00%ff", "http://" + "a" * 3000, "http://miniweb.test/search?q=x",
]
TOKENS = ["<think>", "</think>", "<search>", "</search>", "<open>", "</open>", "<answer>", "</answer>",
          "search[", "open[", "answer[", "]", ";", " ", "\n", "x", "Röntgen", "\x00", "中"] + HOSTILE_URLS


@pytest.fixture(scope="module")
def spied_env():
    """An env whose every HTTP request is recorded, to prove where requests go."""
    env = gym.make("MEM1-WebQA-2", allow_open=True, page_chars=500)
    env.reset(seed=0)
    client = env.unwrapped.provider.client
    sent, real_stream = [], client.stream  # searches and pages alike are sent through stream()

    def spy(method, url, **kwargs):
        sent.append(url)
        return real_stream(method, url, **kwargs)

    client.stream = spy
    yield env, sent
    env.close()


def _step_checked(env, action):
    obs, reward, terminated, truncated, info = env.step(action)
    assert isinstance(obs, str) and env.observation_space.contains(obs) and isinstance(reward, float)
    assert info["injected"] == obs
    if info["action_type"] == "invalid":
        assert info["valid_action"] is False and info["error"] and "<open>url</open>" in obs
    if info["action_type"] == "open" and info["open_error"]:
        assert "could not be opened" in obs and info["error"] == info["open_error"]
    if terminated or truncated:
        assert len(info["em"]) == 2 and len(info["f1"]) == 2
        env.reset()
    return info


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(TOKENS), max_size=30).map("".join),
    st.sampled_from(HOSTILE_URLS).map(lambda u: f"<think>t</think><open>{u}</open>"),
    st.text(max_size=80).map(lambda t: f"<open>http://miniweb.test/wiki/{t}</open>"),
))
def test_fuzzed_actions_never_raise_nor_leave_the_mini_web(spied_env, action):
    env, sent = spied_env
    _step_checked(env, action)
    base = env.unwrapped.provider.base_url
    assert all(url.startswith(base + "/") for url in sent), [u for u in sent if not u.startswith(base)]


@pytest.mark.parametrize("url", [u for u in HOSTILE_URLS if "miniweb.test/wiki/0" not in u or "@" in u])
def test_hostile_urls_are_refused_or_fail_softly(spied_env, url):
    env, sent = spied_env
    before = len(sent)
    info = _step_checked(env, f"<open>{url}</open>")
    if info["action_type"] == "open":
        refused = "refused to open" in info["open_error"]
        assert info["open_error"] and (refused or len(sent) == before + 1)  # refused: no request at all
        assert not refused or len(sent) == before


def test_hostile_server_10_mb_page_through_the_env(fake_web):
    """A mini-web URL that serves 10 MB: the env reads at most max_page_bytes and shows page_chars."""
    fake_web.routes["/search"] = lambda r: json_reply(
        {"organic": [{"title": "Huge", "link": "http://miniweb.test/huge", "snippet": "s", "position": 1}]})
    chunk = b"<p>" + b"lorem ipsum " * 8000 + b"</p>"
    fake_web.routes["/huge"] = lambda r: Reply(200, (chunk for _ in range(10_000_000 // len(chunk))),
                                              {"Content-Type": "text/html; charset=utf-8"})
    env = gym.make("MEM1-WebQA-1", allow_open=True, search_url=fake_web.url, page_chars=1000,
                   max_page_bytes=300_000, page_links=0)
    env.reset(seed=0)
    url = env.step("<search>huge</search>")[4]["result_urls"][0]
    obs, _, _, _, info = env.step(f"<open>{url}</open>")
    assert info["open_error"] == "" and info["page_cut"] and len(obs) < 1500
    env.close()


@pytest.mark.parametrize(
    "action, valid",
    [
        ("x" * 1_000_000, False),
        ("<open>" * 100_000, False),
        ("".join(f"<open>http://miniweb.test/wiki/{i}</open>" for i in range(50)), True),
        (bytes(range(256)).decode("latin-1") * 10, False),
        ("<open>http://miniweb.test/wiki/0 and more words</open>", False),
    ],
)
def test_huge_and_malformed_turns(spied_env, action, valid):
    env, _ = spied_env
    assert _step_checked(env, action)["valid_action"] is valid
