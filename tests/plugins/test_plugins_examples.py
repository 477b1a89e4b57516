"""Smoke runs of the plug-in examples with tiny budgets (subprocesses, as a user runs them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(*args: str, timeout: int = 120) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "test-key"}
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_sb3_example_quick_reports_a_curve_against_random(tmp_path):
    out = _run(str(EXAMPLES / "sb3_maskable_ppo.py"), "--quick", "--json", str(tmp_path / "curve.json"))
    assert "random (masked uniform)" in out and "| env steps |" in out
    report = json.loads((tmp_path / "curve.json").read_text())
    assert report["curve"][-1]["timesteps"] >= 2048 and 0 <= report["random"]["reward"] <= 1


def test_third_party_example_with_the_builtin_callable():
    out = _run(str(EXAMPLES / "third_party_policy.py"), "--episodes", "3")
    assert "MEM1-MultiHopQA-2" in out and "EM " in out and "F1 " in out


def test_third_party_example_with_an_openai_endpoint(server):
    out = _run(str(EXAMPLES / "third_party_policy.py"), "--episodes", "1", "--base-url", server, "--max-tokens", "16")
    assert f"endpoint {server}" in out and "EM " in out
