"""`mem1-agent train`: flags generated from the config dataclasses, --config files, recipes, bad input.

Issue 19, requirement 5 (one source of truth) and the checks that stop a bad run before any model,
env or GPU is touched (requirement 2's dry-run plan, world size, tokenizer).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml
from mem1_agent import cli
from mem1_agent.train.config import TrainCommand, parse_train_args
from mem1_agent.train.learner import LearnerConfig
from mem1_agent.train.ppo import PPOConfig

RECIPES = sorted((Path(__file__).resolve().parents[2] / "examples" / "recipes").glob("*.yaml"))


def test_every_config_field_is_a_flag_with_its_docstring(capsys):
    with pytest.raises(SystemExit):
        parse_train_args(["--help"])
    text = re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", capsys.readouterr().out))
    names = [f.name for f in dataclasses.fields(LearnerConfig) if f.name != "ppo"]
    names += [f"ppo.{f.name}" for f in dataclasses.fields(PPOConfig)]
    names += [f.name for f in dataclasses.fields(TrainCommand) if f.name != "learner"]
    for name in names:
        assert f"--{name.replace('_', '-')}" in text, name
    assert "Rollouts per task" in text and "AdamW learning rate" in text  # help = the fields' docstrings


def test_old_flag_spellings_are_aliases_of_the_generated_ones():
    short = parse_train_args(["--model", "m", "--env", "MEM1-MultiHopQA-1", "--algo", "grpo", "--group-size", "4",
                              "--lr", "3e-6", "--micro-batch-size", "2", "--env-kwarg", "k=1"])
    long = parse_train_args(["--model", "m", "--env-id", "MEM1-MultiHopQA-1", "--ppo.algo", "grpo", "--group-size",
                             "4", "--ppo.lr", "3e-6", "--ppo.micro-batch-size", "2", "--env-kwargs", "k=1"])
    assert short == long and short.learner.ppo.lr == 3e-6 and short.learner.env_kwargs == {"k": 1}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_is_read_first_and_flags_override_it(tmp_path, suffix):
    values = {"model": "qwen2.5-0.5b", "iterations": 7, "gradient_checkpointing": True, "tensorboard": False,
              "env_kwargs": {"max_turns": 3}, "lora_targets": ["q_proj", "v_proj"],
              "ppo": {"lr": "1e-6", "kl_coef": 0.001, "normalize_advantages": False, "kl_clip": None}}
    path = tmp_path / f"run{suffix}"
    path.write_text(json.dumps(values) if suffix == ".json" else yaml.safe_dump(values))
    command = parse_train_args(["--config", str(path), "--iterations", "9", "--model", "/models/x"])
    learner = command.learner
    assert command.model == "/models/x" and learner.iterations == 9  # flags win ...
    assert learner.gradient_checkpointing and not learner.tensorboard  # ... the file's values stay
    assert learner.env_kwargs == {"max_turns": 3} and learner.lora_targets == ("q_proj", "v_proj")
    assert learner.ppo == PPOConfig(lr=1e-6, kl_coef=0.001, normalize_advantages=False, kl_clip=None)


@pytest.mark.parametrize("text, key, valid", [("iteratons: 3\n", "'iteratons'", "tasks_per_iteration"),
                                              ("ppo:\n  learning_rate: 0.1\n", "'ppo.learning_rate'", "warmup_steps")])
def test_unknown_config_key_names_it_and_the_valid_ones(tmp_path, capsys, text, key, valid):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert cli.main(["train", "--config", str(path), "--model", "m", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"unknown config key {key}" in err and valid in err


def test_the_resolved_config_is_printed_and_saved_in_every_checkpoint(tmp_path, capsys, tiny_model_dir):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"env_id": "MEM1-MultiHopQA-1", "iterations": 5, "tasks_per_iteration": 1,
                                      "concurrency": 1, "max_new_tokens": 4, "device": "cpu",
                                      "rollout_backend": "transformers", "env_kwargs": {"max_turns": 1},
                                      "ppo": {"mini_batch_size": 2, "micro_batch_size": 2, "lr": 3e-5}}))
    out = tmp_path / "run"
    argv = ["--config", str(recipe), "--model", str(tiny_model_dir), "--out", str(out), "--iterations", "1"]
    assert cli.main(["train", *argv]) == 0
    printed = capsys.readouterr().out
    assert "# resolved config" in printed and "iterations: 1\n" in printed and "memory plan per GPU" in printed
    resolved = parse_train_args(argv).learner
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved == json.loads((out / "trainer_state.json").read_text())["config"]
    assert saved["iterations"] == 1 and saved["ppo"]["lr"] == 3e-5  # the flag over the file, and the file
    assert parse_train_args(["--model", "m", "--config", str(out / "config.yaml")]).learner == resolved


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.name)
def test_every_recipe_parses_and_fits_on_its_gpus(recipe, monkeypatch, capsys):
    gpus = int(re.search(r"(\d+)gpu", recipe.name).group(1))
    monkeypatch.setenv("WORLD_SIZE", str(gpus))
    assert cli.main(["train", "--config", str(recipe), "--dry-run", "--gpu-memory-gb", "141"]) == 0
    printed = capsys.readouterr().out
    [total] = [line for line in printed.splitlines() if line.startswith("total ")]
    assert "fits" in total
    assert f"#   {total}" in recipe.read_text()  # the plan pasted in the recipe is the current one


def test_world_size_must_split_the_task_groups(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert cli.main(["train", "--model", "qwen2.5-0.5b", "--tasks-per-iteration", "8", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "3 ranks cannot share 8 task groups" in err and "multiple of 3" in err
    assert "memory plan" not in capsys.readouterr().out  # refused before planning


def test_world_size_must_split_the_mini_batch_into_whole_micro_batches(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert cli.main(["train", "--model", "qwen2.5-0.5b", "--tasks-per-iteration", "8", "--mini-batch-size", "8",
                     "--micro-batch-size", "4", "--dry-run"]) == 2
    assert "not a multiple of micro_batch_size 4" in capsys.readouterr().err


def test_a_config_that_cannot_fit_fails_before_loading_the_model(tmp_path, capsys, tiny_model_dir):
    out = tmp_path / "never"
    code = cli.main(["train", "--model", str(tiny_model_dir), "--out", str(out), "--gpu-memory-gb", "0.001"])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit" in err and "lower" in err and not out.exists()


def test_a_model_folder_without_a_tokenizer_is_named_with_the_fix(tmp_path, capsys):
    from transformers import Qwen2Config

    folder = tmp_path / "weights-only"
    Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                intermediate_size=64, vocab_size=100).save_pretrained(folder)
    code = cli.main(["train", "--model", str(folder), "--out", str(tmp_path / "never"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and f"no tokenizer in {folder}" in err and "save_pretrained" in err


def test_dry_run_plans_the_memory_options(tmp_path, capsys, tiny_model_dir):
    argv = ["train", "--model", str(tiny_model_dir), "--out", str(tmp_path / "never"), "--device", "cpu",
            "--lora-rank", "8", "--reference", "lora-base", "--ppo.kl-coef", "0.01"]
    assert cli.main([*argv, "--dry-run"]) == 0
    assert "base with adapters disabled" in capsys.readouterr().out and not (tmp_path / "never").exists()
