"""The verifiers adapter, run by verifiers' own eval runner (what ``vf-eval`` runs) against
OpenAI-compatible endpoints: ``mem1-agent serve`` with a tiny model, and a scripted stub that
answers correctly (so the rubric is shown to carry a nonzero env reward)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("verifiers.v1", reason='the verifiers adapter needs pip install -e ".[verifiers]"')

import requests  # noqa: E402
import verifiers.v1 as vf  # noqa: E402
from verifiers.v1.cli.eval.runner import run_eval  # noqa: E402
from verifiers.v1.configs.cli.eval import EvalConfig  # noqa: E402

from mem1_gym.integrations import verifiers as adapter  # noqa: E402
from mem1_gym.integrations.tasks import TextEpisode, make_env, task_rows  # noqa: E402
from mem1_gym.protocol import join_answers  # noqa: E402

ENV_ID = "MEM1-MultiHopQA-2"
KEY_ENV = "MEM1_AGENT_API_KEY"  # the variable mem1-agent serve reads its key from


def evaluate(env: adapter.Mem1Env, url: str, model: str, out: Path) -> list[vf.Episode]:
    """verifiers' eval runner on ``env``: one episode of every task of its taskset, run concurrently."""
    config = EvalConfig(env=env.config, model=model, num_rollouts=1, push=False, rich=None, output_dir=out,
                        client=vf.EvalClientConfig(base_url=url, api_key_var=KEY_ENV),
                        sampling=vf.SamplingConfig(max_tokens=16, temperature=0.0))
    return asyncio.run(run_eval(config))


def replay(trace: vf.Trace, **env_kwargs) -> tuple[TextEpisode, list[str]]:
    """The trace's model replies played again on a fresh env of its task; returns it and the user turns."""
    row = trace.task.data.info
    episode = TextEpisode(make_env(row["env_id"], row["split"], **env_kwargs))
    episode.reset(row["task_index"])
    for node in trace.nodes:
        if node.sampled:
            episode.step((node.message.content or "").strip())
    episode.close()
    return episode, [node.message.content for node in trace.nodes if node.message.role == "user"]


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "integration-test-key")
    return "integration-test-key"


@pytest.fixture
def closed_envs(monkeypatch):
    """Every gym env the adapter makes, to check each rollout had its own and all were closed."""
    made = []

    def recording_make_env(*args, **kwargs):
        made.append(make_env(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(adapter, "make_env", recording_make_env)
    return made


@pytest.fixture(scope="module")
def served_tiny(tmp_path_factory):
    """``python -m mem1_agent.serve`` over a tiny model on a free loopback port, with a key."""
    from mem1_agent.tiny import make_tiny

    model = make_tiny(tmp_path_factory.mktemp("verifiers") / "tiny")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mem1_agent.serve", "--model", str(model), "--port", str(port)],
                            env={**os.environ, KEY_ENV: "integration-test-key"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                requests.get(f"{url}/models", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert proc.poll() is None, "mem1_agent.serve exited before answering"
        yield url, model.name  # the server names its model after the folder
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_eval_against_mem1_agent_serve_records_the_env_reward(served_tiny, api_key, closed_envs, tmp_path):
    url, model = served_tiny
    # Two turns per episode (a gym.make argument, passed through) keep the tiny model's CPU time short.
    env = adapter.load_environment(ENV_ID, "test", limit=2, max_turns=2)
    episodes = evaluate(env, url, model, tmp_path)
    assert len(episodes) == 2 and all(episode.ok for episode in episodes)
    assert len(closed_envs) == 2 and all(gym_env.unwrapped._closed for gym_env in closed_envs)
    for episode in episodes:
        [trace] = episode.traces
        reference, user_turns = replay(trace, max_turns=2)
        # The tiny model's text is mostly malformed: the env's error observations and reward 0.
        assert trace.rewards["env_reward"].score == reference.reward == trace.reward
        assert user_turns == reference.observations[: len(user_turns)]
        assert trace.num_turns >= 1 and trace.info["env_done"] == reference.done
        assert {key: trace.metrics[key] for key in reference.scores()} == {
            key: sum(value) / len(value) for key, value in reference.scores().items()}


class ScriptedChat(BaseHTTPRequestHandler):
    """A chat-completions endpoint whose reply is ``reply(first user message)``."""

    reply = staticmethod(lambda first: "")
    models_seen: list[str] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.models_seen.append(body["model"])
        first = next(message["content"] for message in body["messages"] if message["role"] == "user")
        message = {"role": "assistant", "content": self.reply(first)}
        data = json.dumps({"id": "c0", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted_chat():
    ScriptedChat.models_seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedChat)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_correct_answers_reach_the_rubric_as_the_env_reward(scripted_chat, api_key, monkeypatch, tmp_path):
    episode, answers = TextEpisode(make_env(ENV_ID, "test")), {}
    for row in task_rows(ENV_ID, "test", limit=2):
        items = episode.env.unwrapped.tasks[row["task_index"]].items
        answers[episode.reset(row["task_index"])] = join_answers([item.answers[0] for item in items])
    episode.close()
    monkeypatch.setattr(ScriptedChat, "reply", staticmethod(lambda first: f"<answer>{answers[first]}</answer>"))
    episodes = evaluate(adapter.load_environment(ENV_ID, "test", limit=2), scripted_chat, "oracle", tmp_path)
    assert ScriptedChat.models_seen == ["oracle", "oracle"]
    for episode in episodes:
        [trace] = episode.traces
        # Two questions answered right: the env's reward is 2.0 (one per exact match), in one turn.
        assert (trace.rewards["env_reward"].score, trace.reward, trace.num_turns) == (2.0, 2.0, 1)
        assert (trace.metrics["em"], trace.metrics["f1"], trace.info["env_done"]) == (1.0, 1.0, True)


@pytest.mark.parametrize(("env_id", "action"), [("MEM1-WebQA-1", "<search>capital</search>"),
                                                ("MEM1-WebShop-Text", "<answer>search[red shoes]</answer>")])
def test_every_family_plays_to_the_envs_end(scripted_chat, api_key, monkeypatch, tmp_path, env_id, action):
    monkeypatch.setattr(ScriptedChat, "reply", staticmethod(lambda first: action))
    [episode] = evaluate(adapter.load_environment(env_id, "test", limit=1), scripted_chat, "scripted", tmp_path)
    [trace] = episode.traces
    reference, user_turns = replay(trace)
    assert reference.done and trace.info["env_done"]  # the env's turn budget ended the exchange
    assert user_turns == reference.observations[:-1]  # the last observation ends the episode, unsent
    assert trace.rewards["env_reward"].score == reference.reward


def test_the_taskset_is_the_splits_task_rows():
    env = adapter.load_environment("MEM1-MultiHopQA-1", "validation", limit=3)
    tasks = list(env.taskset)
    assert [task.data.info for task in tasks] == task_rows("MEM1-MultiHopQA-1", "validation", limit=3)
    assert all(task.data.prompt is None for task in tasks)  # the env's first observation opens each exchange
    with pytest.raises(ValueError, match="limit must be >= 1"):
        adapter.load_environment(ENV_ID, limit=0)
