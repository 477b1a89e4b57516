"""Fixtures of the agent tests: a tiny Qwen2 built once through the CLI, the counting tokenizer,
and a scripted policy that replays given turns (for bad-input tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from mem1_agent.policies.base import Generation, GenerationRequest, Policy, TokenCodec
from mem1_agent.records import FinishReason

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _two_threads() -> None:
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mem1-agent make-tiny` run once per session (tests the command and gives every test a model)."""
    out = tmp_path_factory.mktemp("tiny") / "model"
    subprocess.run([sys.executable, "-m", "mem1_agent.cli", "make-tiny", "--out", str(out)], check=True,
                   capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="session")
def codec():
    from mem1_agent.policies import counting_codec

    return counting_codec(None)


class ScriptPolicy(Policy):
    """Replays ``turns[i]`` at the i-th turn of each episode (then repeats the last one), and keeps
    every request it got so tests can compare what the policy read with what was recorded."""

    name = "script"

    def __init__(self, codec: TokenCodec, turns: Sequence[str]) -> None:
        self.codec = codec
        self.turns = list(turns)
        self.calls: dict[int, int] = {}
        self.requests: list[GenerationRequest] = []

    def start_episode(self, slot: int, env) -> None:
        self.calls[slot] = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        out = []
        for request in requests:
            self.requests.append(request)
            text = self.turns[min(self.calls[request.slot], len(self.turns) - 1)]
            self.calls[request.slot] += 1
            out.append(Generation(self.codec.encode(text), text, None, FinishReason.SCRIPTED, False))
        return out


@pytest.fixture
def script_policy(codec):
    return lambda turns: ScriptPolicy(codec, turns)
