"""Learner throughput on one device: rollout tokens/s, update tokens/s, MFU and peak memory.

    python benchmarks/bench_train.py                                   # CPU fp32, the tiny shape, 1 vs 2 processes
    nice -n 10 python benchmarks/bench_train.py --shape tiny 5m --rollouts 4 --new-tokens 16 --out benchmarks/results/train_cpu.json
    python benchmarks/bench_train.py --device cuda --shape qwen2.5-0.5b --out results/gpu_train.json

A random-init Qwen2 of the chosen shape (no weights needed: ``qwen2.5-0.5b`` has Qwen2.5-0.5B's
layers, widths and 151,936-token vocabulary) runs the learner's two hot paths on MEM1-shaped token
ids (prompt 470, state + action 42, observation 400 tokens: measured on MEM1-MultiHopQA-2):

* **rollout**: :class:`~mem1_agent.policies.hf.TransformersPolicy` over the learner's fp32 module,
  ``--rollouts`` contexts sampled together with the KV cache for ``--new-tokens`` tokens each (bf16
  autocast on CUDA, as the learner samples);
* **update**: forward + backward + AdamW of the token-mean NLL on ``--trajectories`` trajectories of
  ``--turns`` turns in the prefix-cache layout (the learner's default), bf16 autocast on CUDA.

MFU = 6 x parameters x update tokens/s / peak FLOP/s (``--peak-tflops``, default the H200's ~790 bf16
dense TFLOP/s the GPU-check issue quotes); the attention term is left out, so it is a lower bound.
The baseline in the same run is the update of the per-turn layout (every turn recomputes the
prompt); "vs per-turn" compares seconds per step on the same trajectories. Peak memory: the CUDA allocator's peak
(allocated, and reserved: what the allocator held), or the process's peak RSS on CPU; beside it the ``--dry-run``
memory model's plan for the same update (fp32 weights under autocast, that micro-batch and sample length, no
reference, no vLLM share) and the ratio peak / plan (reserved on CUDA).

``--processes 1 2`` (the default on CPU; none on CUDA) then times the learner's own update (FSDP2 over
gloo, :mod:`bench_train_ranks`) under ``torchrun --nproc_per_node N`` for each N: the same global batch
of ``--trajectories`` split across the ranks, ``--threads / N`` torch threads per rank (the machine's
cores shared, not multiplied); it reports the median step, global tokens/s, the peak RSS of the
largest rank and each ratio to the first N. Every run also prints the ``--dry-run`` memory plans of
Qwen2.5-0.5B/1.5B/7B on 1, 4 and 8 H200s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_layouts import proc_status_kib, synchronize, tokens_processed, trajectory
from bench_train_ranks import compare, plan_table, plans, processes_table
from mem1_agent.train.device import resolve_device
from mem1_agent.train.layouts import per_turn_samples, prefix_cache_sample
from mem1_agent.train.sft import accumulate_nll

# (hidden, layers, heads, kv heads, intermediate, vocab, tied embeddings)
SHAPES = {
    "tiny": (64, 2, 4, 2, 128, 2048, True),
    "5m": (256, 4, 4, 2, 1024, 8192, True),
    "qwen2.5-0.5b": (896, 24, 14, 2, 4864, 151936, True),
    "qwen2.5-1.5b": (1536, 28, 12, 2, 8960, 151936, True),
}


def make_model(shape: str, device: torch.device):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    hidden, layers, heads, kv_heads, intermediate, vocab, tied = SHAPES[shape]
    config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, tie_word_embeddings=tied,
                         max_position_embeddings=32768, attn_implementation="sdpa")
    torch.manual_seed(0)
    with device:  # initialised where it runs: a 0.5B model's random init takes seconds on the CPU
        return Qwen2ForCausalLM(config)


class _Codec:
    """The few TokenCodec members the policy reads; ids come pre-tokenized."""

    pad_id = 0

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return ""


def rollout_setup(model, args: argparse.Namespace):
    """A TransformersPolicy over ``model`` that samples exactly ``--new-tokens`` tokens, and ``--rollouts``
    requests of ``--context`` random token ids."""
    from mem1_agent.policies.base import GenerationRequest, SamplingConfig
    from mem1_agent.policies.hf import HFConfig, TransformersPolicy

    sampling = SamplingConfig(max_new_tokens=args.new_tokens)
    policy = TransformersPolicy.from_model(model.eval(), _Codec(), sampling, HFConfig(max_batch=args.rollouts))
    policy._finished = lambda ids, stop, budget: "length" if len(ids) >= budget else None  # fixed length
    g = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    requests = [GenerationRequest(slot=i, context_ids=tuple(torch.randint(1, vocab, (args.context,), generator=g).tolist()),
                                  context_text="", stop=(), max_new_tokens=args.new_tokens, observation="", turns_left=1)
                for i in range(args.rollouts)]
    return policy, requests


def rollout_tokens_per_s(model, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    policy, requests = rollout_setup(model, args)
    seconds = []
    for _ in range(args.repeats + 1):
        synchronize(device)
        started = time.perf_counter()
        out = policy.generate(requests)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    tokens = sum(len(o.token_ids) for o in out)
    median = statistics.median(seconds[1:])  # the first call warms up kernels and the allocator
    return tokens / median, median


def layout_samples(model, layout: str, args: argparse.Namespace) -> tuple[list, int]:
    """``--trajectories`` MEM1-shaped trajectories of ``--turns`` turns as ``layout``'s samples, and the
    samples per forward/backward: ``--micro-trajectories`` trajectories (per-turn: all their turns)."""
    g = torch.Generator().manual_seed(args.turns)
    trajectories = [trajectory(args.turns, model.config.vocab_size, g) for _ in range(args.trajectories)]
    if layout == "per-turn":
        return [s for t in trajectories for s in per_turn_samples(t)], args.turns * args.micro_trajectories
    return [prefix_cache_sample(t) for t in trajectories], args.micro_trajectories


def update_tokens_per_s(model, layout: str, args: argparse.Namespace, device: torch.device) -> dict:
    samples, micro = layout_samples(model, layout, args)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    seconds = []
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the previous layout's cached blocks would count as this one's reserved peak
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak RSS to the current RSS
    for _ in range(args.repeats + 1):
        synchronize(device)
        started = time.perf_counter()
        accumulate_nll(model, samples, micro, 0, device)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else proc_status_kib("VmHWM") / 2**20
    reserved = torch.cuda.max_memory_reserved() / 2**30 if device.type == "cuda" else None
    tokens = sum(tokens_processed(s) for s in samples)
    median = statistics.median(seconds[1:])
    del optimizer
    plan = planned_gib(model, samples, micro, device)
    return {"layout": layout, "tokens_per_step": tokens, "seconds_per_step": median, "tokens_per_s": tokens / median,
            "peak_gib": peak, "peak_reserved_gib": reserved, "plan_gib": plan,
            "peak_vs_plan": (reserved if reserved is not None else peak) / plan}


def planned_gib(model, samples: list, micro: int, device: torch.device) -> float:
    """What ``--dry-run``'s memory model (:func:`~mem1_agent.train.memory_plan.plan_memory`) plans for this very
    update: fp32 weights under autocast, ``micro`` samples per forward/backward, the longest sample, no reference
    (the NLL has none), no vLLM share. GiB, to sit beside the measured peak (the GPU check's "within 25 %")."""
    from mem1_agent.train.learner import LearnerConfig
    from mem1_agent.train.memory_plan import ModelShape, Workload, plan_memory
    from mem1_agent.train.ppo import PPOConfig

    shape = ModelShape.from_config(model.config.to_dict())
    config = LearnerConfig(precision="fp32", rollout_backend="transformers", reference="none",
                           ppo=PPOConfig(kl_coef=0.0, micro_batch_size=micro, mini_batch_size=len(samples)))
    longest = max(samples, key=tokens_processed)
    work = Workload(sample_tokens=tokens_processed(longest), sampled_tokens=longest.n_sampled,
                    cuda=device.type == "cuda")
    return plan_memory(shape, config, work).total / 2**30


def measure_shape(shape: str, args: argparse.Namespace, device: torch.device) -> dict:
    """The single-device rollout and update rows of ``shape``, printed, then its 1-vs-N-processes rows."""
    model = make_model(shape, device)
    n_params = sum(p.numel() for p in model.parameters())
    rollout_tps, rollout_s = rollout_tokens_per_s(model, args, device) if args.rollouts else (0.0, 0.0)
    rows = [update_tokens_per_s(model, layout, args, device) for layout in ("per-turn", "prefix-cache")]
    del model
    for row in rows:
        row["mfu"] = 6 * n_params * row["tokens_per_s"] / (args.peak_tflops * 1e12) if device.type == "cuda" else None
        row["speedup"] = rows[0]["seconds_per_step"] / row["seconds_per_step"]  # same trajectories per step
    print(f"{shape}: {n_params / 1e6:.1f}M parameters; {args.trajectories} trajectories of {args.turns} turns per step, "
          f"{args.micro_trajectories} per micro-batch\n")
    if args.rollouts:
        print(f"rollout: {args.rollouts} x {args.new_tokens} tokens after {args.context}-token contexts: "
              f"{rollout_tps:.0f} tokens/s ({rollout_s:.2f} s per call)\n")
    print("| update layout | tokens/step | s/step | tokens/s | vs per-turn | MFU | peak GiB | reserved GiB | plan GiB "
          "| peak / plan |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        mfu = f"{100 * row['mfu']:.1f} %" if row["mfu"] is not None else "-"
        reserved = f"{row['peak_reserved_gib']:.2f}" if row["peak_reserved_gib"] is not None else "-"
        print(f"| {row['layout']} | {row['tokens_per_step']} | {row['seconds_per_step']:.3f} | {row['tokens_per_s']:.0f} | "
              f"{row['speedup']:.2f}x | {mfu} | {row['peak_gib']:.2f} | {reserved} | {row['plan_gib']:.2f} | "
              f"{row['peak_vs_plan']:.2f} |")
    ranks = compare(shape, args.processes, args.trajectories, args.turns, args.repeats, args.threads)
    if ranks:
        print(f"\nlearner update (PPO, prefix-cache), {args.trajectories} trajectories per step across the ranks:\n")
        print(processes_table(shape, ranks))
    print()
    return {"shape": shape, "parameters": n_params, "rollout_tokens_per_s": rollout_tps, "rollout_seconds": rollout_s,
            "update": rows, "processes": ranks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", nargs="+", default=["tiny"], choices=sorted(SHAPES))
    parser.add_argument("--turns", type=int, default=8, help="turns per trajectory in the update")
    parser.add_argument("--trajectories", type=int, default=2, help="trajectories per update step (all ranks)")
    parser.add_argument("--micro-trajectories", type=int, default=1,
                        help="trajectories per forward/backward (per-turn: their turns' samples together)")
    parser.add_argument("--rollouts", type=int, default=16, help="contexts sampled together (0: no rollout row)")
    parser.add_argument("--context", type=int, default=900, help="context tokens of each rollout")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens sampled per rollout")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (shared by the ranks)")
    parser.add_argument("--processes", type=int, nargs="*", default=None,
                        help="CPU ranks of the torchrun update comparison (default on CPU: 1 2; none on CUDA; "
                             "give the flag alone to skip it)")
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="device peak bf16 dense TFLOP/s for MFU")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.processes is None:
        args.processes = [1, 2] if device.type == "cpu" else []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} threads"
    print(f"on {name}\n")
    shapes = [measure_shape(shape, args, device) for shape in args.shape]
    plan_rows = plans()
    print("`mem1-agent train MODEL --dry-run` (defaults) on H200s, GB per GPU:\n")
    print(plan_table(plan_rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": name, "args": {k: str(v) for k, v in vars(args).items()},
                                    "shapes": shapes, "dry_run_plans": plan_rows}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
