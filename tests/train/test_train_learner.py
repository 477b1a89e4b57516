"""The learner end to end: it learns a toy bandit, one PPO iteration on MEM1 changes the weights, checkpoints round-trip."""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path

import pytest
import torch
from mem1_agent.train.learner import LearnerConfig, train
from mem1_agent.train.logger import Logger, log_to_console
from mem1_agent.train.ppo import PPOConfig


def bandit_config(algo: str, **kwargs) -> LearnerConfig:
    ppo = PPOConfig(algo=algo, lr=3e-3, warmup_steps=0, epochs=2, mini_batch_size=8, micro_batch_size=4,
                    normalize_advantages=algo == "ppo")
    return LearnerConfig(env_id="word-bandit", tasks_per_iteration=4 if algo != "ppo" else 16,
                         group_size=4 if algo != "ppo" else 1, concurrency=16, max_new_tokens=4, device="cpu",
                         ppo=ppo, **kwargs)


@pytest.mark.parametrize("algo", ["ppo", "rloo"])
def test_reward_goes_up_on_a_learnable_toy_task(algo, word_codec, word_bandit, word_model):
    model = word_model(word_codec)
    history = train(model, word_codec, bandit_config(algo, iterations=12), make_env=word_bandit)
    first, last = history[0]["rollout/reward_mean"], sum(h["rollout/reward_mean"] for h in history[-3:]) / 3
    assert first < 0.3, history[0]
    assert last > first + 0.3, [round(h["rollout/reward_mean"], 2) for h in history]


def test_one_ppo_iteration_on_mem1_changes_parameters(tiny_model_dir):
    from mem1_agent.policies.base import TokenCodec
    from mem1_agent.tiny import load_tokenizer
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    codec = TokenCodec(load_tokenizer(tiny_model_dir), name="tiny")
    before = [p.detach().clone() for p in model.parameters()]
    # An untrained model earns reward 0, so GAE advantages are 0: the entropy bonus and the KL term
    # are what move the weights in this one iteration (the loss must still be finite).
    ppo = PPOConfig(ent_coef=0.01, kl_coef=0.01, lr=1e-3, mini_batch_size=4, micro_batch_size=2)
    config = LearnerConfig(env_id="MEM1-MultiHopQA-1", iterations=1, tasks_per_iteration=2, concurrency=2,
                           max_new_tokens=8, device="cpu", ppo=ppo, env_kwargs={"max_turns": 2})
    history = train(model, codec, config)
    stats = history[0]
    assert all(math.isfinite(stats[f"train/{k}"]) for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "kl"))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_checkpoint_round_trip_and_resume(tmp_path: Path, word_codec, word_bandit, word_model):
    from mem1_agent.tiny import load_tokenizer
    from mem1_agent.train.layouts import TurnTokens, collate, per_turn_samples
    from mem1_agent.train.ppo import token_logprobs
    from transformers import AutoModelForCausalLM

    out = tmp_path / "ckpt"
    model = word_model(word_codec)
    train(model, word_codec, bandit_config("ppo", iterations=1, out=out), make_env=word_bandit)
    assert json.loads((out / "trainer_state.json").read_text())["iteration"] == 1

    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = load_tokenizer(out)
    ids = tokenizer.encode("say yes")
    assert tuple(ids) == word_codec.encode("say yes")
    batch = collate(per_turn_samples([TurnTokens(ids, [3, 4, 5, 3])]))
    with torch.no_grad():
        assert torch.equal(token_logprobs(model, batch), token_logprobs(loaded, batch))

    history = train(loaded, word_codec, bandit_config("ppo", iterations=2, out=out), make_env=word_bandit)
    assert len(history) == 1  # resumed at iteration 1: one more iteration to reach 2
    assert json.loads((out / "trainer_state.json").read_text())["iteration"] == 2


def test_time_cap_stops_after_the_crossing_iteration_and_checkpoints(tmp_path: Path, word_codec, word_bandit,
                                                                     word_model):
    out, console = tmp_path / "capped", io.StringIO()
    config = bandit_config("ppo", iterations=50, out=out, max_minutes=1e-6)  # spent by the first iteration
    handler = log_to_console(console)
    try:
        history = train(word_model(word_codec), word_codec, config, make_env=word_bandit)
    finally:
        logging.getLogger("mem1_agent.train").removeHandler(handler)
    assert len(history) == 1
    assert json.loads((out / "trainer_state.json").read_text())["iteration"] == 1
    # every scalar is namespaced, and the console line (through logging) shows them under the same keys
    assert {"rollout/reward_mean", "train/loss", "train/policy_loss", "train/value_loss", "train/explained_variance",
            "train/tokens_per_s"} <= set(history[0]) and all(k.split("/")[0] in ("rollout", "train") for k in history[0])
    lines = console.getvalue().splitlines()  # (a first one says TensorBoard is off when it is not installed)
    assert lines[-2].startswith("iter    1 rollout/reward_mean=") and " train/approx_kl=" in lines[-2]
    assert lines[-1] == f"stopping after iteration 1: the {1e-6}-minute cap is spent"
    with pytest.raises(ValueError, match="max_minutes"):
        bandit_config("ppo", max_minutes=0)


def test_config_checks_say_what_to_change():
    with pytest.raises(ValueError, match="group_size >= 2"):
        LearnerConfig(group_size=1, ppo=PPOConfig(algo="grpo"))
    with pytest.raises(ValueError, match="layout"):
        LearnerConfig(layout="packed")


def test_tensorboard_and_wandb_get_the_same_namespaced_keys():
    """The logger hands every scalar on under its own key (no second prefix); stand-ins record what they get."""
    class Writer:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

    class Run:
        def __init__(self):
            self.logged = []

        def log(self, stats, step):
            self.logged.append((dict(stats), step))

    logger = Logger(None, tensorboard=False, wandb_project=None, config=None)
    logger.writer, logger.run = Writer(), Run()
    stats = {"rollout/reward_mean": 0.5, "train/kl": 0.01, "train/lr": 1e-3}
    logger.log(stats, 7)
    assert logger.writer.scalars == [(key, value, 7) for key, value in stats.items()]
    assert logger.run.logged == [(stats, 7)]
