"""Issue 19, 1c/1d: every env family exposes one protocol object, the agent drives all three through
it (and refuses an env without one), groups are one task, and eval runs on WebShop and WebQA."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from gymnasium.envs.classic_control import CartPoleEnv
from mem1_agent import cli
from mem1_agent.context import Mem1Context
from mem1_agent.eval import EvalConfig, plan
from mem1_agent.rollout import EpisodeSpec, RolloutConfig, rollout
from mem1_agent.train.learner import LearnerConfig, group_specs

import mem1_gym  # noqa: F401  (registers the env ids)
from mem1_gym import protocol
from mem1_gym.protocol import EnvProtocol, env_protocol

FAMILIES = {  # env id -> (family, memory tags, score keys, the info key naming the task)
    "MEM1-MultiHopQA-2": ("qa", ("think",), ("em", "f1"), "task_id"),
    "MEM1-WebQA-1": ("webqa", ("think",), ("em", "f1"), "task_id"),
    "MEM1-WebShop-Text": ("webshop", ("think", "summary"), ("reward", "success"), "goal_id"),
}
NO_PROTOCOL = "MEM1Test-NoProtocol-v0"
gym.register(NO_PROTOCOL, entry_point=lambda **kwargs: CartPoleEnv())  # any split= kwarg is ignored


@pytest.mark.parametrize("env_id", FAMILIES)
def test_every_family_exposes_its_protocol_and_addresses_tasks_by_index(env_id):
    family, memory, scores, id_key = FAMILIES[env_id]
    env = gym.make(env_id, split="test")
    p = env_protocol(env)
    assert isinstance(p, EnvProtocol) and p is env.unwrapped.protocol
    assert (p.family, p.memory_tags, p.score_keys) == (family, memory, scores)
    assert p.n_tasks > 3 and len(set(p.task_ids)) == p.n_tasks and "</answer>" in p.stops(5)
    assert p.stops(1) == ("</answer>",)  # the last turn may only answer
    for index in (0, p.n_tasks - 1):
        _, info = env.reset(seed=123, options=p.reset_options(index))
        assert info[id_key] == p.task_ids[index]
    env.close()


TURNS = {  # one full turn per family and what the protocol's parser reads in it
    "MEM1-MultiHopQA-2": ("<think>m</think><search>q</search>", "search", "q"),
    "MEM1-WebQA-1": ("<think>m</think><open>http://a.test/</open>", "open", "http://a.test/"),
    "MEM1-WebShop-Text": ("<think>m</think><summary>s</summary><answer>Click[Buy Now]</answer>", "click", "Buy Now"),
}


@pytest.mark.parametrize("env_id", FAMILIES)
def test_one_parser_serves_the_three_families(env_id):
    text, kind, argument = TURNS[env_id]
    p = {"qa": protocol.QA_PROTOCOL, "webqa": protocol.WEBQA_PROTOCOL, "webshop": protocol.WEBSHOP_PROTOCOL}[
        FAMILIES[env_id][0]]
    turn = p.parse(text)
    assert (turn.kind, turn.argument, turn.think, turn.end) == (kind, argument, "m", len(text))
    assert set(turn.memory) == set(p.memory_tags)
    # the family parsers of before are thin wrappers of that one parser
    legacy = {"qa": protocol.parse_action, "webqa": protocol.parse_web_action, "webshop": protocol.parse_shop_action}
    old = legacy[p.family](text)
    assert old.type.name.lower() == kind and old.think == "m"


def test_the_agent_refuses_an_env_without_a_protocol(codec, script_policy, capsys):
    env = gym.make(NO_PROTOCOL)
    with pytest.raises(ValueError, match=r"env MEM1Test-NoProtocol-v0 has no mem1_gym protocol.*MEM1-WebShop-Text"):
        rollout([env], script_policy(["x"]), Mem1Context(), [EpisodeSpec(seed=0)])
    with pytest.raises(ValueError, match="has no mem1_gym protocol"):
        plan(EvalConfig(env_id=NO_PROTOCOL, episodes=1), script_policy(["x"]), lambda env_id: gym.make(env_id))
    assert cli.main(["eval", "--env", NO_PROTOCOL, "--policy", "oracle", "--episodes", "1", "--no-progress"]) == 2
    assert "has no mem1_gym protocol" in capsys.readouterr().err


def test_train_refuses_an_env_without_a_protocol_before_loading_the_model(tiny_dir, monkeypatch, capsys):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the env was checked")

    monkeypatch.setattr(cli, "_load_model", no_model)
    assert cli.main(["train", "--env", NO_PROTOCOL, "--model", str(tiny_dir), "--device", "cpu"]) == 2
    assert "has no mem1_gym protocol" in capsys.readouterr().err


@pytest.mark.parametrize("env_id", FAMILIES)
def test_a_group_is_one_task_in_every_family(env_id, script_policy):
    """Two groups of three rollouts: each group plays one task (WebShop: the same goal text) with
    distinct reset seeds, and its id travels from the spec to the trajectory."""
    env_kwargs = {"max_turns": 1}
    envs = [gym.make(env_id, **env_kwargs) for _ in range(3)]
    config = LearnerConfig(env_id=env_id, tasks_per_iteration=2, group_size=3, seed=5)
    specs = group_specs(env_protocol(envs[0]).n_tasks, config, iteration=0)
    try:
        trajectories = rollout(envs, script_policy(["<answer>x</answer>"]), Mem1Context(), specs,
                               RolloutConfig(max_new_tokens=8))
    finally:
        for env in envs:
            env.close()
    assert sorted(t.group for t in trajectories) == [0, 0, 0, 1, 1, 1]
    for group in (0, 1):
        members = [t for t in trajectories if t.group == group]
        assert len({t.task_id for t in members}) == 1 and members[0].task_id
        assert len({t.prompt.text for t in members}) == 1  # the same question(s) or the same goal instruction
        assert len({t.seed for t in members}) == 3


@pytest.mark.parametrize("env_id, score", [("MEM1-WebShop-Text", "success"), ("MEM1-WebQA-1", "em")])
def test_tiny_model_eval_on_webshop_and_webqa(env_id, score, tiny_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = cli.main(["eval", "--env", env_id, "--policy", f"hf:{tiny_dir}", "--episodes", "2", "--concurrency", "2",
                     "--max-new-tokens", "8", "--max-turns", "2", "--device", "cpu", "--out", str(out),
                     "--no-progress"])
    assert code == 0, capsys.readouterr().err
    [result] = json.loads((out / "report.json").read_text())["results"]
    assert result["n"] == 2 and score in result["scores"]
    env = gym.make(env_id, split="test")
    task_ids = set(env_protocol(env).task_ids)
    env.close()
    records = [json.loads(line) for line in (out / f"{env_id}.mem1.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["task_id"] in task_ids for r in records)
    table = (out / "report.md").read_text()
    assert ("| success |" in table) == (env_id == "MEM1-WebShop-Text")
