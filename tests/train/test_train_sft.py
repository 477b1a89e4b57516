"""Behaviour cloning on oracle trajectories: the records convert exactly and the loss goes down."""

from __future__ import annotations

import pytest
from mem1_agent.train.samples import build_samples, token_index, token_rewards, turn_tokens
from mem1_agent.train.sft import SFTConfig, sft
from mem1_agent.train.sft import oracle_trajectories as play_oracle

import mem1_gym  # noqa: F401  (registers the env ids)


@pytest.fixture(scope="module")
def oracle_trajectories(tiny_model_dir):
    return play_oracle("MEM1-MultiHopQA-1", str(tiny_model_dir), episodes=4, concurrency=2)


def test_records_convert_to_exact_turn_tokens(oracle_trajectories):
    trajectory = oracle_trajectories[0]
    turns = turn_tokens(trajectory)
    assert [list(t.context) for t in turns] == [trajectory.context_ids(i) for i in range(len(trajectory.turns))]
    rewards = token_rewards(trajectory)
    assert len(rewards) == sum(len(t.generated) for t in turns)
    assert float(rewards[-1]) == pytest.approx(sum(t.reward for t in trajectory.turns)) and not any(rewards[:-1])
    per_turn, stitched = build_samples([trajectory], "per-turn"), build_samples([trajectory], "stitched")
    assert len(per_turn.samples) == len(turns) and len(stitched.samples) == 1
    assert len(token_index(per_turn)) == len(token_index(stitched)) == len(rewards)


def test_sft_loss_decreases(tiny_model_dir, oracle_trajectories):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = SFTConfig(epochs=6, lr=3e-3, warmup_steps=0, micro_batch_size=2, mini_batch_size=4, device="cpu")
    losses = sft(model, oracle_trajectories, config)
    assert len(losses) == 6
    assert losses[-1] < losses[0] - 0.5, losses


def test_sft_max_steps_stops_there_and_ends_the_lr_schedule_there(tiny_model_dir, oracle_trajectories):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    logs = []
    config = SFTConfig(epochs=5, lr=1e-3, warmup_steps=0, final_lr_fraction=0.0, micro_batch_size=1,
                       mini_batch_size=1, device="cpu", max_steps=3, max_minutes=60)
    losses = sft(model, oracle_trajectories, config, log=logs.append)
    assert len(losses) == 3 < 5 * len(oracle_trajectories)  # the step count, not the epochs, ended it
    assert [s["lr"] for s in logs] == pytest.approx([1e-3 * (1 - k / 3) for k in range(1, 4)])  # decays over 3
    with pytest.raises(ValueError, match="max_steps"):
        SFTConfig(max_steps=0)


def test_grounded_keeps_exactly_the_trajectories_whose_answers_were_read(tiny_model_dir):
    """With one passage per search the oracle sometimes answers from privileged knowledge; those go."""
    from mem1_agent.train.sft import grounded

    from mem1_gym.protocol import normalize_answer

    trajectories = play_oracle("MEM1-MultiHopQA-2", str(tiny_model_dir), episodes=24, concurrency=4,
                               env_kwargs={"k": 1})
    kept = [t for t in trajectories if grounded(t)]
    assert 0 < len(kept) < len(trajectories)  # both kinds occur at k=1
    for trajectory in trajectories:
        # the oracle searches the hops in order, one per turn: turn j's observation answers hop j
        hops = [hop for item in _task_items(trajectory) for hop in item.hops]
        shown = [f" {normalize_answer(turn.observation.text)} " for turn in trajectory.turns]
        all_read = all(f" {normalize_answer(hop.answer)} " in seen for hop, seen in zip(hops, shown, strict=False))
        assert len(shown) > len(hops)  # every hop searched, then the answer turn
        assert grounded(trajectory) == all_read, trajectory.task_id


def _task_items(trajectory):
    import gymnasium as gym

    env = gym.make(trajectory.env_id, split="train", k=1)
    try:
        return env.unwrapped.tasks[trajectory.task_index].items
    finally:
        env.close()


def test_sft_stops_at_max_minutes(tiny_model_dir, oracle_trajectories):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = SFTConfig(epochs=50, micro_batch_size=2, mini_batch_size=2, device="cpu", max_minutes=1e-9)
    assert len(sft(model, oracle_trajectories, config)) == 1  # the step that crossed the deadline, no more
    with pytest.raises(ValueError, match="max_minutes"):
        SFTConfig(max_minutes=0)


def test_sft_learning_rate_decays_linearly_to_its_final_fraction(tiny_model_dir, oracle_trajectories):
    from transformers import AutoModelForCausalLM

    model, logs = AutoModelForCausalLM.from_pretrained(tiny_model_dir), []
    config = SFTConfig(epochs=2, lr=1e-3, warmup_steps=0, final_lr_fraction=0.1, micro_batch_size=1,
                       mini_batch_size=1, device="cpu")
    sft(model, oracle_trajectories, config, log=logs.append)
    steps = 2 * len(oracle_trajectories)  # the prefix-cache layout: one sample per trajectory
    assert [s["lr"] for s in logs] == pytest.approx([1e-3 * (1 - 0.9 * k / steps) for k in range(1, steps + 1)])
    with pytest.raises(ValueError, match="final_lr_fraction"):
        SFTConfig(final_lr_fraction=1.5)


def test_sft_command_filters_and_saves(tiny_model_dir, tmp_path, capsys):
    from mem1_agent.cli import main
    from transformers import AutoModelForCausalLM

    out = tmp_path / "sft"
    assert main(["sft", "--model", str(tiny_model_dir), "--out", str(out), "--episodes", "6", "--epochs", "1",
                 "--grounded", "--max-steps", "1", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "of 6 oracle trajectories are grounded" in printed
    assert "sft step    1 " in printed and "sft step    2 " not in printed  # --max-steps 1
    trained, base = AutoModelForCausalLM.from_pretrained(out), AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not trained.model.embed_tokens.weight.equal(base.model.embed_tokens.weight)
    assert (out / "tokenizer" / "tokenizer.json").is_file()
