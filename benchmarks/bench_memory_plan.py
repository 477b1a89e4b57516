"""The memory plan (``mem1-agent train --dry-run``) against measured CPU peaks of small Qwen2 models.

    nice -n 10 python benchmarks/bench_memory_plan.py          # 3 shapes, ~1 minute on 2 cores

Each shape runs in a fresh process: after the imports, its resident set (RSS) is the baseline; it
then builds a random fp32 Qwen2 (SDPA attention), AdamW, one micro-batch with the layouts' additive
4-D mask whose last ``k`` tokens are "sampled", and runs two update steps through the learner's own
pieces (:func:`~mem1_agent.train.ppo.forward`, :func:`~mem1_agent.train.ppo.ppo_loss`,
:func:`~mem1_agent.train.optim.clipped_step`); the second runs with the AdamW moments resident, as
every step of a run after the first. Measured = peak RSS (``ru_maxrss``) minus the baseline;
planned = :func:`~mem1_agent.train.memory_plan.plan_memory` with ``cuda=False`` (fp32 activations,
no compute copy, no CUDA overhead, no rollout share). Target (issue 19, req. 2): planned/measured
within 0.75-1.25.

Writes ``benchmarks/results/memory_plan.json``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# (hidden, layers, heads, kv heads, intermediate, vocab, micro-batch, sample tokens, sampled tokens)
CASES = [
    (64, 2, 4, 2, 256, 32000, 4, 1024, 512),  # logits dominate (a large vocabulary, Qwen-like)
    (128, 4, 4, 2, 512, 8192, 4, 1024, 256),  # activations and logits alike
    (256, 4, 8, 2, 1024, 16384, 2, 2048, 512),  # activations dominate, longer samples
]


def measure(case: tuple[int, ...]) -> dict[str, float]:
    """Run in a fresh process: the peak RSS growth of two update steps, and the plan's figure."""
    import psutil
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from mem1_agent.train.layouts import Batch
    from mem1_agent.train.learner import LearnerConfig
    from mem1_agent.train.memory_plan import ModelShape, Workload, plan_memory
    from mem1_agent.train.optim import adamw_with_warmup, clipped_step
    from mem1_agent.train.ppo import PPOConfig, forward, ppo_loss

    h, layers, heads, kv, inter, vocab, b, s, k = case
    torch.manual_seed(0)
    torch.set_num_threads(2)
    ppo = PPOConfig(algo="grpo", micro_batch_size=b, mini_batch_size=b)
    baseline = psutil.Process().memory_info().rss
    config = Qwen2Config(hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv, intermediate_size=inter, vocab_size=vocab,
                         tie_word_embeddings=True, attn_implementation="sdpa")
    model = Qwen2ForCausalLM(config).train()
    optimizer, scheduler = adamw_with_warmup(model.parameters(), 1e-4, 0.0, 0)
    causal = torch.full((s, s), torch.finfo(torch.float32).min).triu(1)
    slots = torch.arange(s).expand(b, s)
    sampled = (slots >= s - k).float()  # (B, S): the last k tokens were sampled
    batch = Batch(torch.randint(vocab, (b, s)), slots.clone(), causal.expand(b, 1, s, s).contiguous(),
                  torch.randint(vocab, (b, s)), (slots - 1).clamp(min=0), sampled, torch.zeros(b, s, dtype=torch.long))
    for _ in range(2):
        new = forward(model, batch)
        loss, _ = ppo_loss(new, new.logprobs.detach(), torch.randn(b, s) * sampled, sampled, ppo)
        loss.backward()
        del new, loss
        clipped_step(list(model.parameters()), optimizer, scheduler, 1.0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline  # ru_maxrss is KiB on Linux
    shape = ModelShape(h, layers, heads, kv, inter, vocab, True)
    plan = plan_memory(shape, LearnerConfig(ppo=ppo, group_size=2, rollout_backend="transformers"),
                       Workload(sample_tokens=s, sampled_tokens=k, cuda=False))
    return {"measured_mb": peak / 1e6, "planned_mb": plan.total / 1e6,
            "terms_mb": {name: size / 1e6 for name, size, _ in plan.rows if size}}


def main() -> None:
    rows = []
    for case in CASES:
        run = subprocess.run([sys.executable, __file__, "--one", json.dumps(case)], capture_output=True, text=True,
                             check=True, env={**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"})
        result = json.loads(run.stdout.strip().splitlines()[-1])
        rows.append({"case": dict(zip(("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab",
                                       "micro_batch", "sample_tokens", "sampled_tokens"), case, strict=True)),
                     **result, "ratio": result["planned_mb"] / result["measured_mb"]})
    print(f"{'h':>5}{'L':>3}{'V':>7}{'b':>3}{'s':>6}{'k':>5}{'measured MB':>13}{'planned MB':>12}{'ratio':>7}")
    for row in rows:
        c = row["case"]
        print(f"{c['hidden']:>5}{c['layers']:>3}{c['vocab']:>7}{c['micro_batch']:>3}{c['sample_tokens']:>6}"
              f"{c['sampled_tokens']:>5}{row['measured_mb']:>13.1f}{row['planned_mb']:>12.1f}{row['ratio']:>7.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory_plan.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(measure(tuple(json.loads(sys.argv[2])))))
    else:
        main()
