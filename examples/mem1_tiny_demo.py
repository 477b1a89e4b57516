"""MEM1 on a CPU, end to end: tiny Qwen2 + local tokenizer -> clone the oracle (SFT) -> PPO -> evaluate.

    python examples/mem1_tiny_demo.py                 # the full demo (~30 minutes on 2 idle cores)
    python examples/mem1_tiny_demo.py --quick         # ~1-minute smoke run (used by the tests)

Steps, top to bottom:

1. build a tiny Qwen2-architecture model and a BPE tokenizer trained on the env's own text (the
   "names" pre-tokenizer, so a name has one spelling in ids everywhere), then teach it to copy
   (windows of a random block of ids repeated, until it predicts the repeats: the induction heads
   every pretrained LLM has), then 360 steps of next-token pretraining on the env's corpus in 1024-token
   windows that each carry a *needle* (a random block written twice: copying across a whole MEM1 context,
   not just the first 128 tokens that copy windows show); a model from scratch has never read anything,
   a real run starts from a pretrained LLM (the recipe: ``tiny_pretrain.py``, next to this file);
2. behaviour cloning on oracle trajectories of ``MEM1-MultiHopQA-2`` (train split, one passage per
   search; only *grounded* ones, where every answer the oracle wrote was in the results it read)
   with the exact prefix-cache layout: 1300 steps of 8 trajectories (3346 grounded ones, ~3.1 epochs);
3. RL with the clipped PPO objective on the same env, the current weights sampling each iteration,
   20 iterations; the reward is F1 plus a bonus for each supporting passage retrieved
   (``evidence_bonus``). Default ``--algo rloo``: 4 rollouts per task, advantage = reward minus the
   mean of the other three, so a task whose rollouts all score the same (most, this early) moves
   nothing; ``--algo ppo`` (value head, token-level GAE) let the policy drift here (docs/experiments.md);
4. greedy evaluation on the validation split: untrained vs SFT vs SFT+RL at N = 2, then the final
   model at N = 1, 2, 4, 8, 16 under the ``mem1`` and ``full`` contexts (table, JSON and plot in ``--out``).

Every stage runs a fixed number of steps and all is seeded, so a run gives the same numbers on a busy
machine as on an idle one (docs/experiments.md); ``--max-minutes`` only aborts a run that takes too long,
with a message, and never shortens a stage.

A 64-wide, 2-layer model is far too small to do multi-hop QA well; what the demo shows is that the
pipeline learns in CPU minutes (format, queries that copy the question's entities, some exact
answers) and what RL adds over SFT on the same task, with the numbers printed honestly whatever they are.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


ENV = "MEM1-MultiHopQA-2"
ENV_KWARGS = {"k": 1}
"""One passage per search: a third of the reading per turn, so the CPU budget goes three times as far."""
PPO_REWARD = {"reward": "f1", "evidence_bonus": 0.5}
"""PPO's reward: summed F1 plus 0.5 x the supporting passages found (per question, a fraction)."""


@dataclass(frozen=True)
class DemoBudget:
    """How much work each stage does: step counts only, so that a run gives the same numbers on a busy machine
    as on an idle one (all is seeded). ``max_minutes`` never shortens a stage: it aborts the run."""

    pretrain_passages: int | None
    """Corpus passages to pretrain on (None: all 20k, 2.4M tokens)."""
    copy_steps: int
    """Most steps of copy windows alone (the phase stops once their NLL is below 0.3: ~650 steps, ~1.8 minutes
    on 2 idle cores; a warning says so when this count comes first)."""
    pretrain_steps: int
    """Steps of next-token pretraining on the corpus (1024-token windows with needles)."""
    sft_episodes: int
    """Oracle trajectories (distinct train tasks) played; the grounded ones are cloned."""
    sft_epochs: int
    """Most passes over them."""
    sft_steps: int
    """SFT optimizer steps (8 trajectories each), unless the epochs end first."""
    ppo_iterations: int
    """RL collect/update iterations."""
    ppo_tasks: int
    """Rollouts per PPO iteration (tasks x group size)."""
    compare_episodes: int
    """Validation tasks of the untrained / SFT / SFT+PPO comparison at N = 2."""
    sweep_episodes: int
    """Validation tasks per (N, context) cell of the final sweep."""
    horizons: tuple[int, ...]
    """N of the final sweep."""
    max_new_tokens: int
    """Most tokens per turn at N = 2 (the oracle's longest N = 2 turn is ~80 tokens)."""
    max_minutes: float
    """Abort (with a message, nothing printed as a result) once the run has taken this long: a machine so
    slow or busy that the run would not end in reasonable time. Never a reason to do less work."""


FULL = DemoBudget(pretrain_passages=None, copy_steps=2000, pretrain_steps=360, sft_episodes=5000, sft_epochs=4,
                  sft_steps=1300, ppo_iterations=20, ppo_tasks=32, compare_episodes=96, sweep_episodes=8,
                  horizons=(1, 2, 4, 8, 16), max_new_tokens=96, max_minutes=150.0)
