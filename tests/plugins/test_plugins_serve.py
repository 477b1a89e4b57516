"""The OpenAI-compatible server, driven by the agent's own OpenAI backend against a real server."""

from __future__ import annotations

import os

import psutil
import requests
from mem1_agent.policies.base import GenerationRequest, SamplingConfig, TokenCodec
from mem1_agent.policies.openai_http import OpenAIConfig, OpenAIPolicy
from mem1_agent.records import FinishReason
from mem1_agent.serve import main as serve_main
from mem1_agent.serve_api import cut_at_stop
from mem1_agent.tiny import load_tokenizer
from plugins_server import start_server

GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=24)


def _policy(url, tiny_model, api="completions", **config):
    codec = TokenCodec(load_tokenizer(tiny_model), name="tiny")
    return OpenAIPolicy(OpenAIConfig(base_url=url, api=api, request_token_ids=True, **config), codec, GREEDY)


def _request(policy, text, stop=(), max_new_tokens=24, slot=0):
    ids = policy.codec.encode(text)
    return GenerationRequest(slot, ids, text, tuple(stop), max_new_tokens, "", 3)


def test_models_lists_the_served_folder(server, tiny_model):
    assert requests.get(f"{server}/models", timeout=10).json()["data"][0]["id"] == tiny_model.name
    assert _policy(server, tiny_model).model == tiny_model.name


def test_completions_exact_ids_and_stop_strings(server, tiny_model):
    policy = _policy(server, tiny_model)
    free = policy.generate([_request(policy, "Answer the following question: where")])[0]
    assert free.ids_as_sampled and len(free.token_ids) == 24 and free.finish is FinishReason.LENGTH
    assert free.text == policy.codec.decode(free.token_ids, skip_special_tokens=True)
    stop = free.text[4:7]  # greedy decoding repeats itself, so this text comes back at the same place
    cut = policy.generate([_request(policy, "Answer the following question: where", stop=[stop])])[0]
    assert cut.finish is FinishReason.STOP
    assert cut.text == free.text[: free.text.find(stop)] + stop  # the client restores the stop string
    assert len(cut.token_ids) < 24


def test_chat_endpoint_matches_completions_without_a_template(server, tiny_model):
    completions, chat = _policy(server, tiny_model), _policy(server, tiny_model, api="chat")
    prompt = "Q1: Who founded Eigix College?"
    assert chat.generate([_request(chat, prompt)])[0].text == completions.generate([_request(completions, prompt)])[0].text


def test_concurrent_requests_are_batched_and_rows_stay_independent(server, tiny_model):
    policy = _policy(server, tiny_model, concurrency=4)
    prompts = ["Q1: where", "Doc 1(Title: a) a long passage about Telia and Cerabedale", "search", "x y z"]
    alone = [policy.generate([_request(policy, p, max_new_tokens=8)])[0].text for p in prompts]
    before = requests.get(f"{server.removesuffix('/v1')}/stats", timeout=10).json()
    together = policy.generate([_request(policy, p, max_new_tokens=8, slot=i) for i, p in enumerate(prompts)])
    after = requests.get(f"{server.removesuffix('/v1')}/stats", timeout=10).json()
    assert [g.text for g in together] == alone  # left padding does not change a row's greedy tokens
    assert after["requests"] - before["requests"] == 4
    assert after["generate_calls"] - before["generate_calls"] < 4


def test_bad_requests_say_what_to_change(server):
    post = lambda path, body: requests.post(f"{server}/{path}", json=body, timeout=30)
    wrong = post("completions", {"model": "gpt-9", "prompt": "a"})
    assert wrong.status_code == 404 and "serves" in wrong.json()["error"]["message"]
    assert post("completions", {"prompt": "a", "stream": True}).status_code == 400
    too_many = post("completions", {"prompt": "a", "max_tokens": 10**6})
    assert too_many.status_code == 422 and "--max-tokens-limit" in too_many.json()["error"]["message"]
    assert post("chat/completions", {"messages": "hi"}).status_code == 422


def test_api_key_comes_from_the_environment_never_the_command_line(tiny_model):
    proc, url = start_server(tiny_model, env={**os.environ, "MEM1_AGENT_API_KEY": "sesame"})
    try:
        assert "sesame" not in " ".join(psutil.Process(proc.pid).cmdline())
        assert requests.get(f"{url}/models", timeout=10).status_code == 401
        wrong = requests.get(f"{url}/models", headers={"Authorization": "Bearer sesamf"}, timeout=10)
        good = requests.get(f"{url}/models", headers={"Authorization": "Bearer sesame"}, timeout=10)
        assert wrong.status_code == 401 and good.status_code == 200
        assert requests.get(f"{url.removesuffix('/v1')}/health", timeout=10).status_code == 200  # probes need no key
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_key_on_the_command_line_is_refused_with_the_remedy(tiny_model, monkeypatch, capsys):
    monkeypatch.delenv("UNSET_KEY_VARIABLE", raising=False)
    assert serve_main(["--model", str(tiny_model), "--api-key-env", "UNSET_KEY_VARIABLE"]) == 2
    assert "UNSET_KEY_VARIABLE is not set" in capsys.readouterr().err  # named but empty: never serve without a key
    assert serve_main(["--model", str(tiny_model), "--api-key", "sesame"]) == 2
    assert "MEM1_AGENT_API_KEY" in capsys.readouterr().err


def test_cut_at_stop_takes_the_earliest_stop():
    assert cut_at_stop("a</answer>b</search>", ["</search>", "</answer>"]) == ("a", "</answer>")
    assert cut_at_stop("abc", []) == ("abc", None)
