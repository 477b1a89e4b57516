"""MEM1-WebShop in a real headless Chromium: parity with the text env, faults and clean shutdown.

One browser env is reused across the parity episodes (a browser start costs about a second).
Process checks look only at our own browsers' process groups, so other Chromium users on the
machine cannot disturb them.
"""

import doctest
import gc
import os
import random
import signal
import socket
import subprocess
import sys
import time
import warnings

import gymnasium as gym
import psutil
import pytest
from gymnasium.utils.env_checker import check_env

import mem1_gym  # noqa: F401  (registers the ids)
from mem1_gym.webshop import env_browser
from mem1_gym.webshop.oracle import WebShopOracle
from mem1_gym.webshop.server import ShopServer
from mem1_gym.webshop.site import SiteError

pytestmark = pytest.mark.browser

COMPARED_INFO = ("valid_action", "error", "page", "available_actions", "action_type", "action", "turns_left")
REWARD_INFO = ("reward", "r_type", "r_att", "r_option", "r_price", "title_score", "n_att", "n_option")


@pytest.fixture(scope="module")
def pair():
    browser = gym.make("MEM1-WebShop", max_turns=6, page_load_timeout=5, command_timeout=5)
    text = gym.make("MEM1-WebShop-Text", max_turns=6)
    yield browser, text
    browser.close()
    text.close()


def live_members(pgids):
    """Running (non-zombie) processes of the given process groups."""
    found = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) in pgids and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def assert_no_leftovers(pgids, port=None):
    assert live_members(set(pgids)) == []
    assert [c for c in psutil.Process().children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE] == []
    if port is not None:
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass


def scripted_action(rng, info, oracle):
    """A mix of the oracle's moves, random available actions, free searches and junk."""
    roll = rng.random()
    if oracle is not None:
        return oracle.act(info)
    if roll < 0.12:
        return rng.choice(["junk", "<answer>click[nothing here]</answer>", "search[more words]", "click[buy now]"])
    actions = [a for a in info["available_actions"] if a != "search[<keywords>]"]
    if "search[<keywords>]" in info["available_actions"] or not actions:
        words = info["available_actions"] and rng.sample(["natural", "women", "black", "organic", "size", "tea"], 2)
        return f"<think>t</think><summary>s</summary><answer>search[{' '.join(words)}]</answer>"
    return rng.choice(actions)


def run_in_lockstep(browser, text, seed, oracle=None):
    rng = random.Random(seed)
    first = browser.reset(seed=seed), text.reset(seed=seed)
    assert first[0][0] == first[1][0]
    info = first[1][1]
    if oracle is not None:
        oracle.reset(text.unwrapped.goal)
    while True:
        action = scripted_action(rng, info, oracle)
        b, t = browser.step(action), text.step(action)
        assert b[:4] == t[:4], (seed, action)
        assert {k: b[4][k] for k in COMPARED_INFO} == {k: t[4][k] for k in COMPARED_INFO}, (seed, action)
        info = t[4]
        if t[2] or t[3]:
            if t[2]:
                assert {k: b[4][k] for k in REWARD_INFO} == {k: t[4][k] for k in REWARD_INFO}
            return t[1], t[2]


def test_parity_with_the_text_env_over_50_scripted_episodes(pair):
    browser, text = pair
    outcomes = [run_in_lockstep(browser, text, seed, WebShopOracle() if seed % 4 == 0 else None) for seed in range(50)]
    assert sum(1 for reward, terminated in outcomes if terminated and reward == 1.0) >= 13  # the oracle episodes
    assert any(terminated and reward < 1.0 for reward, terminated in outcomes)  # random purchases too


def test_parity_when_search_is_allowed_from_any_page_with_native_clicks():
    browser = gym.make("MEM1-WebShop", search_from_any_page=True, max_turns=5, native_clicks=True)
    text = gym.make("MEM1-WebShop-Text", search_from_any_page=True, max_turns=5)
    for seed in range(4):
        run_in_lockstep(browser, text, 100 + seed)
    browser.close()
    text.close()


