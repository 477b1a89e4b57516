"""Training resume (issue 21, item 5): `--save-every`, and recovery from a kill at any point of a checkpoint save.

A save writes OUT.tmp, seals it with a COMPLETE manifest, then renames OUT -> OUT.old and OUT.tmp -> OUT.
The crash states are built directly from real checkpoints; one run is killed inside a save and resumed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mem1_agent.train import checkpoint
from mem1_agent.train.learner import LearnerConfig, make_state, train
from mem1_agent.train.ppo import PPOConfig


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs (BaseException, so no ``except Exception`` absorbs it)."""


def bandit_config(out: Path | None, **kwargs) -> LearnerConfig:
    ppo = PPOConfig(lr=3e-3, warmup_steps=0, epochs=1, mini_batch_size=8, micro_batch_size=4)
    return LearnerConfig(env_id="word-bandit", tasks_per_iteration=8, concurrency=8, max_new_tokens=4, device="cpu",
                         out=out, tensorboard=False, ppo=ppo, **kwargs)


def iteration_of(folder: Path) -> int:
    return json.loads((folder / checkpoint.STATE_FILE).read_text())["iteration"]


def siblings(out: Path) -> set[str]:
    return {path.name for path in out.parent.iterdir() if path.name.startswith(out.name)}


@pytest.fixture
def make_folder(tmp_path, word_codec, word_model):
    """``(path, iteration, damage=None)``: a real checkpoint at ``path``, then damaged as a killed save leaves it."""
    config = bandit_config(None)
    state = make_state(word_model(word_codec), config, torch.device("cpu"))

    def build(path: Path, iteration: int, damage: str | None = None) -> Path:
        state.iteration = iteration
        scratch = checkpoint.save(state, word_codec.tokenizer, tmp_path / "scratch", config)
        scratch.rename(path)
        if damage == "no manifest":  # killed while writing the files, before COMPLETE
            (path / checkpoint.MANIFEST).unlink()
        elif damage == "short file":  # a listed file cut short
            weights = path / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[:100])
        return path

    return build


# (folders present: name -> (iteration, damage)), the iteration recovered
CRASH_STATES = {
    "killed between the renames": ({"run.old": (2, None), "run.tmp": (4, None)}, 4),
    "killed writing tmp after OUT was moved away": ({"run.old": (2, None), "run.tmp": (4, "no manifest")}, 2),
    "killed writing tmp": ({"run": (2, None), "run.tmp": (4, "no manifest")}, 2),
    "killed after sealing tmp, before any rename": ({"run": (2, None), "run.tmp": (4, None)}, 4),
    "killed before removing OUT.old": ({"run": (4, None), "run.old": (2, None)}, 4),
    "a listed file cut short": ({"run.old": (2, None), "run.tmp": (4, "short file")}, 2),
}


@pytest.mark.parametrize("state", CRASH_STATES, ids=list(CRASH_STATES))
def test_recover_picks_the_newest_complete_checkpoint_and_cleans_up(tmp_path, make_folder, state):
    folders, expected = CRASH_STATES[state]
    for name, (iteration, damage) in folders.items():
        make_folder(tmp_path / name, iteration, damage)
    out = tmp_path / "run"
    assert checkpoint.recover(out) == out
    assert siblings(out) == {"run"} and iteration_of(out) == expected
    assert checkpoint.recover(out) == out and iteration_of(out) == expected  # a second look changes nothing


def test_recover_without_any_checkpoint_is_a_fresh_run(tmp_path):
    assert checkpoint.recover(tmp_path / "run") is None


def test_folders_without_a_complete_checkpoint_never_start_over(tmp_path, make_folder, word_codec, word_model):
    out = tmp_path / "run"
    make_folder(out, 2, "no manifest")
    make_folder(tmp_path / "run.tmp", 4, "short file")
    with pytest.raises(ValueError, match=r"no complete checkpoint in .*run.*--out"):
        train(word_model(word_codec), word_codec, bandit_config(out, iterations=6), resume=True)
    assert siblings(out) == {"run", "run.tmp"}  # nothing deleted: the user decides


def test_a_save_killed_between_its_renames_resumes_like_an_uninterrupted_run(tmp_path, monkeypatch, word_codec,
                                                                              word_bandit, word_model):
    out = tmp_path / "run"
    rename = Path.rename

    def killed_at_the_second_save(self: Path, target):
        if self.name == "run.tmp" and iteration_of(self) == 4:  # after OUT -> OUT.old: OUT is gone
            raise Killed
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", killed_at_the_second_save)
    with pytest.raises(Killed):
        train(word_model(word_codec), word_codec, bandit_config(out, iterations=6, save_every=2),
              make_env=word_bandit)
    assert siblings(out) == {"run.old", "run.tmp"}
    monkeypatch.setattr(Path, "rename", rename)

    # The rerun restarts from iteration 4 (not 0): it plays iterations 5 and 6 only ...
    resumed = word_model(word_codec, seed=1)  # different initial weights: all of them must come from the checkpoint
    history = train(resumed, word_codec, bandit_config(out, iterations=6, save_every=2), make_env=word_bandit)
    assert len(history) == 2 and siblings(out) == {"run"} and iteration_of(out) == 6
    # ... and every random draw is seeded by (seed, iteration), so it ends where an uninterrupted run does.
    reference = word_model(word_codec)
    train(reference, word_codec, bandit_config(tmp_path / "whole", iterations=6, save_every=2), make_env=word_bandit)
    for a, b in zip(resumed.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)


def test_cli_save_every_checkpoints_what_a_rerun_resumes(tmp_path, monkeypatch, capsys, tiny_model_dir):
    from mem1_agent import cli
    from mem1_agent.train import learner

    from mem1_agent.train.config import parse_train_args

    defaults = parse_train_args(["--model", "m", "--out", "o"]).learner
    assert defaults.save_every == LearnerConfig().save_every == 10
    out = tmp_path / "cli"
    args = ["train", "--env", "MEM1-MultiHopQA-1", "--model", str(tiny_model_dir), "--out", str(out),
            "--iterations", "3", "--save-every", "1", "--tasks-per-iteration", "1", "--concurrency", "1",
            "--max-new-tokens", "4", "--mini-batch-size", "2", "--micro-batch-size", "2", "--device", "cpu",
            "--rollout-backend", "transformers", "--env-kwarg", "max_turns=1"]
    collect = learner.collect

    def killed_in_the_second_iteration(state, *rest, **kwargs):
        if state.iteration == 1:
            raise Killed
        return collect(state, *rest, **kwargs)

    monkeypatch.setattr(learner, "collect", killed_in_the_second_iteration)
    with pytest.raises(Killed):
        cli.main(args)
    assert siblings(out) == {"cli"} and iteration_of(out) == 1  # --save-every 1 saved the first iteration
    monkeypatch.setattr(learner, "collect", collect)
    capsys.readouterr()
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "resuming from" in printed and "iter    1" not in printed and "iter    3" in printed
    assert iteration_of(out) == 3
