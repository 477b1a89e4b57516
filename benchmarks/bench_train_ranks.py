"""The learner's update at 1 vs N CPU processes (torchrun, gloo, FSDP2), and the ``--dry-run`` plans beside it.

Used by ``bench_train.py --processes 1 2``; this file is also what each torchrun rank runs:

    python -m torch.distributed.run --nproc_per_node N benchmarks/bench_train_ranks.py SHAPE TRAJ TURNS REPEATS OUT

Every rank builds the same random-init model (seed 0) and the same global batch of ``TRAJ`` MEM1-shaped
trajectories of ``TURNS`` turns (prefix-cache samples); rank r takes the r-th contiguous 1/N of it. The
timed step is the learner's own :func:`~mem1_agent.train.learner.update` on the state of
:func:`~mem1_agent.train.learner.make_state` (FSDP2 over the ranks at N > 1, exactly as ``mem1-agent
train`` under torchrun; N = 1 is the plain single-process learner): the learner's default PPO (value
head, no KL reference), one mini-batch of the whole global batch, micro-batches of one trajectory. The
old log-probs and values are the model's own, as the learner's ``prepare`` computes them (ratio 1).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_layouts import proc_status_kib, tokens_processed, trajectory
from mem1_agent.train import distributed

PLAN_MODELS = ("qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b")
PLAN_GPUS = (1, 4, 8)
H200_GB = 141.0
LAUNCH_TIMEOUT_S = 1200  # a 5M-parameter shape on a loaded 2-core machine: minutes, not hours


def compare(shape: str, processes: list[int], trajectories: int, turns: int, repeats: int, threads: int) -> list[dict]:
    """One torchrun job per entry of ``processes``, same global batch; rows with the ratio to the first entry."""
    rows = []
    for n in processes:
        if trajectories % n:
            raise ValueError(f"{n} processes cannot share {trajectories} trajectories equally; set --trajectories "
                             f"to a multiple of every --processes value")
        rows.append(_launch(shape, n, trajectories, turns, repeats, max(1, threads // n)))
    for row in rows:
        row["step_ratio"] = row["seconds_per_step"] / rows[0]["seconds_per_step"]
        row["tokens_per_s_ratio"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
        row["peak_ratio"] = row["peak_rss_gib"] / rows[0]["peak_rss_gib"]
    return rows


def _launch(shape: str, n: int, trajectories: int, turns: int, repeats: int, threads: int) -> dict:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ranks.json"
        # OMP_NUM_THREADS: torchrun would otherwise force 1 thread per rank at N > 1
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr",
                   "127.0.0.1", "--master_port", str(port), __file__, shape, str(trajectories), str(turns),
                   str(repeats), str(out)]
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"the {n}-process update of {shape} failed (exit {done.returncode}); its stderr "
                               f"ends:\n{done.stderr[-3000:]}")
        ranks = json.loads(out.read_text(encoding="utf-8"))
    steps = [max(rank["seconds"][i] for rank in ranks) for i in range(repeats)]  # a step ends with its slowest rank
    median = statistics.median(steps)
    tokens = sum(rank["tokens"] for rank in ranks)
    return {"processes": n, "threads_per_process": threads, "tokens_per_step": tokens, "seconds_per_step": median,
            "tokens_per_s": tokens / median, "peak_rss_gib": max(rank["peak_gib"] for rank in ranks),
            "base_rss_gib": max(rank["base_gib"] for rank in ranks)}


def run_rank(shape: str, n_trajectories: int, turns: int, repeats: int, out: Path) -> None:
    """One rank's share of the timed updates; rank 0 writes every rank's timings and peak RSS to ``out``."""
    from bench_train import make_model  # here: bench_train imports this module
    from mem1_agent.train.layouts import collate, prefix_cache_sample
    from mem1_agent.train.learner import LearnerConfig, make_state, update
    from mem1_agent.train.ppo import PPOConfig, forward
    from mem1_agent.train.samples import Prepared, Samples, gather_from_batch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    device = distributed.setup("cpu")
    world, rank = distributed.world_size(), distributed.rank()
    base = proc_status_kib("VmRSS") / 2**20  # torch and transformers imported, no model yet
    model = make_model(shape, device)
    g = torch.Generator().manual_seed(turns)
    every = [prefix_cache_sample(trajectory(turns, model.config.vocab_size, g)) for _ in range(n_trajectories)]
    share = n_trajectories // world
    mine = every[rank * share : (rank + 1) * share]
    data = Samples(mine, list(range(len(mine))), [0] * len(mine), [s.n_sampled for s in mine])
    config = LearnerConfig(device="cpu", rollout_backend="transformers",
                           ppo=PPOConfig(mini_batch_size=n_trajectories, micro_batch_size=1))
    state = make_state(model, config, device)
    old, values = [], []
    with torch.no_grad(), distributed.gathered(state.model, state.value_head):
        for sample in mine:
            batch = collate([sample], pad_id=0)
            result = forward(state.model, batch, state.value_head)
            old += gather_from_batch(result.logprobs, batch.loss_mask)
            values += gather_from_batch(result.values, batch.loss_mask)
    noise = torch.Generator().manual_seed(rank)
    prepared = Prepared(old, [torch.randn(len(lp), generator=noise) for lp in old],
                        [torch.rand(len(lp), generator=noise) for lp in old], old_values=values)
    Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak RSS restarts from the current RSS
    seconds = []
    for _ in range(repeats + 1):  # the first step warms up the allocator and allocates AdamW's moments
        distributed.barrier()
        started = time.perf_counter()
        update(state, data, prepared, 0, config, device)
        seconds.append(time.perf_counter() - started)
    mine_row = {"seconds": seconds[1:], "peak_gib": proc_status_kib("VmHWM") / 2**20, "base_gib": base,
                "tokens": sum(tokens_processed(s) for s in mine)}
    everyone = [mine_row]
    if world > 1:
        everyone = [{} for _ in range(world)]
        torch.distributed.all_gather_object(everyone, mine_row)
    if distributed.is_main():
        out.write_text(json.dumps(everyone), encoding="utf-8")


def plans() -> list[dict]:
    """``mem1-agent train MODEL --dry-run`` with its defaults on 1, 4 and 8 H200s (141 GB each)."""
    from mem1_agent.train.config import TrainCommand, memory_plan

    return [{"model": model, "gpus": gpus, "per_gpu_gb": plan.total / 1e9, "fits": plan.fits}
            for model in PLAN_MODELS for gpus in PLAN_GPUS
            for plan in [memory_plan(TrainCommand(model=model, gpu_memory_gb=H200_GB), gpus)]]


def plan_table(rows: list[dict]) -> str:
    lines = ["| dry-run plan, GB per GPU | " + " | ".join(f"{g} GPU" for g in PLAN_GPUS) + " |",
             "|---|" + "---|" * len(PLAN_GPUS)]
    for model in PLAN_MODELS:
        cells = [f"{r['per_gpu_gb']:.1f} {'fits' if r['fits'] else 'does not fit'}" for r in rows if r["model"] == model]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def processes_table(shape: str, rows: list[dict]) -> str:
    lines = [(f"| {shape}: processes | threads each | tokens/step | s/step | tokens/s | peak RSS/rank GiB "
              "| s/step vs 1st | tokens/s vs 1st | peak vs 1st |"), "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['processes']} | {r['threads_per_process']} | {r['tokens_per_step']} | {r['seconds_per_step']:.3f} | "
              f"{r['tokens_per_s']:.0f} | {r['peak_rss_gib']:.2f} | {r['step_ratio']:.2f}x | "
              f"{r['tokens_per_s_ratio']:.2f}x | {r['peak_ratio']:.2f}x |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    shape, n_trajectories, turns, repeats, out = sys.argv[1:6]
    run_rank(shape, int(n_trajectories), int(turns), int(repeats), Path(out))
    return 0


if __name__ == "__main__":
    distributed.exit_on_failure(main)
