"""The tiny CPU demo runs end to end with a tiny budget."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_quick(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "mem1_tiny_demo.py"), "--quick",
                             "--out", str(tmp_path / "demo")], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| sft+rloo |" in result.stdout  # the default --algo
    assert (tmp_path / "demo" / "eval-sweep" / "context_tokens.png").is_file()
    assert (tmp_path / "demo" / "ppo" / "trainer_state.json").is_file()
