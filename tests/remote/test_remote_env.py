"""``mem1-gym serve-env`` + ``gym.make("MEM1-Remote")``: the same episodes as the local envs, and every
way the server can fail or refuse ends in an observation (or a clear error at ``gym.make``), never a hang.

Servers run on a thread of this process on 127.0.0.1 (free ports); the benchmark runs the CLI's.
"""

from __future__ import annotations

import copy
import doctest
import json
import re
import subprocess
import sys
import threading
import time
import warnings

import gymnasium as gym
import numpy as np
import pytest
import requests
from gymnasium.utils.env_checker import check_env, data_equivalence

import mem1_gym
from mem1_gym import cli
from mem1_gym.core import UnicodeText
from mem1_gym.oracle import ScriptedOracle
from mem1_gym.remote import client, wire
from mem1_gym.remote.client import RemoteEnvError
from mem1_gym.remote.server import EnvServerConfig, RunningEnvServer
from mem1_gym.webshop.oracle import WebShopOracle

SERVED = ("MEM1-MultiHopQA-2", "MEM1-WebQA-1", "MEM1-WebShop-Text", "MEM1-WebShop", "RemoteTestFancy-v0")
HANG = threading.Event()  # what a hanging step of the test env waits for (set at teardown)
FANCY_INFO = {"pair": (1, "a"), "f32": np.float32(0.1), "arr": np.arange(6, dtype=np.int16).reshape(2, 3),
              "by_id": {3: [None, True]}, "inf": float("inf"), "__mem1__": "a real key", "f": 0.1 + 0.2}


class FancyEnv(gym.Env):
    """Reports info values JSON cannot hold as they are; ``step("hang")`` blocks (a server that stops answering)."""

    metadata = {"render_modes": [], "render_fps": 1}

    def __init__(self):
        self.observation_space, self.action_space = UnicodeText(), UnicodeText()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "start", copy.deepcopy(FANCY_INFO)

    def step(self, action):
        if action == "hang":
            HANG.wait()
        info = {**copy.deepcopy(FANCY_INFO), "draw": self.np_random.integers(9)}
        return f"you said {action}", 0.5, False, False, info


if "RemoteTestFancy-v0" not in gym.registry:
    gym.register("RemoteTestFancy-v0", entry_point=FancyEnv)


@pytest.fixture
def start():
    """Start a server with some config; every one is stopped at the end of the test."""
    servers = []

    def start_server(**config) -> RunningEnvServer:
        servers.append(RunningEnvServer(EnvServerConfig(env_ids=SERVED, **config)))
        return servers[-1]

    yield start_server
    HANG.set()
    for server in servers:
        server.stop()
    HANG.clear()


@pytest.fixture(scope="module")
def url():
    with RunningEnvServer(EnvServerConfig(env_ids=SERVED)) as server:
        yield server.url


def _sid_free(step):
    """WebShop's ``info["url"]`` starts with its session id, which is the server's: compare the rest."""
    *_, info = step
    if isinstance(info, dict) and isinstance(info.get("url"), str):
        info = {**info, "url": re.sub(r"^/env\d+x\d+", "/SID", info["url"])}
    return (*step[:-1], info)


def assert_same(remote_step, local_step):
    assert data_equivalence(_sid_free(remote_step), _sid_free(local_step), exact=True), (remote_step, local_step)


def lockstep(env_id, url, act, seeds=(0, 3), max_steps=None, **kwargs):
    """Play the local env with ``act`` and send the remote env the same actions; every result must match."""
    local = gym.make(env_id, **kwargs)
    remote = gym.make("MEM1-Remote", url=url, env_id=env_id, **kwargs)
    for seed in seeds:
        first = local.reset(seed=seed)
        assert_same(remote.reset(seed=seed), first)
        (obs, info), done, turn = first, False, 0
        while not done and turn != max_steps:
            action = act(local, obs, info, turn)
            step = local.step(action)
            assert_same(remote.step(action), step)
            obs, info, done, turn = step[0], step[4], step[2] or step[3], turn + 1
    assert_same(remote.reset(), local.reset())  # no seed: both continue from the last seeded generator
    assert remote.unwrapped.protocol == local.unwrapped.protocol
    remote.close()
    local.close()


def qa_oracle(local, obs, info, turn):
    if turn == 0:
        local.unwrapped.oracle = ScriptedOracle()
        local.unwrapped.oracle.reset(local.unwrapped.task)
    return "bad turn" if turn == 1 else local.unwrapped.oracle.act(obs, info["turns_left"])


def shop_oracle(local, obs, info, turn):
    if turn == 0:
        local.unwrapped.oracle = WebShopOracle()
        local.unwrapped.oracle.reset(local.unwrapped.goal)
    return "click[nowhere]" if turn == 1 else local.unwrapped.oracle.act(info)


def test_multihop_qa_same_episodes_as_local(url):
    lockstep("MEM1-MultiHopQA-2", url, qa_oracle)


