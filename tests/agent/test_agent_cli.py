"""`mem1-agent eval` end to end in a subprocess: oracle, a tiny transformers model, resume, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mem1_agent.records import read_jsonl


def mem1_agent(*args, timeout=240):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "mem1_agent.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def test_oracle_eval_writes_reports_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["eval", "--env", "MEM1-MultiHopQA-2", "--policy", "oracle", "--context", "mem1,full", "--episodes", "3",
            "--horizons", "1,2", "--concurrency", "2", "--out", str(out)]
    first = mem1_agent(*args)
    assert first.returncode == 0, first.stderr
    assert "| MEM1-MultiHopQA-2 | full | 3 |" in first.stdout and "episodes" in first.stderr  # table + progress bar
    report = json.loads((out / "report.json").read_text())
    cells = {(r["env_id"], r["context_strategy"]): r for r in report["results"]}
    assert set(cells) == {(f"MEM1-MultiHopQA-{n}", c) for n in (1, 2) for c in ("mem1", "full")}
    assert cells[("MEM1-MultiHopQA-2", "mem1")]["em_sum"] == 2.0  # the oracle answers everything
    assert cells[("MEM1-MultiHopQA-2", "full")]["peak_tokens"] > cells[("MEM1-MultiHopQA-2", "mem1")]["peak_tokens"]
    assert (out / "context_tokens.png").stat().st_size > 0 and "| env |" in (out / "report.md").read_text()
    records = out / "MEM1-MultiHopQA-2.mem1.jsonl"
    ids = [t.task_id for t in read_jsonl(records)]
    full_ids = [t.task_id for t in read_jsonl(out / "MEM1-MultiHopQA-2.full.jsonl")]
    assert len(ids) == 3 and sorted(ids) == sorted(full_ids)  # identical tasks under both contexts
    # Resume: drop one finished episode; a rerun plays only that one and reports all three.
    lines = records.read_text().splitlines()
    records.write_text("\n".join(lines[:2]) + "\n")
    second = mem1_agent(*args, "--no-progress")
    assert second.returncode == 0, second.stderr
    assert sorted(t.task_id for t in read_jsonl(records)) == sorted(ids)
    assert (out / "MEM1-MultiHopQA-2.full.jsonl").read_text().count("\n") == 3
    other = mem1_agent("eval", "--env", "MEM1-MultiHopQA-2", "--policy", "hf:/nowhere", "--episodes", "1", "--out", str(out))
    assert other.returncode == 2 and "make-tiny" in other.stderr


def test_tiny_model_eval(tiny_dir, tmp_path):
    out = tmp_path / "tiny"
    run = mem1_agent("eval", "--env", "MEM1-MultiHopQA-2", "--policy", f"hf:{tiny_dir}", "--episodes", "2",
                     "--max-new-tokens", "16", "--max-turns", "3", "--temperature", "1", "--device", "cpu",
                     "--out", str(out), "--no-progress", "--env-kwarg", "k=1")
    assert run.returncode == 0, run.stderr
    [traj, _] = list(read_jsonl(out / "MEM1-MultiHopQA-2.mem1.jsonl"))
    assert len(traj.turns) == 3 and all(t.ids_as_sampled and len(t.logprobs) == len(t.generated_ids) for t in traj.turns)
    assert len(traj.evidence) == 2  # the synthetic world reports supporting-passage recall
    searched = [t.observation.text for t in traj.turns if "Doc 1(" in t.observation.text]
    assert all("Doc 2(" not in text for text in searched)  # --env-kwarg k=1: one passage per search
    assert traj.tokenizer.startswith("hf:") and "| MEM1-MultiHopQA-2 | mem1 | 2 |" in run.stdout


def test_env_kwargs_are_json_or_text_and_malformed_ones_are_refused(capsys):
    from mem1_agent.cli import build_parser
    from mem1_agent.train.config import parse_train_args

    args = parse_train_args(["--model", "m", "--out", "o", "--env-kwarg", "k=1",
                             "--env-kwarg", "reward=f1", "--env-kwarg", "evidence_bonus=0.5"])
    assert args.learner.env_kwargs == {"k": 1, "reward": "f1", "evidence_bonus": 0.5}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--policy", "oracle", "--env-kwarg", "k"])
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("policy, message", [
    ("vllm:Qwen/Qwen2.5-0.5B", "vllm"),
    ("openai:http://127.0.0.1:9/v1:m", "cannot reach"),
])
def test_missing_backend_fails_before_any_work(tmp_path, policy, message):
    out = tmp_path / "never"
    run = mem1_agent("eval", "--policy", policy, "--episodes", "1", "--out", str(out))
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()
