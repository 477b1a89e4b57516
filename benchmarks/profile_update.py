"""Where one learner update step and one rollout call spend their time (a diagnosis, not a benchmark).

    python benchmarks/profile_update.py --device cuda --shape qwen2.5-0.5b --out results/gpu_profile.json
    python benchmarks/profile_update.py --shape tiny                      # CPU rehearsal

For the shape and the trajectories of ``bench_train.py`` (8 turns, MEM1 token lengths):

* one update step (forward + backward + AdamW of the token-mean NLL) per layout under ``torch.profiler``:
  wall time, the device's busy time (the sum of kernel times: far below the wall time means the step
  waits on the CPU), and the operators with the most device time;
* the attention call alone, forward + backward, at the per-turn micro-batch's size: scaled-dot-product
  attention with the layouts' additive float mask in fp32 (what the learner passed before it cast the
  mask to the autocast dtype), in bf16 (what it passes now), and plain causal attention with no mask,
  each with the kernel PyTorch picked;
* one rollout call (``TransformersPolicy``): wall time per sampled token and the device's busy share.
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
from bench_layouts import synchronize
from bench_train import SHAPES, layout_samples, make_model, rollout_setup
from mem1_agent.train.device import autocast, resolve_device
from mem1_agent.train.sft import accumulate_nll


def device_time_us(events) -> float:
    """Device (kernel) time of the step in microseconds: the self device time of the operators launched on the
    CPU (their kernels' rows carry the same time again, so they are not added)."""
    from torch.autograd import DeviceType

    return sum(getattr(e, "self_device_time_total", 0.0) for e in events if e.device_type == DeviceType.CPU)


def top_ops(prof, device: torch.device, rows: int) -> str:
    sort = "self_cpu_time_total" if device.type == "cpu" else "self_cuda_time_total"
    try:
        return prof.key_averages().table(sort_by=sort, row_limit=rows, max_name_column_width=60)
    except Exception:  # a renamed column in another torch version
        return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=60)


def activities(device: torch.device) -> list:
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


def profile_update(model, layout: str, args, device: torch.device) -> dict:
    from torch.profiler import profile

    samples, micro = layout_samples(model, layout, args)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def one_step() -> None:
        accumulate_nll(model, samples, micro, 0, device)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    untraced = time_call(one_step, device, args.repeats)  # after a warm-up; the profiler's overhead left out
    with profile(activities=activities(device)) as prof:
        started = time.perf_counter()
        one_step()
        synchronize(device)
        wall = time.perf_counter() - started
    del optimizer
    name = layout
    busy = device_time_us(prof.key_averages()) / 1e6 if device.type == "cuda" else None
    table = top_ops(prof, device, args.rows)
    print(f"\n### update, {name}: {untraced:.3f} s per step (median of {args.repeats}); profiled step: wall {wall:.3f} s"
          + (f", device busy {busy:.3f} s ({100 * busy / wall:.0f} %)" if busy is not None else "") + "\n")
    print(table)
    return {"layout": name, "seconds_per_step": untraced, "profiled_wall_s": wall, "device_busy_s": busy,
            "table": table}


def time_call(fn, device: torch.device, repeats: int) -> float:
    fn()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def attention_variants(model, args, device: torch.device) -> list[dict]:
    """SDPA forward + backward at the per-turn micro-batch's size, with each mask the learner could pass."""
    from torch.nn.functional import scaled_dot_product_attention as sdpa
    from torch.profiler import profile

    c = model.config
    heads, head_dim = c.num_attention_heads, c.hidden_size // c.num_attention_heads
    b, s = args.turns, args.attention_len
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v = (torch.randn(b, heads, s, head_dim, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    causal = torch.ones(s, s, dtype=torch.bool, device=device).tril()
    mask32 = torch.zeros(b, 1, s, s, device=device).masked_fill_(~causal, torch.finfo(torch.float32).min)
    mask16 = torch.zeros(b, 1, s, s, device=device, dtype=dtype).masked_fill_(~causal, torch.finfo(dtype).min)
    variants = {"additive fp32 mask (the learner's before)": dict(attn_mask=mask32),
                f"additive {str(dtype)[6:]} mask (the learner's now)": dict(attn_mask=mask16),
                "is_causal, no mask": dict(is_causal=True)}
    rows = []
    for name, kwargs in variants.items():
        def call(kwargs=kwargs):
            with autocast(device):
                out = sdpa(q, k, v, enable_gqa=False, **kwargs)
            out.float().sum().backward()

        try:
            seconds = time_call(call, device, args.repeats)
            with profile(activities=activities(device)) as prof:
                call()
                synchronize(device)
            kernels = sorted({e.key for e in prof.key_averages() if "attention" in e.key.lower() or "bmm" in e.key.lower()
                              or "softmax" in e.key.lower()})
            rows.append({"variant": name, "seconds": seconds, "ops": kernels[:8]})
        except Exception as error:  # noqa: BLE001 (a variant this torch refuses is a finding too)
            rows.append({"variant": name, "seconds": None, "ops": [f"{type(error).__name__}: {error}"[:200]]})
    print(f"\n### attention alone: B={b} heads={heads} S={s} d={head_dim}, forward + backward, median of {args.repeats}\n")
    print("| mask | s | ops seen |\n|---|---|---|")
    for row in rows:
        seconds = f"{row['seconds'] * 1e3:.1f} ms" if row["seconds"] is not None else "failed"
        print(f"| {row['variant']} | {seconds} | {', '.join(row['ops'])} |")
    return rows


def profile_rollout(model, args, device: torch.device) -> dict:
    from torch.profiler import profile

    policy, requests = rollout_setup(model, args)
    policy.generate(requests)  # warm-up
    synchronize(device)
    with profile(activities=activities(device)) as prof:
        started = time.perf_counter()
        policy.generate(requests)
        synchronize(device)
        wall = time.perf_counter() - started
    busy = device_time_us(prof.key_averages()) / 1e6 if device.type == "cuda" else None
    table = top_ops(prof, device, args.rows)
    per_step = wall / args.new_tokens
    print(f"\n### rollout: {args.rollouts} x {args.new_tokens} tokens after {args.context}: wall {wall:.2f} s, "
          f"{1e3 * per_step:.1f} ms per sampled position" + (f", device busy {busy:.2f} s ({100 * busy / wall:.0f} %)"
                                                             if busy is not None else "") + "\n")
    print(table)
    return {"wall_s": wall, "ms_per_position": 1e3 * per_step, "device_busy_s": busy, "table": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--trajectories", type=int, default=4)
    parser.add_argument("--micro-trajectories", type=int, default=1, help="trajectories per forward/backward")
    parser.add_argument("--attention-len", type=int, default=2048, help="S of the attention-alone comparison")
    parser.add_argument("--rollouts", type=int, default=32)
    parser.add_argument("--context", type=int, default=900)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=15, help="operators per profile table")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "profile.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = make_model(args.shape, device)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}}
    result["attention"] = attention_variants(model, args, device)
    result["update"] = [profile_update(model, layout, args, device) for layout in ("per-turn", "prefix-cache")]
    result["rollout"] = profile_rollout(model, args, device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
