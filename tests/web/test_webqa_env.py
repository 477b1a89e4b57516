"""MEM1-WebQA end to end against the mini-web over real HTTP: episodes, info, rewards, registry, providers."""

import dataclasses
import doctest
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import mem1_gym
from mem1_gym import protocol
from mem1_gym.envs import web_qa
from mem1_gym.oracle import ScriptedOracle
from mem1_gym.web.server import shared_server

WEB_IDS = [f"MEM1-WebQA-{n}" for n in (1, 2, 4, 8, 16)]
STEP_KEYS = {"turn", "turns_left", "max_turns", "task_id", "task_index", "n_questions", "action_type", "valid_action",
             "error", "query", "url", "has_think", "consumed_chars", "provider", "result_urls", "search_error",
             "open_error", "page_cut", "injected"}
FINAL_KEYS = {"em", "f1", "em_sum", "f1_sum", "n_correct", "success", "answered", "n_answers", "answer_count_mismatch"}


def test_ids_are_registered_unversioned_and_deterministic():
    assert set(WEB_IDS) <= set(mem1_gym.ENV_IDS)
    for env_id in WEB_IDS:
        spec = gym.registry[env_id]
        assert spec.version is None and spec.nondeterministic is False
        assert spec.kwargs["n_questions"] == int(env_id.rsplit("-", 1)[1])


@pytest.mark.parametrize("env_id", WEB_IDS)
def test_check_env_passes_with_no_warnings(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()
    env.close()  # idempotent


def test_doctest_of_the_env():
    assert doctest.testmod(web_qa, raise_on_error=False).failed == 0


def play_oracle(env, **reset_kwargs):
    obs, info = env.reset(**reset_kwargs)
    oracle = ScriptedOracle()
    oracle.reset(env.unwrapped.task)
    total, transcript = 0.0, [obs]
    while True:
        obs, reward, terminated, truncated, info = env.step(oracle.act(obs, info["turns_left"]))
        total += reward
        transcript.append(obs)
        if terminated or truncated:
            return total, terminated, info, transcript


@pytest.mark.parametrize("n", [1, 4])
def test_oracle_episode_over_http_scores_f1(n):
    env = gym.make(f"MEM1-WebQA-{n}", split="validation", max_turns=4 * n + 1)  # room for every hop
    total, terminated, info, transcript = play_oracle(env, options={"task_index": 0})
    assert terminated and info["success"] and total == pytest.approx(float(n)) == pytest.approx(info["f1_sum"])
    assert info["em"] == [1.0] * n and info["provider"] == "miniweb"
    for obs in transcript[1:-1]:  # every search result: hint, rank, title, a URL of the mini-web, a snippet
        assert "[HINT]" in obs and "Doc 1(Title: " in obs and "\nURL: http://miniweb.test/wiki/" in obs
    env.close()


def test_snippets_carry_the_hop_answers():
    """The mini-web is answerable from snippets alone (open is off by default): the oracle's
    keyword query for a hop finds its answer in the top-5 snippets for most hops."""
    env = gym.make("MEM1-WebQA-16", split="validation")
    env.reset(seed=0)
    hops = [hop for item in env.unwrapped.task.items for hop in item.hops]
    found = 0
    for hop in hops:
        results = env.unwrapped.provider.search(hop.query, 5)
        found += any(protocol.normalize_answer(hop.answer) in protocol.normalize_answer(r.snippet) for r in results)
    assert found / len(hops) >= 0.8, f"{found}/{len(hops)}"
    env.close()


def test_info_is_flat_and_open_reads_a_cleaned_page():
    env = gym.make("MEM1-WebQA-2", allow_open=True, page_chars=300)
    obs, info = env.reset(seed=1)
    assert STEP_KEYS <= set(info) and info["injected"] == obs and "<open>" in obs
    obs, _, _, _, info = env.step("<think>s</think><search>Girostia capital</search> junk")
    assert set(info) == STEP_KEYS and info["query"] == "Girostia capital" and len(info["result_urls"]) == 5
    assert info["consumed_chars"] == len("<think>s</think><search>Girostia capital</search>")
    url = info["result_urls"][0]
    obs, _, _, _, info = env.step(f"<think>s</think><open>{url}</open>")
    assert info["action_type"] == "open" and info["url"] == url and info["open_error"] == "" and info["valid_action"]
    body = obs.split("[/HINT]", 1)[1]
    assert f"Page: {url}" in body and "# Girostia" in body and "Its capital is Vovuror" in body
    assert "window.miniweb" not in body and "font-family" not in body and "Home" not in body  # script, style, nav
    assert "Links on this page:" in body and "/wiki/1" in body  # the article's other sections
    _, _, terminated, _, info = env.step("<answer>Vovuror; x</answer>")
    assert terminated and set(info) == STEP_KEYS | FINAL_KEYS
    assert all(not isinstance(v, dict) for v in info.values())
    env.close()


def test_page_text_is_cut_to_the_budget():
    env = gym.make("MEM1-WebQA-1", allow_open=True, page_chars=80, page_links=0)
    env.reset(seed=0)
    url = env.step("<search>Girostia</search>")[4]["result_urls"][0]
    obs, _, _, _, info = env.step(f"open[{url}]")
    text = obs.split("Title: ", 1)[1].split("\n", 2)[2]
    assert info["page_cut"] and "[... the rest of the page was cut]" in obs
    assert len(text.split("\n[...")[0]) <= 80 and "Links on this page" not in obs
    env.close()


def test_open_is_off_by_default():
    env = gym.make("MEM1-WebQA-1")
    obs, info = env.reset(seed=0)
    assert "<open>" not in obs
    url = env.step("<search>Girostia</search>")[4]["result_urls"][0]
    obs, reward, terminated, _, info = env.step(f"<open>{url}</open>")
    assert info["action_type"] == "invalid" and not info["valid_action"] and "allow_open=True" in info["error"]
    assert not terminated and reward == 0.0 and "<search>" in obs and "to read a page" not in obs
    env.close()


def test_em_reward_option_and_truncation():
    env = gym.make("MEM1-WebQA-2", reward="em", max_turns=2)
    env.reset(seed=0)
    assert env.step("<search>river</search>")[3] is False
    _, reward, terminated, truncated, info = env.step("<search>river</search>")
    assert truncated and not terminated and reward == 0.0 and info["answered"] is False and info["f1"] == [0.0, 0.0]
    with pytest.raises(gym.error.ResetNeeded):
        env.step("<search>again</search>")
    env.close()


def test_same_seed_same_episode_with_stable_urls():
    def rollout(seed):
        env = gym.make("MEM1-WebQA-2", allow_open=True)
        out = [env.reset(seed=seed)]
        for action in ["<search>founded</search>", "bad", "search[born in]"]:
            out.append(env.step(action))
        env.close()
        return out

    first, second = rollout(3), rollout(3)
    assert first == second
    assert "URL: http://miniweb.test/wiki/" in first[1][0] and shared_server().url not in first[1][0]


def test_sync_vector_env_shares_the_mini_web():
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("MEM1-WebQA-1") for _ in range(3)])
    envs.reset(seed=0)
    obs, *_ = envs.step(["<search>capital</search>"] * 3)
    assert all("URL: http://miniweb.test/wiki/" in o for o in obs)
    assert len({env.unwrapped.provider.base_url for env in envs.envs}) == 1  # one server for the process
    envs.close()