QUICK = DemoBudget(pretrain_passages=300, copy_steps=3, pretrain_steps=3, sft_episodes=8, sft_epochs=1, sft_steps=1000,
                   ppo_iterations=1, ppo_tasks=4, compare_episodes=2, sweep_episodes=2, horizons=(1, 2),
                   max_new_tokens=12, max_minutes=15.0)
SWEEP_WINDOW = 6144
"""Context window of the final sweep: once a full-history context that loops passes it (8,869 tokens in one
run at N = 16, where others peaked at ~5,000), the policy generates nothing more, as with a real model's
window, instead of spending three minutes of the budget on it (the env still appends its "no valid action"
message each turn, so the recorded peak can pass the window)."""
TINY = dict(vocab_size=4096, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
            pretokenizer="names", oracle_episodes=500, tokenizer_passages=20_000)
"""The "names" pre-tokenizer spells every word of a name with the same ids in questions, passages and
the agent's own text, before punctuation or not (what copying names into queries and answers needs),
and keeps contexts about as short as "trailing-space" (which spells "Bram?" and "Bram " differently)."""


def turn_budget(budget: DemoBudget, n: int) -> int:
    """Most tokens per turn at N questions: the mem1 state lists every answer found so far (the
    oracle's longest turn is 71, 98 and 190 tokens at N = 4, 8, 16; budgets 116, 156, 236)."""
    return budget.max_new_tokens if n <= 2 else min(budget.max_new_tokens + 10 * (n - 2), 448)


def evaluate(model_dir: Path, out: Path, episodes: int, budget: DemoBudget, horizons: tuple[int, ...],
             contexts: tuple[str, ...], window: int | None = None) -> tuple[Any, Any, list[Any]]:
    """Greedy evaluation on the validation split; one run per N, each with its own turn budget."""
    from mem1_agent.eval import EvalConfig, run_eval
    from mem1_agent.policies import SamplingConfig, make_policy

    cells, config, policy = [], None, None
    for n in horizons:
        tokens = turn_budget(budget, n)
        config = EvalConfig(env_id=ENV, contexts=contexts, episodes=episodes, horizons=(n,), split="validation",
                            concurrency=8, out=out, max_new_tokens=tokens, max_context_tokens=window,
                            env_kwargs=ENV_KWARGS)
        policy = make_policy(f"hf:{model_dir}", SamplingConfig(temperature=0.0, max_new_tokens=tokens),
                             device="cpu", max_batch=8)
        cells += run_eval(config, policy, progress=False)
    return config, policy, cells


class OutOfTime(Exception):
    """The run passed ``--max-minutes``."""


