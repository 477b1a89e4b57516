"""Per-turn samples vs one stitched sequence: the same MEM1 trajectories, one optimisation step each.

    python benchmarks/bench_layouts.py            # CPU fp32, tiny Qwen2; writes benchmarks/results/layouts.json
    python benchmarks/bench_layouts.py --device cuda --hidden 768 --layers 12   # ~100M params, bf16 autocast

For trajectories of 2, 4, 8 and 16 turns (MEM1 contexts: prompt + previous state/action/observation,
token ids drawn at random with the env's typical lengths), it runs forward + backward + AdamW step
of the token-mean NLL on sampled tokens, once with per-turn samples (the baseline: every turn
recomputes the shared prompt) and once with the stitched layout, and reports tokens processed,
wall time and peak memory per step, and the loss of each (they must agree: both are exact).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from mem1_agent.train.device import autocast, resolve_device, to_device
from mem1_agent.train.layouts import (
    TurnTokens,
    collate,
    per_turn_samples,
    stitched_sample,
)
from mem1_agent.train.ppo import forward, masked_mean

PROMPT, STATE, ACTION, OBSERVATION = 470, 30, 12, 400  # token lengths measured on MEM1-MultiHopQA-2 oracle turns


def trajectory(n_turns: int, vocab: int, generator: torch.Generator) -> list[TurnTokens]:
    def draw(n: int) -> list[int]:
        return torch.randint(0, vocab, (n,), generator=generator).tolist()

    prompt, last, turns = draw(PROMPT), [], []
    for _ in range(n_turns):
        generated = draw(STATE + ACTION)
        turns.append(TurnTokens(prompt + last, generated))
        last = generated + draw(OBSERVATION)
    return turns


def peak_memory(device: torch.device) -> float:
    """Peak MiB: CUDA allocator peak, or the process's max RSS on CPU (monotone: read as an upper bound)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step(model, optimizer, samples, device, micro: int) -> tuple[float, int]:
    """One optimisation step over ``samples`` (micro-batches of ``micro``); returns (loss, tokens processed)."""
    total_targets = sum(len(s["targets"]) for s in samples)
    loss_sum, tokens = 0.0, 0
    for start in range(0, len(samples), micro):
        batch = to_device(collate(samples[start : start + micro]), device)
        with autocast(device):
            out = forward(model, batch)
        loss = -masked_mean(out.logprobs, batch.loss_mask) * batch.loss_mask.sum() / total_targets
        loss.backward()
        loss_sum += loss.item()
        tokens += sum(len(s["ids"]) for s in samples[start : start + micro])
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--trajectories", type=int, default=2, help="trajectories per step")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per cell (after one warm-up)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "layouts.json")
    args = parser.parse_args()
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.set_num_threads(2)
    device = resolve_device(args.device)
    config = Qwen2Config(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                         num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 64) * 2,
                         num_key_value_heads=max(1, args.hidden // 64), max_position_embeddings=32768,
                         attn_implementation="sdpa")
    results = []
    for n_turns in (2, 4, 8, 16):
        g = torch.Generator().manual_seed(n_turns)
        trajectories = [trajectory(n_turns, args.vocab, g) for _ in range(args.trajectories)]
        layouts = {
            "per-turn": [s for t in trajectories for s in per_turn_samples(t)],
            "stitched": [stitched_sample(t) for t in trajectories],
        }
        for name, samples in layouts.items():
            torch.manual_seed(0)  # identical weights for both layouts: identical loss
            model = Qwen2ForCausalLM(config).to(device).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            micro = 1 if name == "stitched" else n_turns  # one trajectory per micro-batch in both layouts
            loss, _ = step(model, optimizer, samples, device, micro)  # warm-up; its loss is the untouched model's
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            for _ in range(args.repeats):
                _, tokens = step(model, optimizer, samples, device, micro)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - started) / args.repeats
            results.append({"turns": n_turns, "layout": name, "loss": loss, "tokens_per_step": tokens,
                            "seconds_per_step": seconds, "seconds_per_trajectory": seconds / args.trajectories,
                            "tokens_per_s": tokens / seconds, "peak_mib": peak_memory(device)})
    print(f"device {device}, hidden {args.hidden}, layers {args.layers}, {args.trajectories} trajectories/step\n")
    print("| turns | layout | tokens/step | s/step | s/trajectory | tokens/s | peak MiB | loss | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in results:
        base = next(r for r in results if r["turns"] == row["turns"] and r["layout"] == "per-turn")
        row["speedup"] = base["seconds_per_step"] / row["seconds_per_step"]
        print(f"| {row['turns']} | {row['layout']} | {row['tokens_per_step']} | {row['seconds_per_step']:.3f} | "
              f"{row['seconds_per_trajectory']:.3f} | {row['tokens_per_s']:.0f} | {row['peak_mib']:.0f} | "
              f"{row['loss']:.6f} | {row['speedup']:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": str(device), "hidden": args.hidden, "layers": args.layers,
                                    "results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
