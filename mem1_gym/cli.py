"""``mem1-gym`` / ``python -m mem1_gym``: the demo episode, index building and the retrieval server."""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
import time

from mem1_gym.extras import MissingExtraError, require

# Optional dependencies per command, checked before the command starts (issue 24): a missing one
# otherwise surfaces as a bare ModuleNotFoundError after a long index load or inside a server thread.
COMMAND_EXTRAS = {
    "serve-retriever": ("web", ("fastapi", "uvicorn", "pydantic")),
    "serve-env": ("web", ("fastapi", "uvicorn", "pydantic")),
    "serve-shop": ("web", ("werkzeug", "flask")),
}

_RST_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`|``([^`]+)``")


def plain_text(docstring: str) -> str:
    """A docstring as terminal text: ``x`` and :role:`x` become x (argparse prints markup verbatim)."""
    return _RST_ROLE.sub(lambda m: m.group(1) or m.group(2), docstring)


def package_version() -> str:
    """The installed distribution's version (the source tree's when run without an install)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mem1-gym")
    except PackageNotFoundError:
        from mem1_gym import __version__

        return __version__


def _print_block(label: str, text: str, width: int) -> None:
    print(f"--- {label} " + "-" * max(0, width - len(label) - 5))
    for line in text.strip("\n").splitlines() or [""]:
        print(textwrap.fill(line, width=width, subsequent_indent="    ") if len(line) > width else line)


def demo(args: argparse.Namespace) -> int:
    """Play one episode with the scripted oracle and print the transcript and the reward."""
    import gymnasium as gym

    import mem1_gym  # noqa: F401  (registers the ids)
    from mem1_gym.oracle import ScriptedOracle

    started = time.perf_counter()
    env = gym.make(args.env, split=args.split)
    obs, info = env.reset(seed=args.seed)
    print(f"{args.env}  split={args.split}  seed={args.seed}  task={info['task_id']}  "
          f"(env ready in {time.perf_counter() - started:.1f} s)")
    _print_block("task prompt (observation 0)", obs, args.width)
    oracle = ScriptedOracle()
    oracle.reset(env.unwrapped.task)
    total, terminated, truncated = 0.0, False, False
    while not (terminated or truncated):
        action = oracle.act(obs, info["turns_left"])
        _print_block(f"turn {info['turn'] + 1}: oracle", action, args.width)
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        if obs:
            _print_block(f"turn {info['turn']}: environment", obs, args.width)
    golds = [" | ".join(aliases) for aliases in env.unwrapped.task.golds]
    print("=" * args.width)
    for i, (em, f1, gold) in enumerate(zip(info["em"], info["f1"], golds), start=1):
        print(f"Q{i}: EM {em:.0f}  F1 {f1:.2f}  gold: {gold}")
    print(f"reward {total:.1f} (EM count {info['n_correct']}/{info['n_questions']}) in {info['turn']} turns, "
          f"{'terminated' if terminated else 'truncated'}")
    env.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mem1-gym", description=plain_text(__doc__))
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="play one episode with the scripted oracle and print the transcript")
    p.add_argument("--env", default="MEM1-MultiHopQA-2", help="environment id (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="reset seed: picks the task (default: %(default)s)")
    p.add_argument("--split", default="validation", choices=("train", "validation", "test"))
    p.add_argument("--width", type=int, default=110, help="wrap long lines to this many characters")
    p.set_defaults(func=demo)
    from mem1_gym.retrieval.cli import add_commands

    add_commands(sub)
    from mem1_gym.web.cli import add_commands as add_web_commands

    add_web_commands(sub)
    from mem1_gym.webshop.cli import add_commands as add_shop_commands

    add_shop_commands(sub)
    from mem1_gym.remote.cli import add_commands as add_remote_commands

    add_remote_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in COMMAND_EXTRAS:
            extra, modules = COMMAND_EXTRAS[args.command]
            require(extra, *modules, purpose=f"mem1-gym {args.command}")
        return int(args.func(args) or 0)
    except MissingExtraError as err:
        print(f"mem1-gym: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
