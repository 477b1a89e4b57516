"""The README's first command: `mem1-agent demo` runs end to end (tiny budget)."""

import argparse
import os
import subprocess
import sys

from mem1_agent import demo
from mem1_agent.policies.hf import cache_argument


def test_demo_prints_the_transcript_and_both_tables(tmp_path):
    env = {**os.environ, "MEM1_GYM_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    out_dir = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "mem1_agent.cli", "demo", "--horizons", "1", "--episodes", "1",
         "--max-new-tokens", "8", "--out", str(out_dir)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "reward 2.0 (EM count 2/2)" in out  # the oracle solves its episode
    assert out.count("| MEM1-MultiHopQA-1 | mem1 |") == 2 and out.count("| MEM1-MultiHopQA-1 | full |") == 2
    assert (tmp_path / "cache" / "tiny-demo-model" / "config.json").is_file()
    # Numbered sections, a legend under each table, and nothing from third parties in between.
    assert [line[:5] for line in out.splitlines() if line.startswith("== ")] == ["== 1.", "== 2.", "== 3."]
    assert out.count(demo.LEGEND) == 2
    assert "it/s]" not in result.stderr and "Warning" not in result.stderr, result.stderr[-2000:]
    # The reports it names exist.
    for policy in ("oracle", "hf"):
        assert str(out_dir / policy) in out
        for name in ("report.md", "report.json", "context_tokens.png", "MEM1-MultiHopQA-1.mem1.jsonl"):
            assert (out_dir / policy / name).is_file()


def test_demo_without_out_removes_its_temporary_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(demo.tempfile, "tempdir", None)  # re-read TMPDIR
    used = []

    def fake_run(args, out):
        (out / "oracle").mkdir()
        (out / "oracle" / "records.jsonl").write_text("{}\n")
        used.append(out)
        return 0

    monkeypatch.setattr(demo, "_run", fake_run)
    assert demo.cmd_demo(argparse.Namespace(out=None)) == 0
    assert used and used[0].parent == tmp_path and not used[0].exists()
    assert list(tmp_path.iterdir()) == []


def test_cache_argument_follows_the_transformers_version():
    class New:  # transformers >= 5.25
        def forward(self, input_ids=None, cache=None, use_cache=None): ...

    class Old:  # transformers 5.17 (the GPU machines)
        def forward(self, input_ids=None, past_key_values=None, use_cache=None): ...

    assert cache_argument(New()) == "cache" and cache_argument(Old()) == "past_key_values"