def abort_after(minutes: float) -> None:
    """Raise :class:`OutOfTime` in the main thread once ``minutes`` have passed (SIGALRM), wherever the run is."""
    def expire(signum: int, frame: Any) -> None:
        raise OutOfTime(f"the demo passed its {minutes:g}-minute cap and stopped: a machine this slow or busy would "
                        "still give the same numbers (every stage runs a fixed number of steps), only later; rerun "
                        "with a larger --max-minutes, or on a quieter machine")

    signal.signal(signal.SIGALRM, expire)
    signal.alarm(max(1, round(60 * minutes)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~1-minute smoke run")
    parser.add_argument("--algo", choices=("ppo", "rloo", "grpo"), default="rloo",
                        help="rloo (default)/grpo: the clipped PPO objective with group baselines over 4 rollouts "
                             "per task; ppo: value head + GAE (drifts on this sparse reward: see docs/experiments.md)")
    parser.add_argument("--out", type=Path, default=Path("runs/mem1-tiny-demo"))
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="abort the run after M minutes (default: 150, 15 with --quick); never shortens a stage")
    args = parser.parse_args()
    budget = QUICK if args.quick else FULL
    try:
        run(args, budget)
    except OutOfTime as error:
        raise SystemExit(f"error: {error}") from None


def run(args: argparse.Namespace, budget: DemoBudget) -> None:
    abort_after(args.max_minutes or budget.max_minutes)

    import torch
    from mem1_agent.policies.base import TokenCodec
    from mem1_agent.report import markdown_table, summaries_of, write_reports
    from mem1_agent.tiny import TOKENIZER_SUBDIR, TinyConfig, load_tokenizer, make_tiny
    from mem1_agent.train.learner import LearnerConfig, train
    from mem1_agent.train.ppo import PPOConfig
    from mem1_agent.train.logger import log_to_console
    from mem1_agent.train.sft import SFTConfig, grounded, oracle_trajectories, sft
    from tiny_pretrain import NEEDLE_SEQ_LEN, copy_then_read, corpus_texts, pack, recent_mean  # next to this file
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    log_to_console()  # the learner's line per iteration
    started = time.perf_counter()
    stamp = lambda: f"[{time.perf_counter() - started:6.0f}s]"

    # Evaluation folders resume finished episodes; a new demo run must not reuse the last run's.
    for old in (*args.out.glob("eval-*"), args.out / "ppo"):
        shutil.rmtree(old, ignore_errors=True)

    # 1. model + tokenizer trained on the env's text
    base = make_tiny(args.out / "untrained", TinyConfig(**TINY))
    codec = TokenCodec(load_tokenizer(base), name="tiny")
    model = AutoModelForCausalLM.from_pretrained(base)
    print(f"{stamp()} tiny Qwen2 ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters) in {base}")

    # Copying first: windows of a random block repeated, until the model predicts the repeats (NLL < 0.3).
    # A model from scratch cannot copy a name from its context (its NLL on a repeated block equals that
    # on the first copy); corpus text alone did not change that in CPU minutes, this does in ~2.
    # Then reading, in windows as long as a MEM1 context, each with a needle: copy windows start every
    # block at position 0 and repeat it within 128 tokens, and the model copied at no other range.
    stream = pack(corpus_texts(budget.pretrain_passages), codec.tokenizer)
    copying, reading = copy_then_read(model, stream, budget.copy_steps, budget.pretrain_steps, device="cpu",
                                      needles=True)
    print(f"{stamp()} copy windows, {len(copying)} steps: NLL/repeated token {copying[0]:.3f} -> "
          f"{recent_mean(copying):.3f}")
    print(f"{stamp()} pretraining on the corpus ({len(stream) / 1e6:.1f}M tokens), {NEEDLE_SEQ_LEN}-token windows with "
          f"needles, {len(reading)} steps: NLL/text token + NLL/copied token {reading[0]:.3f} -> {recent_mean(reading):.3f}")

    # 2. behaviour cloning on the grounded oracle trajectories (train split)
    played = oracle_trajectories(ENV, str(base), budget.sft_episodes, split="train", env_kwargs=ENV_KWARGS)
    demos = [trajectory for trajectory in played if grounded(trajectory)]
    config = SFTConfig(epochs=budget.sft_epochs, lr=3e-3, warmup_steps=10, micro_batch_size=4, mini_batch_size=8,
                       device="cpu", max_steps=budget.sft_steps)
    losses = sft(model, demos, config, codec.pad_id)
    sft_dir = args.out / "sft"
    model.save_pretrained(sft_dir)
    codec.tokenizer.save_pretrained(str(sft_dir / TOKENIZER_SUBDIR))
    print(f"{stamp()} SFT on {len(demos)} grounded of {len(played)} oracle trajectories, {len(losses)} steps "
          f"({len(losses) * config.mini_batch_size / len(demos):.1f} epochs): NLL/token {losses[0]:.3f} -> "
          f"{recent_mean(losses):.3f}")

    # 3. RL (rloo by default). F1 reward (partial credit gives a tiny model a gradient before its first
    # exact answer) plus 0.5 per supporting passage found (shaping: a signal for searching the right entity).
    group = 1 if args.algo == "ppo" else 4
    ppo = PPOConfig(algo=args.algo, lr=3e-4, warmup_steps=2, ent_coef=0.0, kl_coef=0.01, epochs=2,
                    micro_batch_size=4, mini_batch_size=16)
    learner = LearnerConfig(env_id=ENV, iterations=budget.ppo_iterations,
                            tasks_per_iteration=budget.ppo_tasks // group, group_size=group, concurrency=8,
                            max_new_tokens=budget.max_new_tokens, device="cpu", out=args.out / "ppo",
                            env_kwargs={**ENV_KWARGS, **PPO_REWARD}, ppo=ppo, tensorboard=False)
    iteration = len(train(model, codec, learner, resume=False))
    print(f"{stamp()} {args.algo.upper()}: {iteration} iterations")

    # 4. evaluation: untrained vs SFT vs SFT+PPO at N=2, then the sweep of the final model
    rows = []
    for name, folder in (("untrained", base), ("sft", sft_dir), (f"sft+{args.algo}", args.out / "ppo")):
        _, _, cells = evaluate(folder, args.out / f"eval-{name}", budget.compare_episodes, budget, (2,), ("mem1",))
        s = summaries_of(cells)[0]
        rows.append(f"| {name} | {s.em_sum:.3f} | {s.em_per_objective[0]:.3f} / {s.em_per_objective[1]:.3f} "
                    f"| {s.f1_sum:.3f} | {s.evidence_text} | {s.valid_action_rate:.1%} |")
    print(f"{stamp()} {ENV}, validation, mem1 context, greedy, {budget.compare_episodes} tasks\n")
    print("| model | EM (sum of 2) | EM Q1 / Q2 | F1 (sum) | evidence found | valid actions |\n|---|---|---|---|---|---|\n"
          + "\n".join(rows) + "\n")

    config, policy, cells = evaluate(args.out / "ppo", args.out / "eval-sweep", budget.sweep_episodes, budget,
                                     budget.horizons, ("mem1", "full"), window=SWEEP_WINDOW)
    paths = write_reports(cells, config, policy.name, policy.codec.name)
    print(markdown_table(summaries_of(cells)))
    print(f"\n{stamp()} report {paths['markdown']}, plot {paths['plot']}")


if __name__ == "__main__":
    main()
