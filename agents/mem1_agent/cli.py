"""``mem1-agent``: evaluate a policy on the MEM1 envs, build a tiny model for CPU demos, clone the oracle, train.

    mem1-agent eval --env MEM1-MultiHopQA-8 --policy oracle --context mem1,full --episodes 50
    mem1-agent eval --env MEM1-MultiHopQA-2 --policy hf:runs/tiny --episodes 2 --max-new-tokens 32
    mem1-agent eval --env MEM1-MultiHopQA-2 --policy openai:http://127.0.0.1:8000/v1:Qwen/Qwen2.5-7B-Instruct
    mem1-agent make-tiny --out runs/tiny --pretokenizer names
    mem1-agent sft --env MEM1-MultiHopQA-2 --model runs/tiny --episodes 200 --out runs/tiny-sft
    mem1-agent train --env MEM1-MultiHopQA-2 --model runs/tiny-sft --algo ppo --iterations 20 --out runs/tiny-ppo \
        --env-kwarg reward=f1 --env-kwarg evidence_bonus=0.5
    mem1-agent train ... --rollout-backend vllm   # GPU + vllm: rollouts in a vLLM engine synced every iteration
    mem1-agent train --config examples/recipes/qwen2.5-0.5b-1gpu.yaml --model /models/Qwen2.5-0.5B-Instruct
    WORLD_SIZE=8 mem1-agent train --config examples/recipes/qwen2.5-7b-8gpu.yaml --dry-run   # per-GPU memory plan
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mem1_agent.keys import OPENAI_KEY_ENV, add_key_arguments, api_key
from mem1_gym.extras import MissingExtraError, require


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,4,8,16, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _env_kwarg(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> (key, value); VALUE is read as JSON (numbers, true/false, null) or else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as k=1 or reward=f1, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _add_env_kwargs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-kwarg", type=_env_kwarg, action="append", default=[], metavar="KEY=VALUE",
                        help="gym.make keyword for the env, repeatable: k=1, reward=f1, evidence_bonus=0.5, split=...")


def build_parser() -> argparse.ArgumentParser:
    from mem1_gym.cli import package_version, plain_text

    from mem1_agent.tiny import PRETOKENIZERS
    parser = argparse.ArgumentParser(prog="mem1-agent", description=plain_text(__doc__.splitlines()[0]))
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
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
    add_key_arguments(ev, OPENAI_KEY_ENV, "of an openai: policy's server")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_env_kwargs(ev)

    tiny = sub.add_parser("make-tiny", help="train a tokenizer on the env text and save a random tiny Qwen2")
    tiny.add_argument("--out", type=Path, required=True)
    tiny.add_argument("--vocab-size", type=int, default=2048)
    tiny.add_argument("--hidden-size", type=int, default=64)
    tiny.add_argument("--layers", type=int, default=2)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--pretokenizer", default="bytelevel", choices=PRETOKENIZERS,
                      help="how text is cut before BPE; 'names' spells a name's words one way everywhere (tiny.py)")
    bc = sub.add_parser("sft", help="behaviour cloning on oracle trajectories; saves a save_pretrained folder")
    bc.add_argument("--env", default="MEM1-MultiHopQA-2")
    bc.add_argument("--model", required=True, help="model folder (make-tiny output or a Hugging Face folder)")
    bc.add_argument("--out", type=Path, required=True)
    bc.add_argument("--episodes", type=int, default=200, help="oracle trajectories from the train split")
    bc.add_argument("--epochs", type=int, default=2)
    bc.add_argument("--lr", type=float, default=1e-3)
    bc.add_argument("--layout", default="prefix-cache", choices=("prefix-cache", "stitched", "per-turn"))
    bc.add_argument("--micro-batch-size", type=int, default=4)
    bc.add_argument("--mini-batch-size", type=int, default=8)
    bc.add_argument("--device", default="auto")
    bc.add_argument("--seed", type=int, default=0)
    bc.add_argument("--grounded", action="store_true",
                    help="clone only trajectories whose every answer was in the search results the oracle read")
    bc.add_argument("--max-minutes", type=float, default=None, help="stop SFT after the step that crosses M minutes")
    bc.add_argument("--max-steps", type=int, default=None,
                    help="stop SFT after N optimizer steps (reproducible on any machine; --max-minutes still caps it)")
    _add_env_kwargs(bc)

    # `train`'s flags are generated from its config dataclasses (mem1_agent.train.config); `main` hands
    # them over untouched, this entry only lists the command in `mem1-agent --help`.
    sub.add_parser("train", add_help=False, help="PPO / GRPO / RLOO on an env (flags from the config dataclasses, "
                   "--config FILE, --dry-run memory plan); `mem1-agent train --help` lists every flag")
    from mem1_agent.demo import add_demo_command
    from mem1_agent.serve import add_serve_command

    add_serve_command(sub)
    add_demo_command(sub)
    return parser


def _load_model(path: Path, device: str):
    from transformers import AutoModelForCausalLM

    from mem1_agent.policies.base import TokenCodec
    from mem1_agent.tiny import load_tokenizer
    from mem1_agent.train.device import resolve_device

    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"no model at {path} (config.json missing); build one with `mem1-agent make-tiny --out {path}`")
    model = AutoModelForCausalLM.from_pretrained(str(path)).to(resolve_device(device))  # fp32 weights; autocast on CUDA
    return model, TokenCodec(load_tokenizer(path), name=f"hf:{Path(path).name}")


def cmd_sft(args: argparse.Namespace) -> int:
    from mem1_agent.tiny import TOKENIZER_SUBDIR
    from mem1_agent.train.sft import SFTConfig, grounded, oracle_trajectories, sft

    config = SFTConfig(epochs=args.epochs, lr=args.lr, layout=args.layout, micro_batch_size=args.micro_batch_size,
                       mini_batch_size=args.mini_batch_size, device=args.device, seed=args.seed,
                       max_minutes=args.max_minutes, max_steps=args.max_steps)
    model, codec = _load_model(args.model, args.device)
    trajectories = oracle_trajectories(args.env, str(args.model), args.episodes, seed=args.seed,
                                       env_kwargs=dict(args.env_kwarg))
    if args.grounded:
        played, trajectories = len(trajectories), [t for t in trajectories if grounded(t)]
        print(f"{len(trajectories)} of {played} oracle trajectories are grounded", flush=True)
        if not trajectories:
            raise SystemExit("no grounded oracle trajectory to clone; raise --episodes or drop --grounded")

    def progress(s: dict) -> None:
        print(f"sft step {s['step']:4d} epoch {s['epoch']} nll={s['nll']:.4f}", flush=True)

    losses = sft(model, trajectories, config, codec.pad_id, progress)
    model.save_pretrained(args.out)
    codec.tokenizer.save_pretrained(str(Path(args.out) / TOKENIZER_SUBDIR))
    print(f"nll {losses[0]:.3f} -> {losses[-1]:.3f}; model written to {args.out}")
    return 0


def cmd_train(argv: list[str]) -> int:
    """Resolve the config (file, then flags), check it and plan its memory before any model or GPU is touched."""
    from mem1_agent.train.config import (
        check_world_size,
        is_first_rank,
        memory_plan,
        parse_train_args,
        require_tokenizer,
        to_yaml,
        world_size,
    )
    from mem1_agent.train.learner import train
    from mem1_agent.train.logger import log_to_console

    command = parse_train_args(argv)
    config, world = command.learner, world_size()
    check_world_size(config, world)
    plan = memory_plan(command, world)
    if is_first_rank():
        print(f"# resolved config (reuse it with --config)\nmodel: {command.model}\n{to_yaml(config)}\n"
              f"memory plan per GPU ({world} GPU{'s' if world > 1 else ''}):\n{plan.table()}", flush=True)
    if command.dry_run or command.gpu_memory_gb is not None or _on_cuda(config.device):
        if not plan.fits:
            raise ValueError(plan.verdict())
    if command.dry_run:
        return 0
    require_tokenizer(command.model)
    _require_drivable(config.env_id, config.env_kwargs)
    model, codec = _load_model(Path(command.model), config.device)
    log_to_console()  # the learner's per-iteration lines go through logging
    train(model, codec, config)
    if config.out is not None:
        print(f"checkpoint: {config.out} (evaluate with `mem1-agent eval --policy hf:{config.out}`)")
    return 0


def _require_drivable(env_id: str, env_kwargs: dict) -> None:
    """Make the env once and read its protocol: an env the agent cannot drive fails before the model loads."""
    import gymnasium as gym

    import mem1_gym  # noqa: F401  (registers the ids)
    from mem1_gym.protocol import env_protocol

    env = gym.make(env_id, **env_kwargs)
    try:
        env_protocol(env)
    finally:
        env.close()


def _on_cuda(device: str) -> bool:
    from mem1_agent.train.device import resolve_device

    return resolve_device(device).type == "cuda"


def cmd_eval(args: argparse.Namespace) -> int:
    from mem1_agent.eval import EvalConfig, run_eval
    from mem1_agent.policies import SamplingConfig, make_policy
    from mem1_agent.report import markdown_table, summaries_of, write_reports

    env_kwargs = {**dict(args.env_kwarg), **({} if args.max_turns is None else {"max_turns": args.max_turns})}
    config = EvalConfig(
        env_id=args.env, contexts=args.context, episodes=args.episodes, horizons=args.horizons, seed=args.seed,
        split=args.split, concurrency=args.concurrency, out=args.out, max_new_tokens=args.max_new_tokens,
        max_context_tokens=args.max_context_tokens, env_kwargs=env_kwargs,
    )
    sampling = SamplingConfig(args.temperature, args.top_p, args.max_new_tokens, args.seed)
    # The policy is built (and a server or vLLM checked) before any env exists: a bad spec fails fast.
    policy = make_policy(args.policy, sampling, tokenizer=args.tokenizer, device=args.device,
                         max_batch=args.concurrency, api_key=api_key(args, OPENAI_KEY_ENV))
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

    config = TinyConfig(vocab_size=args.vocab_size, hidden_size=args.hidden_size, num_layers=args.layers, seed=args.seed,
                        pretokenizer=args.pretokenizer)
    out = make_tiny(args.out, config)
    print(f"tiny Qwen2 written to {out} (tokenizer in {out}/tokenizer); evaluate it with "
          f"`mem1-agent eval --policy hf:{out} --env MEM1-MultiHopQA-2 --episodes 2 --max-new-tokens 32`")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_argv = argv[1:] if argv[:1] == ["train"] else None
    args = build_parser().parse_args(argv) if train_argv is None else None
    try:
        _require_extras("train" if train_argv is not None else args.command)
        if train_argv is not None:
            return cmd_train(train_argv)
        from mem1_agent.demo import cmd_demo
        from mem1_agent.serve import cmd_serve

        commands = {"eval": cmd_eval, "make-tiny": cmd_make_tiny, "sft": cmd_sft, "serve": cmd_serve, "demo": cmd_demo}
        return commands[args.command](args)
    except (ValueError, RuntimeError, FileNotFoundError, MissingExtraError) as err:
        print(f"mem1-agent: error: {err}", file=sys.stderr)
        return 2


# What each command imports beyond the tokenizer and model stack that all of them load (text policies
# count tokens with a tokenizer too); eval and demo end in a report with a plot.
_COMMAND_EXTRAS = {
    "eval": (("agent", ("tqdm", "matplotlib")),),
    "demo": (("agent", ("matplotlib",)),),
    "train": (("agent", ("tyro", "yaml")),),
    "serve": (("web", ("fastapi", "uvicorn")),),
}


def _require_extras(command: str) -> None:
    """Checked before the command starts, so a missing extra is one line naming it (issue 24)."""
    for extra, modules in (("agent", ("torch", "transformers", "tokenizers")),) + _COMMAND_EXTRAS.get(command, ()):
        require(extra, *modules, purpose=f"mem1-agent {command}")


if __name__ == "__main__":
    sys.exit(main())
