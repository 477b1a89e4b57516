"""Smoke test of ``benchmarks/bench_train.py --processes``: the torchrun (2 CPU ranks, FSDP2) update path runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_train.py"


@pytest.mark.slow
def test_two_process_update_runs_on_the_tiny_shape(tmp_path):
    out = tmp_path / "train.json"
    command = [sys.executable, str(BENCH), "--shape", "tiny", "--turns", "1", "--trajectories", "2", "--rollouts", "1",
               "--new-tokens", "2", "--context", "8", "--repeats", "1", "--processes", "2", "--out", str(out)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    (row,) = result["shapes"][0]["processes"]
    assert (row["processes"], row["threads_per_process"]) == (2, 1)
    assert row["tokens_per_step"] > 0 and row["seconds_per_step"] > 0 and row["peak_rss_gib"] > 0
    assert {(plan["model"], plan["gpus"]) for plan in result["dry_run_plans"]} == {
        (model, gpus) for model in ("qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b") for gpus in (1, 4, 8)}
