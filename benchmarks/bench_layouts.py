"""Per-turn samples vs one stitched sequence vs a cached shared prefix: the same MEM1 trajectories, one optimisation step each.

    python benchmarks/bench_layouts.py            # CPU fp32, tiny Qwen2; writes benchmarks/results/layouts.json
    python benchmarks/bench_layouts.py --threads 1 --repeats 9
    python benchmarks/bench_layouts.py --device cuda --hidden 768 --layers 12   # ~100M params, bf16 autocast

For trajectories of 2, 4, 8 and 16 turns (MEM1 contexts: prompt + previous state/action/observation,
token ids drawn at random with the env's typical lengths), it runs forward + backward + AdamW step
of the token-mean NLL on sampled tokens with each layout: per-turn samples (the baseline: every
turn recomputes the shared prompt), the stitched sequence, and the prefix cache. It reports tokens
processed, the median wall time and the peak memory of a step, the speed-up over per-turn, and the
loss of each layout on the same weights (they must agree: all three are exact).

The timed steps of the three layouts are interleaved (one step of each in turn), so that a machine
shared with other jobs slows them alike and the ratios of medians stay comparable. The peak memory
of a step is measured in a fresh process per cell (CPU: peak RSS, which never goes down within a
process; CUDA: the allocator's peak), counted above what the process held before the step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from mem1_agent.train.device import resolve_device
from mem1_agent.train.layouts import (
    PrefixCacheSample,
    Sample,
    TurnTokens,
    per_turn_samples,
    prefix_cache_sample,
    stitched_sample,
)
from mem1_agent.train.sft import accumulate_nll

PROMPT, STATE, ACTION, OBSERVATION = 470, 30, 12, 400  # token lengths measured on MEM1-MultiHopQA-2 oracle turns
LAYOUTS = ("per-turn", "stitched", "prefix-cache")
TURNS = (2, 4, 8, 16)


def trajectory(n_turns: int, vocab: int, generator: torch.Generator) -> list[TurnTokens]:
    def draw(n: int) -> list[int]:
        return torch.randint(0, vocab, (n,), generator=generator).tolist()

    prompt, last, turns = draw(PROMPT), [], []
    for _ in range(n_turns):
        generated = draw(STATE + ACTION)
        turns.append(TurnTokens(prompt + last, generated))
        last = generated + draw(OBSERVATION)
    return turns


def cell_samples(layout: str, n_turns: int, args: argparse.Namespace) -> tuple[list[Sample], int]:
    """The samples of ``layout`` for the cell's trajectories, and how many of them one micro-batch holds.

    One trajectory per micro-batch in every layout, so that no layout gains from a larger batch.
    """
    g = torch.Generator().manual_seed(n_turns)
    trajectories = [trajectory(n_turns, args.vocab, g) for _ in range(args.trajectories)]
    if layout == "per-turn":
        return [s for t in trajectories for s in per_turn_samples(t)], n_turns
    make = stitched_sample if layout == "stitched" else prefix_cache_sample
    return [make(t) for t in trajectories], 1


def tokens_processed(sample: Sample) -> int:
    """Tokens the model runs on for one sample, padding excluded."""
    if isinstance(sample, PrefixCacheSample):  # the cached prefix once, then every turn row
        return len(sample.prefix) + sum(len(row) for row in sample.rows)
    return len(sample.ids)


def make_model(args: argparse.Namespace, device: torch.device):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                         num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 64) * 2,
                         num_key_value_heads=max(1, args.hidden // 64), max_position_embeddings=32768,
                         attn_implementation="sdpa")
    torch.manual_seed(0)  # identical weights for every layout: identical loss
    with device:  # initialised where it runs: a 0.5B model's random init takes seconds on the CPU
        model = Qwen2ForCausalLM(config).train()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4)


def step(model, optimizer, samples, device, micro: int) -> float:
    """One optimisation step over ``samples`` (micro-batches of ``micro``), exactly SFT's; returns the token-mean loss."""
    loss = accumulate_nll(model, samples, micro, 0, device)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_cells(n_turns: int, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Warm-up step (its loss is the untouched model's), then ``repeats`` interleaved timed steps per layout."""
    cells = {}
    for layout in LAYOUTS:
        samples, micro = cell_samples(layout, n_turns, args)
        model, optimizer = make_model(args, device)
        loss = step(model, optimizer, samples, device, micro)
        cells[layout] = {"samples": samples, "micro": micro, "model": model, "optimizer": optimizer, "loss": loss,
                         "seconds": []}
    for _ in range(args.repeats):
        for cell in cells.values():
            synchronize(device)
            started = time.perf_counter()
            step(cell["model"], cell["optimizer"], cell["samples"], device, cell["micro"])
            synchronize(device)
            cell["seconds"].append(time.perf_counter() - started)
    rows = []
    for layout, cell in cells.items():
        seconds = statistics.median(cell["seconds"])
        tokens = sum(tokens_processed(s) for s in cell["samples"])
        rows.append({"turns": n_turns, "layout": layout, "loss": cell["loss"], "tokens_per_step": tokens,
                     "seconds_per_step": seconds, "seconds_per_trajectory": seconds / args.trajectories,
                     "tokens_per_s": tokens / seconds, "all_seconds": cell["seconds"]})
    return rows


def peak_of_one_step(n_turns: int, layout: str, args: argparse.Namespace, device: torch.device) -> float:
    """MiB a first optimisation step adds to the process's peak (run in a fresh process: see the docstring)."""
    samples, micro = cell_samples(layout, n_turns, args)
    model, optimizer = make_model(args, device)
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(model, optimizer, samples, device, micro)
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
    before = proc_status_kib("VmRSS")
    step(model, optimizer, samples, device, micro)
    return (proc_status_kib("VmHWM") - before) / 1024


def proc_status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def measure_peak(n_turns: int, layout: str, argv: list[str]) -> float:
    out = subprocess.run([sys.executable, __file__, *argv, "--peak-of", str(n_turns), layout],
                         check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--trajectories", type=int, default=2, help="trajectories per step")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per cell (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--turns", type=int, nargs="+", default=list(TURNS), help="trajectory lengths to measure")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "layouts.json")
    parser.add_argument("--peak-of", nargs=2, metavar=("TURNS", "LAYOUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.peak_of:
        print(peak_of_one_step(int(args.peak_of[0]), args.peak_of[1], args, device))
        return
    model_argv = [f"--device={args.device}", f"--hidden={args.hidden}", f"--layers={args.layers}",
                  f"--vocab={args.vocab}", f"--trajectories={args.trajectories}", f"--threads={args.threads}"]
    results = []
    for n_turns in args.turns:
        rows = time_cells(n_turns, args, device)
        for row in rows:
            row["peak_mib"] = measure_peak(n_turns, row["layout"], model_argv)
        base = next(r for r in rows if r["layout"] == "per-turn")
        for row in rows:
            row["speedup"] = base["seconds_per_step"] / row["seconds_per_step"]
            row["loss_diff"] = abs(row["loss"] - base["loss"])
        results += rows
    print(f"device {device}, {args.threads} threads, hidden {args.hidden}, layers {args.layers}, "
          f"{args.trajectories} trajectories/step, median of {args.repeats} interleaved steps\n")
    print("| turns | layout | tokens/step | s/step | s/trajectory | tokens/s | peak MiB/step | loss | "
          "\\|Δloss\\| vs per-turn | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in results:
        print(f"| {row['turns']} | {row['layout']} | {row['tokens_per_step']} | {row['seconds_per_step']:.3f} | "
              f"{row['seconds_per_trajectory']:.3f} | {row['tokens_per_s']:.0f} | {row['peak_mib']:.0f} | "
              f"{row['loss']:.6f} | {row['loss_diff']:.1e} | {row['speedup']:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": str(device), "threads": args.threads, "hidden": args.hidden,
                                    "layers": args.layers, "trajectories": args.trajectories,
                                    "repeats": args.repeats, "results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