def test_check_env_passes_with_no_warnings():
    env = gym.make("MEM1-WebShop")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()
    env.close()


def test_doctest_of_the_env():
    assert doctest.testmod(env_browser, raise_on_error=False).failed == 0


def test_envs_share_one_server_and_close_leaves_nothing_behind():
    # show_attributes makes a shop of its own, so no other test's env holds this server.
    first, second = gym.make("MEM1-WebShop", show_attributes=True), gym.make("MEM1-WebShop", show_attributes=True)
    first.reset(seed=0)
    second.reset(seed=1)
    server = first.unwrapped._resources.server
    assert server is second.unwrapped._resources.server
    groups = first.unwrapped.browser_pids + second.unwrapped.browser_pids
    assert len(groups) == 2 and live_members(set(groups))
    first.close()
    assert second.step("search[tea]")[4]["page"] == "results"  # the server outlives the first env
    second.close()
    second.close()
    assert_no_leftovers(groups, server.port)


def test_garbage_collection_and_interpreter_exit_close_the_browser():
    env = gym.make("MEM1-WebShop", show_attributes=True)
    env.reset(seed=0)
    groups = env.unwrapped.browser_pids
    del env
    gc.collect()
    assert_no_leftovers(groups)
    script = ("import gymnasium as gym, mem1_gym; env = gym.make('MEM1-WebShop'); env.reset(seed=0); "
              "print(env.unwrapped.browser_pids[0], flush=True)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    time.sleep(0.2)
    assert live_members({int(done.stdout.split()[-1])}) == []


def test_a_dead_browser_ends_the_episode_and_reset_restarts_it(pair):
    env = pair[0]
    env.reset(seed=0)
    env.step("search[tea]")
    group = env.unwrapped.browser_pids[0]
    for process in live_members({group}):
        if process.name() != "chromedriver":
            process.kill()
    obs, reward, terminated, truncated, info = env.step("click[b0" + info_asin(env) + "]")
    assert info["browser_error"] and truncated and not terminated and "The browser failed" in obs
    obs, info = env.reset(seed=0)
    assert info["page"] == "search" and env.unwrapped.browser_pids[0] != group
    assert live_members({group}) == []
    assert env.step("search[tea]")[4]["page"] == "results"
    # Dead between episodes: reset itself notices and starts a fresh browser, with the seed's goal.
    goal = env.unwrapped.goal
    os.killpg(env.unwrapped.browser_pids[0], signal.SIGKILL)
    assert env.reset(seed=0)[1]["page"] == "search" and env.unwrapped.goal == goal


def test_a_hung_browser_times_out_and_reset_restarts_it(pair):
    env = pair[0]
    env.reset(seed=0)
    group = env.unwrapped.browser_pids[0]
    os.killpg(group, signal.SIGSTOP)
    started = time.monotonic()
    obs, reward, terminated, truncated, info = env.step("search[tea]")
    assert info["browser_error"] and truncated and time.monotonic() - started < 20
    env.reset(seed=0)
    assert live_members({group}) == [] and env.step("search[tea]")[4]["page"] == "results"


def test_the_site_raising_surfaces_its_message_in_both_envs(pair, monkeypatch):
    browser, text = pair
    shop = text.unwrapped.shop

    def broken(keywords):
        raise RuntimeError("the index is broken")

    monkeypatch.setattr(shop.search, "search", broken)
    messages = []
    for env in pair:
        env.reset(seed=0)
        with pytest.raises(SiteError, match="RuntimeError: the index is broken") as caught:
            env.step("search[tea]")
        messages.append(str(caught.value).replace(env.unwrapped._sid, "SID"))
    assert messages[0] == messages[1]


def test_a_port_in_use_moves_to_a_free_one(pair):
    from mem1_gym.webshop.site import get_site

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ShopServer(get_site(pair[1].unwrapped.shop), port=port)
        assert server.port != port and server.moved_from[0] == port
        server.stop()
        server.stop()


def info_asin(env):
    products = [a for a in env.unwrapped.available_actions if a.startswith("click[b0")]
    return products[0][len("click[b0"):-1]
