"""Fixtures of the plug-in tests: a tiny local model and a real OpenAI-compatible server serving it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from plugins_server import start_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _two_threads() -> None:
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mem1_agent.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("plugins") / "tiny")


@pytest.fixture(scope="session")
def server(tiny_model: Path):
    """A served tiny model; a 300 ms batch window makes concurrent test requests batch reliably."""
    proc, url = start_server(tiny_model, "--batch-window-ms", "300")
    yield url
    proc.terminate()
    proc.wait(timeout=10)
