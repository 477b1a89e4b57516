"""``mem1-agent demo``: the project's main job on the embedded default, end to end.

1. One ``MEM1-MultiHopQA-2`` episode played by the scripted oracle: transcript and reward.
2. The memory/accuracy table of MEM1 against the full-history baseline on identical validation
   tasks at N = 1, 2, 4 (``--horizons``), for two policies: the oracle (what a perfect agent's
   memory costs, model-free) and a model. On a CPU the model is a tiny Qwen2 with a tokenizer
   trained on the env's own text, built into the cache on first use: it is untrained, so its row
   shows the pipeline (exact records, peak tokens, dependency), not skill. On a GPU machine pass
   a real checkpoint: ``mem1-agent demo --model /models/Qwen2.5-7B-Instruct``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any


def add_demo_command(subparsers: Any) -> argparse.ArgumentParser:
    demo = subparsers.add_parser("demo", help="the main job: an oracle transcript, then the MEM1 memory/accuracy table")
    demo.add_argument("--model", default=None,
                      help="a transformers model folder (default: a tiny Qwen2 built locally into the cache)")
    demo.add_argument("--horizons", default="1,2,4", help="N values to compare (default 1,2,4)")
    demo.add_argument("--episodes", type=int, default=3, help="validation tasks per N and context (default 3)")
    demo.add_argument("--max-new-tokens", type=int, default=48, help="tokens per turn for the model (default 48)")
    demo.add_argument("--device", default="auto", help="auto, cpu or cuda")
    demo.add_argument("--out", type=Path, default=None, help="where the records and reports go (default: a temp dir)")
    return demo


def default_model_dir() -> Path:
    """The tiny demo model, built once into the cache (a few seconds)."""
    from mem1_gym.data.cache import cache_dir

    from mem1_agent.tiny import make_tiny

    path = cache_dir() / "tiny-demo-model"
    if not (path / "config.json").is_file():
        make_tiny(path)
    return path


def cmd_demo(args: argparse.Namespace) -> int:
    from mem1_gym.cli import main as gym_main

    from mem1_agent.eval import EvalConfig, run_eval
    from mem1_agent.policies import SamplingConfig, make_policy
    from mem1_agent.report import markdown_table, summaries_of

    print("== 1. one episode of MEM1-MultiHopQA-2, played by the scripted oracle ==")
    gym_main(["demo", "--env", "MEM1-MultiHopQA-2", "--split", "validation"])
    horizons = tuple(int(n) for n in args.horizons.split(",") if n.strip())
    model = Path(args.model) if args.model else default_model_dir()
    out = args.out or Path(tempfile.mkdtemp(prefix="mem1-demo-"))
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=args.max_new_tokens)  # greedy: a reproducible table
    model_label = f"model {model}" if args.model else "the untrained tiny Qwen2 (a pipeline check, not skill)"
    for label, spec in (("scripted oracle", "oracle"), (model_label, f"hf:{model}")):
        policy = make_policy(spec, sampling, device=args.device, max_batch=args.episodes)
        config = EvalConfig(env_id="MEM1-MultiHopQA-2", contexts=("mem1", "full"), episodes=args.episodes,
                            horizons=horizons, split="validation", concurrency=args.episodes,
                            out=out / spec.split(":")[0], max_new_tokens=args.max_new_tokens)
        try:
            cells = run_eval(config, policy, progress=False)
        finally:
            policy.close()
        print(f"\n== 2. MEM1 (mem1) vs full history, {label}, {args.episodes} validation tasks per N ==")
        print(markdown_table(summaries_of(cells)))
    print(f"\nrecords and reports: {out}")
    return 0
