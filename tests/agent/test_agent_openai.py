"""The OpenAI-compatible backend against a loopback server that speaks completions and chat."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gymnasium as gym
import pytest
from mem1_agent.context import Mem1Context
from mem1_agent.policies import (
    GenerationRequest,
    PolicySpec,
    SamplingConfig,
    make_policy,
    parse_policy_spec,
)
from mem1_agent.records import FinishReason
from mem1_agent.rollout import EpisodeSpec, RolloutConfig, rollout

import mem1_gym  # noqa: F401

SEARCH = "<think>Q1: pending.</think>\n<search>Eigix College founded"  # the server strips "</search>"
ANSWER = "<think>done</think>\n<answer>Eitho Eigix; Telia"


class FakeOpenAI(BaseHTTPRequestHandler):
    """Searches until the request allows only </answer>, then answers. Records every request body."""

    requests: list = []
    encode = None  # set by the fixture: the counting tokenizer, for token_id:N answers

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, payload, status=200):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/v1/models":
            return self._send({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        self._send({"error": "not found"}, 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        final = body["stop"] == ["</answer>"]
        text, stop = (ANSWER, "</answer>") if final else (SEARCH, "</search>")
        if body.get("return_tokens_as_token_ids"):
            tokens = [f"token_id:{i}" for i in type(self).encode(text + stop)]
        else:
            tokens = ["<think>", "..."]  # text tokens: ids unknown to the client
        logprobs = [-0.5] * len(tokens)
        if self.path == "/v1/completions":
            choice = {"text": text, "finish_reason": "stop", "logprobs": {"tokens": tokens, "token_logprobs": logprobs}}
        elif self.path == "/v1/chat/completions":
            content = [{"token": t, "logprob": lp} for t, lp in zip(tokens, logprobs)]
            choice = {"message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": {"content": content}}
        else:
            return self._send({"error": "not found"}, 404)
        self._send({"choices": [{"index": 0, **choice}]})


@pytest.fixture
def server(codec):
    FakeOpenAI.requests = []
    FakeOpenAI.encode = staticmethod(codec.encode)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def play(policy):
    env = gym.make("MEM1-MultiHopQA-2", split="validation", max_turns=3)
    [traj] = rollout([env], policy, Mem1Context(), [EpisodeSpec(seed=0, task_index=0)], RolloutConfig())
    env.close()
    return traj


@pytest.mark.parametrize("backend", ["openai", "openai-chat"])
def test_completions_and_chat_play_an_episode(server, backend, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    policy = make_policy(f"{backend}:{server}", SamplingConfig(temperature=0.0, max_new_tokens=64))
    assert policy.model == "fake-model"  # taken from /models
    traj = play(policy)
    assert [t.action_type for t in traj.turns] == ["search", "search", "answer"]
    assert traj.turns[0].action.text.endswith("</search>")  # the stripped stop string is put back
    assert traj.turns[-1].terminated and traj.answered
    assert all(not t.ids_as_sampled and t.logprobs is None for t in traj.turns)  # text tokens: ids re-encoded
    sent = FakeOpenAI.requests
    assert all(r["auth"] == "Bearer sk-test-secret" for r in sent)
    assert [r["body"]["stop"] for r in sent] == [["</search>", "</answer>"]] * 2 + [["</answer>"]]
    if backend == "openai":
        assert sent[0]["path"] == "/v1/completions" and sent[0]["body"]["prompt"] == traj.prompt.text
    else:
        assert sent[0]["path"] == "/v1/chat/completions"
        assert sent[1]["body"]["messages"] == [{"role": "user", "content": "".join(
            s.text for s in traj.context_segments(1))}]
    assert "sk-test-secret" not in repr(policy.config) and "sk-test-secret" not in policy.name


def test_server_token_ids_are_kept_as_sampled(server, codec):
    from mem1_agent.policies.openai_http import OpenAIConfig, OpenAIPolicy

    policy = OpenAIPolicy(OpenAIConfig(server, "fake-model", request_token_ids=True), codec)
    traj = play(policy)
    first = traj.turns[0]
    assert first.ids_as_sampled and first.generated_ids == codec.encode(SEARCH + "</search>")
    assert first.logprobs == (-0.5,) * len(first.generated_ids) and first.finish is FinishReason.STOP


def test_unreachable_server_fails_before_any_work():
    with pytest.raises(RuntimeError, match="cannot reach the OpenAI-compatible server"):
        make_policy("openai:http://127.0.0.1:9/v1:m")


def test_policy_spec_parsing(monkeypatch):
    assert parse_policy_spec("openai:http://h:8000/v1:Qwen/Qwen2.5-7B") == PolicySpec(
        "openai", "http://h:8000/v1", "Qwen/Qwen2.5-7B")
    assert parse_policy_spec("openai-chat:https://api.x.com/v1") == PolicySpec("openai-chat", "https://api.x.com/v1")
    assert parse_policy_spec("openai:http://h:8000:m") == PolicySpec("openai", "http://h:8000", "m")
    assert parse_policy_spec("transformers:/m") == PolicySpec("hf", "/m")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://b:1/v1")
    assert parse_policy_spec("openai:gpt-4o-mini") == PolicySpec("openai", "http://b:1/v1", "gpt-4o-mini")
    with pytest.raises(ValueError, match="unknown policy backend"):
        parse_policy_spec("llama:x")


@pytest.mark.parametrize("where", ["model list", "completion"])
def test_a_deeply_nested_answer_is_a_runtime_error_naming_the_url(codec, where):
    from brokenhttp import BrokenHttp, answer, deep_json
    from mem1_agent.policies.openai_http import OpenAIConfig, OpenAIPolicy

    models = answer(json.dumps({"data": [{"id": "m"}]}).encode(), Content_Type="application/json")
    server = BrokenHttp(*([deep_json()] if where == "model list" else [models, deep_json()]))
    try:
        with pytest.raises(RuntimeError, match=r"/v1/\w+ request failed after 1 attempt\(s\): JSON nested more"):
            policy = OpenAIPolicy(OpenAIConfig(f"{server.url}/v1"), codec)
            policy.generate([GenerationRequest(0, (1,), "Q?", ("</search>",), 4, "", 3)])
    finally:
        server.stop()


def test_429_is_retried_after_its_retry_after(codec):
    from brokenhttp import BrokenHttp, answer
    from mem1_agent.policies.openai_http import OpenAIConfig, OpenAIPolicy

    choice = {"choices": [{"text": "hello", "finish_reason": "length", "logprobs": None}]}
    server = BrokenHttp(answer(b'{"error": "rate limited"}', "429 Too Many Requests", Retry_After="0"),
                        answer(json.dumps(choice).encode(), Content_Type="application/json"))
    try:
        policy = OpenAIPolicy(OpenAIConfig(f"{server.url}/v1", "m"), codec)
        [generation] = policy.generate([GenerationRequest(0, (1,), "Q?", ("</search>",), 4, "", 3)])
    finally:
        server.stop()
    assert generation.text == "hello" and generation.finish is FinishReason.LENGTH
    assert [path for _, path, _ in server.seen] == ["/v1/completions"] * 2


def test_eval_takes_its_key_from_the_environment_never_the_command_line(monkeypatch, capsys):
    """A flag's value shows in ps: `mem1-agent eval` reads the key from the variable --api-key-env names."""
    from mem1_agent import cli

    seen = {}

    def capture(spec, sampling, **kwargs):
        seen["key"] = kwargs["api_key"]
        raise RuntimeError("stop after the policy spec")  # mapped to exit code 2, before any env exists

    monkeypatch.setattr("mem1_agent.policies.make_policy", capture)
    policy = ["eval", "--policy", "openai:http://127.0.0.1:9/v1:m", "--episodes", "1", "--no-progress"]
    assert cli.main([*policy, "--api-key", "sk-on-the-command-line"]) == 2
    assert "--api-key is not taken" in capsys.readouterr().err and "key" not in seen
    monkeypatch.setenv("MY_EVAL_KEY", "sk-from-the-environment")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert cli.main([*policy, "--api-key-env", "MY_EVAL_KEY"]) == 2
    assert seen["key"] == "sk-from-the-environment"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-default-variable")
    assert cli.main(policy) == 2 and seen["key"] == "sk-default-variable"  # the shipped default variable
    monkeypatch.delenv("MY_EVAL_KEY")
    assert cli.main([*policy, "--api-key-env", "MY_EVAL_KEY"]) == 2
    assert "$MY_EVAL_KEY is not set" in capsys.readouterr().err
