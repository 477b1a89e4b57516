"""Fixtures of the learner tests: two threads, a tiny Qwen2 with the env-trained tokenizer, and a toy bandit env."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from word_toys import WordBandit, make_word_codec, make_word_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _two_threads() -> None:
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mem1_agent.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("train-tiny") / "model")


@pytest.fixture(scope="session")
def word_codec():
    """A word-level tokenizer over word_toys.WORDS (so a random model says "yes" ~1 time in 10)."""
    return make_word_codec()


@pytest.fixture(scope="session")
def word_bandit():
    return WordBandit


@pytest.fixture(scope="session")
def word_model():
    """The builder ``(codec, seed=0) -> model`` of a 1-layer, 32-wide Qwen2 over the word vocabulary."""
    return make_word_model
