"""Registry-wide checks: every registered id passes check_env silently, is deterministic and survives fuzzing."""

import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mem1_gym

TOKENS = ["<think>", "</think>", "<search>", "</search>", "<answer>", "</answer>", "<information>",
          "search[", "answer[", "]", ";", " ", "\n", "x", "Röntgen", "\x00", "\u00a0", "中"]


def test_exactly_the_documented_ids_are_registered():
    ours = sorted(i for i in gym.registry if i.startswith("MEM1-"))
    assert ours == sorted(mem1_gym.ENV_IDS)
    assert {f"MEM1-MultiHopQA-{n}" for n in (1, 2, 3, 4, 6, 8, 16)} <= set(ours)
    assert all(gym.registry[i].version is None for i in ours)  # unversioned, as users type them


QA_IDS = [i for i in mem1_gym.ENV_IDS if i.startswith("MEM1-MultiHopQA-")]


@pytest.mark.parametrize("env_id", QA_IDS)
def test_check_env_passes_with_no_warnings(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()
    env.close()  # idempotent


def test_prefixed_id_works_without_import():
    env = gym.make("mem1_gym:MEM1-MultiHopQA-1")
    assert env.unwrapped.config.n_questions == 1
    env.close()


@pytest.mark.parametrize("env_id", ["MEM1-MultiHopQA-1", "MEM1-MultiHopQA-16"])
def test_same_seed_same_episode(env_id):
    actions = ["<think>a</think><search>founded</search>", "garbage", "search[born in]", "<answer>x</answer>"]

    def rollout(seed):
        env = gym.make(env_id)
        out = [env.reset(seed=seed)]
        for action in actions:
            out.append(env.step(action))
            if out[-1][2] or out[-1][3]:
                break
        env.close()
        return out

    first, second, other = rollout(7), rollout(7), rollout(8)
    assert first == second
    assert first[0][0] != other[0][0]  # a different seed draws a different task


@pytest.mark.parametrize("n", mem1_gym.MULTIHOP_QA_HORIZONS)
def test_reset_shows_n_questions_and_budget(n):
    env = gym.make(f"MEM1-MultiHopQA-{n}")
    obs, info = env.reset(seed=0)
    assert info["n_questions"] == n and info["turns_left"] == env.unwrapped.max_turns
    assert all(f"Q{i}: " in obs for i in range(1, n + 1)) and f"Q{n + 1}: " not in obs
    assert "<search>" in obs and "<answer>" in obs  # the action syntax is explained
    env.close()


@pytest.fixture(scope="module")
def fuzz_env():
    env = gym.make("MEM1-MultiHopQA-2")
    env.reset(seed=0)
    yield env
    env.close()


def _step_checked(env, action):
    obs, reward, terminated, truncated, info = env.step(action)
    assert isinstance(obs, str) and env.observation_space.contains(obs)
    assert isinstance(reward, float)
    if info["action_type"] == "invalid":
        assert info["valid_action"] is False and info["error"]
        assert "<search>" in obs  # the observation says what is expected
    if terminated or truncated:
        assert len(info["em"]) == 2 and len(info["f1"]) == 2
        env.reset()
    return info


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.one_of(st.text(max_size=300), st.lists(st.sampled_from(TOKENS), max_size=40).map("".join),
                        st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_fuzzed_actions_never_raise(fuzz_env, action):
    _step_checked(fuzz_env, action)


@pytest.mark.parametrize(
    "action, valid",
    [
        ("x" * 1_000_000, False),  # 1 MB of prose
        ("<search>" * 100_000, False),  # 800 kB of unclosed tags
        ("".join(f"<search>q{i}</search>" for i in range(50)), True),  # 50 blocks: the first counts
        (bytes(range(256)).decode("latin-1") * 10, False),  # binary junk
        ("<think><search>half</think>", False),
    ],
)
def test_hostile_actions(fuzz_env, action, valid):
    info = _step_checked(fuzz_env, action)
    assert info["valid_action"] is valid


def test_answer_with_100_parts_is_scored_and_flagged():
    env = gym.make("MEM1-MultiHopQA-2")
    env.reset(seed=0)
    _, _, terminated, _, info = env.step("<answer>" + "; ".join(["x"] * 100) + "</answer>")
    assert terminated and info["n_answers"] == 100 and info["answer_count_mismatch"] and len(info["em"]) == 2
    env.close()