def test_web_qa_same_episodes_as_local(url):
    actions = ["<think>x</think><search>founded</search>", "<open>nowhere</open>", "<answer>a; b</answer>"]
    lockstep("MEM1-WebQA-1", url, lambda local, obs, info, turn: actions[turn % len(actions)])


def test_webshop_text_same_episodes_as_local(url):  # the oracle buys: the reward breakdown is compared too
    lockstep("MEM1-WebShop-Text", url, shop_oracle, split="test")


@pytest.mark.browser
def test_webshop_browser_same_steps_as_local(url):
    lockstep("MEM1-WebShop", url, shop_oracle, seeds=(0,), max_steps=2)


def test_info_values_come_back_with_their_types(url):
    local, remote = FancyEnv(), gym.make("MEM1-Remote", url=url, env_id="RemoteTestFancy-v0")
    assert_same(remote.reset(seed=5), local.reset(seed=5))
    assert_same(remote.step("hi"), local.step("hi"))
    remote.close()


def test_check_env_passes_with_no_warnings(url):
    env = gym.make("MEM1-Remote", url=url, env_id="MEM1-MultiHopQA-2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()
    env.close()  # idempotent


@pytest.mark.timeout(60)
def test_dead_server_gives_the_error_observation(start):
    server = start()
    env = gym.make("MEM1-Remote", url=server.url, env_id="MEM1-MultiHopQA-2")
    env.reset(seed=0)
    server.stop()
    obs, reward, terminated, truncated, info = env.step("<search>founded</search>")
    assert (reward, terminated, truncated) == (0.0, False, True)
    assert info["remote_error"].startswith("cannot connect") and info["remote_error"] in obs
    with pytest.raises(gym.error.ResetNeeded):  # as after any episode's end
        env.step("x")
    obs, info = env.reset(seed=0)  # still dead: the reset says so and its one step ends the episode
    assert "cannot connect" in info["remote_error"]
    assert env.step("<answer>x</answer>")[3] is True
    env.close()


@pytest.mark.timeout(60)
def test_server_that_stops_answering_times_out(start):
    server = start()
    env = gym.make("MEM1-Remote", url=server.url, env_id="RemoteTestFancy-v0", timeout=0.5)
    env.reset(seed=0)
    *_, truncated, info = env.step("hang")
    assert truncated and info["remote_error"] == "no answer within 0.5 s"
    HANG.set()  # the step completes on the server; the session goes on with the next reset
    HANG.wait()
    assert env.reset(seed=0)[0] == "start" and env.step("hi")[0] == "you said hi"
    env.close()


def test_session_cap(start):
    server = start(max_sessions=2)
    envs = [gym.make("MEM1-Remote", url=server.url, env_id="MEM1-MultiHopQA-2") for _ in range(2)]
    with pytest.raises(RemoteEnvError, match="--max-sessions"):
        gym.make("MEM1-Remote", url=server.url, env_id="MEM1-MultiHopQA-2", retries=0)
    envs.pop().close()
    envs.append(gym.make("MEM1-Remote", url=server.url, env_id="MEM1-MultiHopQA-2"))  # a slot came free
    assert requests.get(f"{server.url}/health", timeout=10).json()["sessions"] == 2
    for env in envs:
        env.close()


def test_idle_session_is_evicted_and_reset_opens_a_new_one(start):
    server = start(idle_timeout_s=0.2)
    env = gym.make("MEM1-Remote", url=server.url, env_id="MEM1-MultiHopQA-2")
    local = gym.make("MEM1-MultiHopQA-2")
    env.reset(seed=1)
    deadline = time.monotonic() + 10
    while len(server.pool) and time.monotonic() < deadline:  # the reaper runs every 0.05 s
        time.sleep(0.05)
    assert len(server.pool) == 0
    _, _, _, truncated, info = env.step("<search>founded</search>")
    assert truncated and "no such session" in info["remote_error"] and "--idle-timeout" in info["remote_error"]
    assert_same(env.reset(seed=1), local.reset(seed=1))
    env.close()
    local.close()


def test_action_and_body_limits(start):
    server = start(max_action_chars=100, max_body_bytes=4096)
    env = gym.make("MEM1-Remote", url=server.url, env_id="MEM1-MultiHopQA-2")
    env.reset(seed=0)
    _, _, _, truncated, info = env.step("x" * 101)
    assert truncated and "100 characters" in info["remote_error"]
    step = f"{server.url}/sessions/{env.unwrapped._link.session}/step"
    long_action = requests.post(step, json={"call": 9, "action": "x" * 101}, timeout=10)
    assert long_action.status_code == 413 and "--max-action-chars" in long_action.json()["detail"]
    big = requests.post(step, json={"call": 9, "action": "x" * 5000}, timeout=10)
    assert big.status_code == 413 and "--max-body-bytes" in big.json()["detail"]
    env.close()


def test_a_repeated_request_gets_the_first_answer(url):
    opened = requests.post(f"{url}/sessions", json={"env_id": "MEM1-MultiHopQA-2", "seed": 0}, timeout=30).json()
    step = f"{url}/sessions/{opened['session']}/step"
    first = requests.post(step, json={"call": 1, "action": "search[founded]"}, timeout=10)
    again = requests.post(step, json={"call": 1, "action": "search[founded]"}, timeout=10)
    assert first.content == again.content and again.json()["info"]["turn"] == 1  # a retry never steps twice
    assert requests.post(step, json={"call": 2, "action": "search[born]"}, timeout=10).json()["info"]["turn"] == 2
    assert requests.post(step, json={"call": 1, "action": "x"}, timeout=10).status_code == 409
    assert requests.delete(f"{url}/sessions/{opened['session']}", timeout=10).json() == {"closed": True}


HOSTILE = {  # body of POST /sessions: each gets a 4xx that names the problem, and the server goes on
    "deep JSON": b'{"env_id": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
    "not JSON": b'{"env_id": ',
    "seed Infinity": b'{"env_id": "MEM1-MultiHopQA-2", "seed": Infinity}',
    "seed -1": b'{"env_id": "MEM1-MultiHopQA-2", "seed": -1}',
    "nested options": b'{"env_id": "MEM1-MultiHopQA-2", "options": {"task_index": {"a": 1}}}',
    "40 kwargs": json.dumps({"env_id": "MEM1-MultiHopQA-2", "kwargs": {f"k{i}": 1 for i in range(40)}}).encode(),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_requests_get_a_4xx(url, case):
    answer = requests.post(f"{url}/sessions", data=HOSTILE[case], headers={"Content-Type": "application/json"},
                           timeout=30)
    assert 400 <= answer.status_code < 500 and "Traceback" not in answer.text and answer.json()["detail"]
    assert requests.get(f"{url}/health", timeout=10).json()["status"] == "ok"


def test_bearer_token(start, monkeypatch):
    monkeypatch.setenv("MEM1_TEST_ENV_TOKEN", "s3cret-token")
    server = start(token_env="MEM1_TEST_ENV_TOKEN")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = requests.get(f"{server.url}/health", headers=headers, timeout=10)
        assert answer.status_code == 401 and "s3cret" not in answer.text
    with pytest.raises(RemoteEnvError, match="401"):
        gym.make("MEM1-Remote", url=server.url, env_id="MEM1-MultiHopQA-2", token_env="MEM1_UNSET_TOKEN_VAR")
    env = gym.make("MEM1-Remote", url=server.url, env_id="MEM1-MultiHopQA-2", token_env="MEM1_TEST_ENV_TOKEN")
    assert env.reset(seed=0)[1]["turns_left"] == 6
    assert "s3cret" not in repr(env) + repr(env.spec) + repr(vars(env.unwrapped))
    env.close()


def test_what_a_client_may_ask_for(url):
    with pytest.raises(RemoteEnvError, match="corpus_path are the server operator's to set"):
        gym.make("MEM1-Remote", url=url, env_id="MEM1-MultiHopQA-2", corpus_path="/etc/passwd")
    with pytest.raises(RemoteEnvError, match="this server serves"):
        gym.make("MEM1-Remote", url=url, env_id="MEM1-MultiHopQA-16")
    with pytest.raises(RemoteEnvError, match="max_turns must be >= 1"):
        gym.make("MEM1-Remote", url=url, env_id="MEM1-WebShop-Text", max_turns=0)
    env = gym.make("MEM1-Remote", url=url, env_id="MEM1-MultiHopQA-2", split="test")
    with pytest.raises(ValueError, match="task_index must be in"):  # as the local env raises it
        env.reset(options={"task_index": 10**6})
    assert env.unwrapped.protocol.task_ids[0].startswith("test")
    env.close()


def test_a_dead_url_fails_at_make_with_the_cause(start):
    server = start()
    server.stop()
    with pytest.raises(RemoteEnvError, match="cannot connect"):
        gym.make("MEM1-Remote", url=server.url, env_id="MEM1-MultiHopQA-2")
    with pytest.raises(ValueError, match="url must look like"):
        gym.make("MEM1-Remote", url="localhost:8040", env_id="MEM1-MultiHopQA-2")


def test_cli_refuses_unknown_ids(capsys):
    assert cli.main(["serve-env", "--env", "MEM1-Nope"]) == 2
    assert "not registered: MEM1-Nope" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_serves_on_loopback():
    command = [sys.executable, "-m", "mem1_gym", "serve-env", "--env", "MEM1-MultiHopQA-1", "--port", "0"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        served = re.search(r"on (http://\S+) ", line).group(1)
        assert served.startswith("http://127.0.0.1:") and "no auth" in line
        env = gym.make("MEM1-Remote", url=served, env_id="MEM1-MultiHopQA-1")
        assert env.reset(seed=0)[1]["n_questions"] == 1
        env.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_remote_id_is_registered():
    assert "MEM1-Remote" in mem1_gym.ENV_IDS


@pytest.mark.parametrize("module", [client, wire], ids=lambda m: m.__name__)
def test_doctests(module):  # the RemoteEnv docstring's example runs a server, a remote and a local env
    result = doctest.testmod(module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
