"""MEM1 on a CPU, end to end: tiny Qwen2 + local tokenizer -> clone the oracle (SFT) -> PPO -> evaluate.

    python examples/mem1_tiny_demo.py                 # the full demo (budget: 20 minutes on 2 cores)
    python examples/mem1_tiny_demo.py --quick         # ~1-minute smoke run (used by the tests)

Steps, top to bottom:

1. build a tiny Qwen2-architecture model and a BPE tokenizer trained on the env's own text;
2. behaviour cloning on oracle trajectories of ``MEM1-MultiHopQA-2`` (train split) with the exact
   stitched layout;
3. PPO (value head, token-level GAE) on the same env with the current weights sampling each iteration;
4. greedy evaluation on the validation split: untrained vs SFT vs SFT+PPO at N = 2, then the final
   model at N = 1, 2, 4, 8, 16 under the ``mem1`` and ``full`` contexts (table, JSON and plot in ``--out``).

A 64-wide, 2-layer model is far too small to do multi-hop QA well: what the demo shows is that the
pipeline learns (format, search queries, valid actions, some answers) in CPU minutes, with the
numbers printed honestly whatever they are.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass(frozen=True)
class DemoBudget:
    """How much work each stage does."""

    sft_episodes: int
    """Oracle trajectories to clone."""
    sft_epochs: int
    """Passes over them."""
    ppo_iterations: int
    """PPO collect/update iterations."""
    ppo_tasks: int
    """Tasks per PPO iteration."""
    eval_episodes: int
    """Validation tasks per (N, context) cell."""
    horizons: tuple[int, ...]
    """N of the final sweep."""
    max_new_tokens: int
    """Most tokens per turn (the oracle's turns are ~20-40 tokens)."""


FULL = DemoBudget(sft_episodes=160, sft_epochs=3, ppo_iterations=6, ppo_tasks=8, eval_episodes=8,
                  horizons=(1, 2, 4, 8, 16), max_new_tokens=48)
QUICK = DemoBudget(sft_episodes=6, sft_epochs=1, ppo_iterations=1, ppo_tasks=2, eval_episodes=2,
                   horizons=(1, 2), max_new_tokens=12)


def evaluate(model_dir: Path, out: Path, budget: DemoBudget, horizons: tuple[int, ...], contexts: tuple[str, ...]):
    from mem1_agent.eval import EvalConfig, run_eval
    from mem1_agent.policies import SamplingConfig, make_policy

    config = EvalConfig(env_id="MEM1-MultiHopQA-2", contexts=contexts, episodes=budget.eval_episodes,
                        horizons=horizons, split="validation", concurrency=8, out=out,
                        max_new_tokens=budget.max_new_tokens)
    policy = make_policy(f"hf:{model_dir}", SamplingConfig(temperature=0.0, max_new_tokens=budget.max_new_tokens),
                         device="cpu", max_batch=8)
    return config, policy, run_eval(config, policy, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~1-minute smoke run")
    parser.add_argument("--out", type=Path, default=Path("runs/mem1-tiny-demo"))
    args = parser.parse_args()
    budget = QUICK if args.quick else FULL

    import torch
    from mem1_agent.policies.base import TokenCodec
    from mem1_agent.report import markdown_table, summaries_of, write_reports
    from mem1_agent.tiny import TOKENIZER_SUBDIR, load_tokenizer, make_tiny
    from mem1_agent.train.learner import LearnerConfig, train
    from mem1_agent.train.ppo import PPOConfig
    from mem1_agent.train.sft import SFTConfig, oracle_trajectories, sft
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    started = time.perf_counter()
    stamp = lambda: f"[{time.perf_counter() - started:6.0f}s]"

    # Evaluation folders resume finished episodes; a new demo run must not reuse the last run's.
    for old in args.out.glob("eval-*"):
        shutil.rmtree(old)

    # 1. model + tokenizer trained on the env's text
    base = make_tiny(args.out / "untrained")
    codec = TokenCodec(load_tokenizer(base), name="tiny")
    print(f"{stamp()} tiny model in {base}")

    # 2. behaviour cloning on oracle trajectories (train split)
    demos = oracle_trajectories("MEM1-MultiHopQA-2", str(base), budget.sft_episodes, split="train")
    model = AutoModelForCausalLM.from_pretrained(base)
    sft_config = SFTConfig(epochs=budget.sft_epochs, lr=2e-3, warmup_steps=5, micro_batch_size=4,
                           mini_batch_size=8, device="cpu")
    losses = sft(model, demos, sft_config, codec.pad_id)
    sft_dir = args.out / "sft"
    model.save_pretrained(sft_dir)
    codec.tokenizer.save_pretrained(str(sft_dir / TOKENIZER_SUBDIR))
    print(f"{stamp()} SFT on {len(demos)} oracle trajectories: NLL/token {losses[0]:.3f} -> {losses[-1]:.3f}")

    # 3. PPO with the current weights sampling every iteration
    ppo = PPOConfig(algo="ppo", lr=2e-4, warmup_steps=2, ent_coef=0.0, kl_coef=0.01, epochs=2,
                    micro_batch_size=4, mini_batch_size=8)
    learner = LearnerConfig(env_id="MEM1-MultiHopQA-2", iterations=budget.ppo_iterations,
                            tasks_per_iteration=budget.ppo_tasks, concurrency=8,
                            max_new_tokens=budget.max_new_tokens, device="cpu", out=args.out / "ppo", ppo=ppo)
    train(model, codec, learner, resume=False)
    print(f"{stamp()} PPO: {budget.ppo_iterations} iterations")

    # 4. evaluation: untrained vs SFT vs SFT+PPO at N=2, then the sweep of the final model
    rows = []
    for name, folder in (("untrained", base), ("sft", sft_dir), ("sft+ppo", args.out / "ppo")):
        _, _, cells = evaluate(folder, args.out / f"eval-{name}", budget, (2,), ("mem1",))
        summary = summaries_of(cells)[0]
        rows.append(f"| {name} | {summary.em_sum:.3f} | {summary.f1_sum:.3f} | {summary.valid_action_rate:.1%} |")
    print(f"{stamp()} MEM1-MultiHopQA-2, validation, mem1 context, greedy, {budget.eval_episodes} tasks\n")
    print("| model | EM (sum) | F1 (sum) | valid actions |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")

    config, policy, cells = evaluate(args.out / "ppo", args.out / "eval-sweep", budget, budget.horizons,
                                     ("mem1", "full"))
    paths = write_reports(cells, config, policy.name, policy.codec.name)
    print(markdown_table(summaries_of(cells)))
    print(f"\n{stamp()} report {paths['markdown']}, plot {paths['plot']}")


if __name__ == "__main__":
    main()
