"""``mem1-agent``: evaluate a policy on the MEM1 envs, or build a tiny model for CPU demos.

    mem1-agent eval --env MEM1-MultiHopQA-8 --policy oracle --context mem1,full --episodes 50
    mem1-agent eval --env MEM1-MultiHopQA-2 --policy hf:runs/tiny --episodes 2 --max-new-tokens 32
    mem1-agent eval --env MEM1-MultiHopQA-2 --policy openai:http://127.0.0.1:8000/v1:Qwen/Qwen2.5-7B-Instruct
    mem1-agent make-tiny --out runs/tiny
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,4,8,16, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mem1-agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="evaluate a policy; prints a table, writes JSONL records + report.{json,md} + a PNG")
    ev.add_argument("--env", default="MEM1-MultiHopQA-8", help="env id (default MEM1-MultiHopQA-8)")
    ev.add_argument("--policy", required=True, help="oracle | hf:DIR | vllm:MODEL | openai[-chat]:URL[:MODEL]")
    ev.add_argument("--context", type=_names, default=("mem1",), help="mem1, full, truncate:K; comma-separated to compare")
    ev.add_argument("--episodes", type=int, default=50, help="tasks per env and context (default 50)")
    ev.add_argument("--horizons", type=_ints, default=(), help="sweep N, e.g. 1,2,4,8,16 (replaces the number in --env)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--split", default="test", choices=("train", "validation", "test"))
    ev.add_argument("--concurrency", type=int, default=8, help="episodes in lock-step = model batch size (default 8)")
    ev.add_argument("--out", type=Path, default=Path("runs/mem1-eval"), help="output folder; rerun to resume")
    ev.add_argument("--max-turns", type=int, default=None, help="turn budget (default: the env's)")
    ev.add_argument("--max-new-tokens", type=int, default=512)
    ev.add_argument("--max-context-tokens", type=int, default=None, help="context limit (default: the model window)")
    ev.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    ev.add_argument("--top-p", type=float, default=1.0)
    ev.add_argument("--device", default="auto", help="transformers device: auto, cpu, cuda")
    ev.add_argument("--tokenizer", default=None, help="folder of the tokenizer that counts tokens of text policies")
    ev.add_argument("--api-key", default=None, help="OpenAI-compatible key (default $OPENAI_API_KEY)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")

    tiny = sub.add_parser("make-tiny", help="train a tokenizer on the env text and save a random tiny Qwen2")
    tiny.add_argument("--out", type=Path, required=True)
    tiny.add_argument("--vocab-size", type=int, default=2048)
    tiny.add_argument("--hidden-size", type=int, default=64)
    tiny.add_argument("--layers", type=int, default=2)
    tiny.add_argument("--seed", type=int, default=0)
    return parser


def cmd_eval(args: argparse.Namespace) -> int:
    from mem1_agent.eval import EvalConfig, run_eval
    from mem1_agent.policies import SamplingConfig, make_policy
    from mem1_agent.report import markdown_table, summaries_of, write_reports

    env_kwargs = {} if args.max_turns is None else {"max_turns": args.max_turns}
    config = EvalConfig(
        env_id=args.env, contexts=args.context, episodes=args.episodes, horizons=args.horizons, seed=args.seed,
        split=args.split, concurrency=args.concurrency, out=args.out, max_new_tokens=args.max_new_tokens,
        max_context_tokens=args.max_context_tokens, env_kwargs=env_kwargs,
    )
    sampling = SamplingConfig(args.temperature, args.top_p, args.max_new_tokens, args.seed)
    # The policy is built (and a server or vLLM checked) before any env exists: a bad spec fails fast.
    policy = make_policy(args.policy, sampling, tokenizer=args.tokenizer, device=args.device,
                         max_batch=args.concurrency, api_key=args.api_key)
    try:
        cells = run_eval(config, policy, progress=not args.no_progress)
    finally:
        policy.close()
    paths = write_reports(cells, config, policy.name, policy.codec.name)
    print(markdown_table(summaries_of(cells)))
    print(f"\nrecords: {config.out}/*.jsonl  report: {paths['json']}  {paths['markdown']}  plot: {paths['plot']}")
    return 0


def cmd_make_tiny(args: argparse.Namespace) -> int:
    from mem1_agent.tiny import TinyConfig, make_tiny

    config = TinyConfig(vocab_size=args.vocab_size, hidden_size=args.hidden_size, num_layers=args.layers, seed=args.seed)
    out = make_tiny(args.out, config)
    print(f"tiny Qwen2 written to {out} (tokenizer in {out}/tokenizer); evaluate it with "
          f"`mem1-agent eval --policy hf:{out} --env MEM1-MultiHopQA-2 --episodes 2 --max-new-tokens 32`")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "eval":
            return cmd_eval(args)
        return cmd_make_tiny(args)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"mem1-agent: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
