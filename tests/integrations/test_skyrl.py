"""The SkyRL-gym adapter, driven through skyrl-gym's own ``make`` / ``init`` / ``step`` / ``close``."""

from __future__ import annotations

import pytest

skyrl_gym = pytest.importorskip("skyrl_gym", reason='the SkyRL adapter needs pip install -e ".[skyrl]"')

from omegaconf import DictConfig  # noqa: E402  (skyrl-gym's own dependency)

from mem1_gym import ENV_IDS  # noqa: E402
from mem1_gym.integrations.skyrl import env_class, register_skyrl_envs, skyrl_rows  # noqa: E402
from mem1_gym.integrations.tasks import TextEpisode, make_env  # noqa: E402
from mem1_gym.protocol import join_answers  # noqa: E402

# Per family: a malformed turn, then valid ones (QA ends on its answer, WebShop goes on).
ACTIONS = {
    "MEM1-MultiHopQA-2": ["hello", "<think>x</think><search>founded</search>", "<answer>a; b</answer>"],
    "MEM1-WebQA-1": ["hello", "<search>capital</search>", "<answer>x</answer>"],
    "MEM1-WebShop-Text": ["hello", "<answer>search[red shoes]</answer>", "<answer>click[< prev]</answer>"],
}
ACTIONS["MEM1-WebShop"] = ACTIONS["MEM1-WebShop-Text"]
FAMILIES = ["MEM1-MultiHopQA-2", "MEM1-WebQA-1", "MEM1-WebShop-Text",
            pytest.param("MEM1-WebShop", marks=pytest.mark.browser)]  # Selenium + Chromium


def make(row: dict, **extra):
    """What SkyRL's generator does: the row minus ``prompt`` and ``env_class`` is ``extras``."""
    extras = {key: value for key, value in row.items() if key not in ("prompt", "env_class")}
    return skyrl_gym.make(row["env_class"], env_config=DictConfig({}), extras={**extras, **extra})


def test_every_env_id_is_registered_once():
    assert register_skyrl_envs() == tuple(env_class(env_id) for env_id in ENV_IDS)
    assert register_skyrl_envs() == tuple(env_class(env_id) for env_id in ENV_IDS)  # idempotent
    assert {env_class(env_id) for env_id in ENV_IDS} <= set(skyrl_gym.registry)


@pytest.mark.parametrize("env_id", FAMILIES)
def test_skyrl_env_plays_exactly_the_gym_env(env_id):
    row = skyrl_rows(env_id, "test", limit=2)[1]
    assert row["env_class"] == f"mem1_gym/{env_id}" and row["task_index"] == 1
    reference = TextEpisode(make_env(env_id, "test"))
    env = make(row, max_turns=50)
    try:
        chat, _ = env.init([{"role": "system", "content": "be brief"}, *row["prompt"]])
        first = reference.reset(1)
        assert chat == [{"role": "system", "content": "be brief"}, {"role": "user", "content": first}]
        assert row["prompt"] == [{"role": "user", "content": first}]
        for action in ACTIONS[env_id]:
            before = reference.reward
            observation = reference.step(action)
            out = env.step(action)
            assert (out["reward"], out["done"]) == (reference.reward - before, reference.done)
            assert out["observations"] == ([] if reference.done else [{"role": "user", "content": observation}])
            # WebShop's info["url"] names its env instance's session; everything else is the env's own.
            assert {**out["metadata"], "url": None} == {**reference.info, "url": None}
        assert env.get_metrics()["turns"] == len(ACTIONS[env_id])
    finally:
        env.close()
        reference.close()


def test_a_correct_answer_earns_the_env_reward():
    row = skyrl_rows("MEM1-MultiHopQA-2", "test", limit=1)[0]
    env = make(row, max_turns=6)
    try:
        env.init(row["prompt"])
        items = env.episode.env.unwrapped.tasks[0].items
        out = env.step(f"<answer>{join_answers([item.answers[0] for item in items])}</answer>")
        # The QA reward sums the exact match of every question: 2.0 for two right answers.
        assert (out["reward"], out["done"], out["observations"]) == (2.0, True, [])
        assert env.get_metrics() == {"reward": 2.0, "turns": 1, "em": 1.0, "f1": 1.0}
    finally:
        env.close()


def test_the_trainers_max_turns_ends_the_episode():
    row = skyrl_rows("MEM1-MultiHopQA-2", "test", limit=1)[0]
    env = make(row, max_turns=1)
    try:
        env.init(row["prompt"])
        out = env.step("<search>founded</search>")
        assert out["done"] and out["observations"] == [] and not env.episode.done
    finally:
        env.close()


def test_bad_rows_and_configs_are_refused_with_the_fix():
    row = skyrl_rows("MEM1-MultiHopQA-2", "test", limit=1)[0]
    with pytest.raises(ValueError, match="set its env_class to mem1_gym/MEM1-MultiHopQA-2"):
        make({**row, "env_class": env_class("MEM1-MultiHopQA-1")})
    with pytest.raises(ValueError, match="needs a 'task_index' column"):
        make({key: value for key, value in row.items() if key != "task_index"})
    with pytest.raises(ValueError, match="gym.make arguments go under env_kwargs"):
        skyrl_gym.make(row["env_class"], env_config=DictConfig({"top_k": 3}), extras={"task_index": 0})