def test_live_provider_needs_its_key_and_makes_the_spec_nondeterministic(monkeypatch, fake_web):
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    with pytest.raises(ValueError, match="SERPER_API_KEY"):
        gym.make("MEM1-WebQA-1", search_provider="serper")
    monkeypatch.setenv("SERPER_API_KEY", "k-123")
    with pytest.warns(UserWarning, match="qa_path"):
        env = gym.make("MEM1-WebQA-4", search_provider="serper", search_url=fake_web.url + "/search")
    assert env.unwrapped.spec.nondeterministic is True and env.spec.id == "MEM1-WebQA-4"
    assert gym.registry["MEM1-WebQA-4"].nondeterministic is False
    assert dataclasses.replace(env.unwrapped.spec, nondeterministic=False) != env.unwrapped.spec
    env.close()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"search_provider": "bing"}, "search_provider must be one of"),
        ({"retriever": "http://127.0.0.1:1/retrieve"}, "serve-miniweb"),
        ({"page_chars": 0}, "page_chars"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"qa_path": "questions.jsonl"}, "corpus_path"),
        ({"evidence_bonus": 0.5}, "MultiHopQA only"),
        ({"k": 101}, "k must be <= 100 with the mini-web"),  # its server answers 422 past its cap
    ],
)
def test_bad_config_says_what_to_change(kwargs, match):
    with pytest.raises(ValueError, match=match):
        web_qa.WebQAConfig(**kwargs)


def test_mini_web_ignores_proxy_settings(monkeypatch):
    """A proxy cannot reach this machine's loopback: the offline default must not follow HTTP_PROXY."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("NO_PROXY", "")
    env = gym.make("MEM1-WebQA-1")
    env.reset(seed=0)
    info = env.step("<search>Girostia capital</search>")[4]
    assert info["search_error"] == "" and info["result_urls"]
    env.close()


def test_async_vector_env_runs_one_mini_web_per_worker():
    envs = gym.vector.AsyncVectorEnv([lambda: gym.make("MEM1-WebQA-1") for _ in range(2)], shared_memory=False)
    envs.reset(seed=0)
    obs, rewards, terminated, truncated, infos = envs.step(["<search>capital</search>", "<answer>x</answer>"])
    assert "URL: http://miniweb.test/wiki/" in obs[0] and terminated[1] and not terminated[0]
    envs.close()
