"""The README's first command: `mem1-agent demo` runs end to end (tiny budget)."""

import os
import subprocess
import sys


def test_demo_prints_the_transcript_and_both_tables(tmp_path):
    env = {**os.environ, "MEM1_GYM_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mem1_agent.cli", "demo", "--horizons", "1", "--episodes", "1",
         "--max-new-tokens", "8", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "reward 2.0 (EM count 2/2)" in out  # the oracle solves its episode
    assert out.count("| MEM1-MultiHopQA-1 | mem1 |") == 2 and out.count("| MEM1-MultiHopQA-1 | full |") == 2
    assert (tmp_path / "cache" / "tiny-demo-model" / "config.json").is_file()
