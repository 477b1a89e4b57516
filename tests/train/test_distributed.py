"""Data-parallel training with torchrun + FSDP2 on CPU (gloo): 2 ranks equal 1 process, resume after a kill, no hang.

Each test launches ``python -m torch.distributed.run --nproc_per_node 2 tests/train/dist_worker.py ...``
on 127.0.0.1 with a free port; a ``timeout`` on every launch turns a hang into a failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("dist_worker.py")
LAUNCH_TIMEOUT_S = 150  # a loaded 2-core machine starts two torch processes in ~15-35 s


def torchrun(*args: str, worker: Path = WORKER) -> subprocess.CompletedProcess:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(port), str(worker), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S, env=env)


def errors(done: subprocess.CompletedProcess) -> str:
    """The launch's stderr without the library warnings, for a failure message."""
    return "\n".join(line for line in done.stderr.splitlines() if "Warning" not in line and "forward_call" not in line)


def test_each_rank_plays_whole_groups_of_an_equal_share():
    from mem1_agent.train.distributed import split_tasks

    assert [split_tasks(6, rank, 3) for rank in range(3)] == [range(0, 2), range(2, 4), range(4, 6)]
    with pytest.raises(ValueError, match="multiple of 4"):
        split_tasks(6, 0, 4)


def test_two_ranks_take_the_one_process_step(tmp_path, word_codec, word_model):
    """Loss and every parameter after one FSDP2 step over 2 ranks equal one process on the whole batch, though
    the ranks hold 3 and 1 trajectories and call the model differently often for them; weights and gradients
    stay sharded between micro-batches (no whole copy is kept across a backward)."""
    sys.path.insert(0, str(WORKER.parent))
    from dist_worker import fixed_batch, step_config
    from mem1_agent.train.learner import make_state, update

    done = torchrun("step", str(tmp_path / "step.pt"))
    assert done.returncode == 0, errors(done)[-6000:]
    sharded = torch.load(tmp_path / "step.pt")

    config, model = step_config(), word_model(word_codec)
    data, prepared = fixed_batch(model, word_codec.pad_id)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    state = make_state(model, config, torch.device("cpu"))
    stats = update(state, data, prepared, word_codec.pad_id, config, torch.device("cpu"))

    assert abs(sharded["loss"] - stats["train/loss"]) <= 1e-5, (sharded["loss"], stats["train/loss"])
    # AdamW's first step hardly depends on the gradient's scale: the norm checks the ranks' loss scaling
    assert abs(sharded["grad_norm"] - stats["train/grad_norm"]) <= 1e-5 * stats["train/grad_norm"], (sharded, stats)
    for name, param in model.state_dict().items():
        torch.testing.assert_close(sharded["weights"][name], param, rtol=0, atol=1e-5, msg=name)
    for name, param in state.value_head.state_dict().items():
        torch.testing.assert_close(sharded["value_head"][name], param, rtol=0, atol=1e-5, msg=name)
    assert any(not torch.equal(before[name], p) for name, p in model.named_parameters())  # the step moved them
    assert len(sharded["sharded"]) == 4 and all(sharded["sharded"]), sharded["sharded"]  # 3 micro-batches + the step


def test_one_rank_failing_ends_the_job_with_its_error(tmp_path):
    """Rank 1 raises in iteration 2 while rank 0 waits in a collective: the job exits non-zero, with the error."""
    fault = {"rank": 1, "iteration": 2, "where": "collect"}
    done = torchrun("train", str(tmp_path / "run"), "3", json.dumps(fault))  # times out instead of hanging
    assert done.returncode != 0
    assert "injected failure on rank 1" in done.stdout + done.stderr


@pytest.mark.slow
def test_a_two_rank_run_killed_in_a_save_resumes_from_the_last_complete_checkpoint(tmp_path, word_codec):
    from mem1_agent.tiny import load_tokenizer
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    fault = {"rank": 0, "iteration": 2, "where": "commit"}  # rank 0 dies sealing iteration 2's checkpoint
    killed = torchrun("train", str(out), "3", json.dumps(fault))
    assert killed.returncode != 0
    assert json.loads((out / "trainer_state.json").read_text())["iteration"] == 1
    assert (out.with_name("run.tmp") / "sharded").is_dir()  # the unsealed save every rank wrote into

    resumed = torchrun("train", str(out), "3")
    assert resumed.returncode == 0, errors(resumed)[-6000:]
    printed = resumed.stdout
    assert printed.count("resuming from") == 1 and "after iteration 1" in printed  # rank 0 prints, once
    assert "iter    1" not in printed and printed.count("iter    3") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert json.loads((out / "trainer_state.json").read_text())["iteration"] == 3

    model = AutoModelForCausalLM.from_pretrained(out)  # the consolidated folder, as --policy hf: loads it
    assert tuple(load_tokenizer(out).encode("say yes")) == word_codec.encode("say yes")
    assert sum(p.numel() for p in model.parameters()) > 0
