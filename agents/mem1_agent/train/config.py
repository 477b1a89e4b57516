"""``mem1-agent train``'s command line, generated from the config dataclasses (issue 19, req. 5).

One source of truth, as CleanRL's ``Args`` + ``tyro.cli``: every field of
:class:`~mem1_agent.train.learner.LearnerConfig` is a flag of the same name (``--env-id``,
``--iterations``), the nested :class:`~mem1_agent.train.ppo.PPOConfig` fields are ``--ppo.lr``,
``--ppo.kl-coef``..., and the help text is the fields' docstrings. A ``--config`` YAML/JSON file
whose keys mirror the fields (``ppo:`` nested) is read first and the flags after it override it: the
file is turned into flags placed before the typed ones, so one parser checks both and the last value
wins (``env_kwargs`` and ``vllm_engine_kwargs`` merge: each ``KEY=VALUE`` adds or replaces one key). ``--dry-run`` prints the per-GPU memory plan (:mod:`mem1_agent.train.memory_plan`) and exits.

Short aliases kept from the earlier hand-written parser: see :data:`ALIASES`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from argparse import ArgumentTypeError
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import tyro
import yaml
from tyro.constructors import ConstructorRegistry, PrimitiveConstructorSpec, PrimitiveTypeInfo

from mem1_agent.cli import _env_kwarg
from mem1_agent.train.learner import LearnerConfig
from mem1_agent.train.memory_plan import DEFAULT_GPU_MEMORY_GB, MemoryPlan, Workload, model_shape, plan_memory
from mem1_agent.train.ppo import PPOConfig

ALIASES = {
    "--env": "--env-id", "--env-kwarg": "--env-kwargs", "--algo": "--ppo.algo", "--lr": "--ppo.lr",
    "--warmup-steps": "--ppo.warmup-steps", "--kl-coef": "--ppo.kl-coef", "--ent-coef": "--ppo.ent-coef",
    "--epochs": "--ppo.epochs", "--micro-batch-size": "--ppo.micro-batch-size",
    "--mini-batch-size": "--ppo.mini-batch-size",
}


@dataclass(frozen=True)
class TrainCommand:
    """Train a policy on a MEM1 env (PPO, GRPO, RLOO); checkpoints in --out, rerun with the same --out to resume."""

    model: str
    """Model folder (make-tiny/sft output or a Hugging Face folder); with --dry-run also a named shape:
    qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-3b or qwen2.5-7b."""
    learner: Annotated[LearnerConfig, tyro.conf.arg(name="")] = LearnerConfig()
    """The learner (its fields are top-level flags)."""
    config: Path | None = None
    """YAML/JSON file of these fields (``ppo:`` nested), read first; flags override it."""
    dry_run: bool = False
    """Print the resolved config and the per-GPU memory plan, then exit (no model, env or GPU touched)."""
    gpu_memory_gb: float | None = None
    """Memory of one GPU for the plan (default: the CUDA device's, else 141: one H200)."""
    sample_tokens: int = 4096
    """Longest training sample the plan assumes (task prompt + memory + turns of one trajectory)."""
    turns: int = 6
    """Turns per trajectory the plan assumes: turns x max_new_tokens sampled tokens carry logits."""


def _key_values(args: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` texts as the ``--env-kwarg`` of the other commands read them (tyro reports a ValueError)."""
    try:
        return dict(map(_env_kwarg, args))
    except ArgumentTypeError as err:
        raise ValueError(str(err)) from None


REGISTRY = ConstructorRegistry()


@REGISTRY.primitive_rule
def _kwargs_rule(info: PrimitiveTypeInfo) -> PrimitiveConstructorSpec | None:
    """``dict[str, Any]`` fields (env_kwargs, vllm_engine_kwargs): a repeatable ``--flag KEY=VALUE``."""
    if get_origin(info.type) is not dict or get_args(info.type) != (str, Any):
        return None
    return PrimitiveConstructorSpec(
        nargs=1, metavar="KEY=VALUE", _action="append", instance_from_str=_key_values,
        is_instance=lambda value: isinstance(value, dict),
        str_from_instance=lambda value: [f"{k}={json.dumps(v)}" for k, v in value.items()])


def parse_train_args(argv: list[str]) -> TrainCommand:
    """The resolved command: ``--config`` file first, then the flags (aliases expanded)."""
    argv = [_expand_alias(arg) for arg in argv]
    path = _config_path(argv)
    flags = [*config_file_flags(path), *argv] if path is not None else argv
    description = (f"{TrainCommand.__doc__}\n\nAliases: "
                   + ", ".join(f"{short} = {long}" for short, long in ALIASES.items()))
    return tyro.cli(TrainCommand, args=flags, prog="mem1-agent train", description=description, registry=REGISTRY)


def _expand_alias(arg: str) -> str:
    flag, sep, value = arg.partition("=")
    return ALIASES.get(flag, flag) + sep + value


def _config_path(argv: list[str]) -> Path | None:
    """The value of the last ``--config`` flag (``--config F`` or ``--config=F``)."""
    path = None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = Path(argv[i + 1])
        elif arg.startswith("--config="):
            path = Path(arg.partition("=")[2])
    return path


def config_file_flags(path: Path) -> list[str]:
    """The flags a YAML/JSON config file stands for; an unknown key is an error naming the valid ones."""
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found; pass a YAML/JSON file such as examples/recipes/*.yaml")
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    top = {f.name for f in dataclasses.fields(TrainCommand)} - {"learner", "config"}
    top |= {f.name for f in dataclasses.fields(LearnerConfig)}
    flags = []
    for key, value in data.items():
        if key == "ppo" and isinstance(value, dict):
            _check_keys(path, value, {f.name for f in dataclasses.fields(PPOConfig)}, "ppo.")
            flags += [flag for k, v in value.items() for flag in _as_flags(f"ppo.{k}", v)]
        else:
            _check_keys(path, {key: value}, top, "")
            flags += _as_flags(key, value)
    return flags


def _check_keys(path: Path, data: dict, valid: set[str], prefix: str) -> None:
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ValueError(f"{path}: unknown config key {prefix + unknown[0]!r}; valid keys: {', '.join(sorted(valid))}"
                         + ("" if prefix else ", ppo.<PPOConfig field>"))


def _as_flags(name: str, value: Any) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):  # tyro's pairs: --gradient-checkpointing / --no-gradient-checkpointing, --ppo.no-...
        prefix, dot, field = name.rpartition(".")
        return [flag if value else f"--{prefix}{dot}no-{field}".replace("_", "-")]
    if isinstance(value, dict):
        return [part for k, v in value.items() for part in (flag, f"{k}={json.dumps(v)}")]
    if isinstance(value, list | tuple):
        return [flag, *map(str, value)]
    return [flag, "None" if value is None else str(value)]


def to_yaml(config: Any) -> str:
    """A config dataclass as the YAML ``--config`` reads back (paths as text, tuples as lists)."""
    return yaml.safe_dump(json.loads(json.dumps(dataclasses.asdict(config), default=str)), sort_keys=False)


def world_size() -> int:
    """Processes of this run, read before they join: torchrun's ``WORLD_SIZE`` (1 when launched without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_first_rank() -> bool:
    """Rank 0 of a torchrun job (or the only process): the one that prints the config and the plan."""
    return os.environ.get("RANK", "0") == "0"


def check_world_size(config: LearnerConfig, world: int) -> None:
    """Every rank must get whole task groups (a group baseline compares rollouts of one task) and whole
    micro-batches: checked before the model loads."""
    from mem1_agent.train.distributed import check_shares

    check_shares(config.tasks_per_iteration, config.ppo.mini_batch_size, config.ppo.micro_batch_size, world)


def memory_plan(command: TrainCommand, world: int) -> MemoryPlan:
    """The plan of ``command`` on ``world`` GPUs of ``gpu_memory_gb`` (or the CUDA device's) each."""
    gpu_gb = command.gpu_memory_gb
    if gpu_gb is None:
        import torch

        cuda = torch.cuda.is_available()
        gpu_gb = torch.cuda.get_device_properties(0).total_memory / 1e9 if cuda else DEFAULT_GPU_MEMORY_GB
    learner = command.learner
    work = Workload(sample_tokens=command.sample_tokens,
                    sampled_tokens=command.turns * learner.max_new_tokens, world_size=world, gpu_memory_gb=gpu_gb)
    return plan_memory(model_shape(command.model), learner, work)


def require_tokenizer(folder: str | Path) -> None:
    """A model folder must ship its tokenizer: without one, transformers builds an empty one silently."""
    folder = Path(folder)
    names = ("tokenizer/tokenizer.json", "tokenizer.json", "tokenizer.model", "vocab.json")
    if not any((folder / name).is_file() for name in names):
        raise FileNotFoundError(
            f"no tokenizer in {folder} (looked for {', '.join(names)}); copy the tokenizer files of the base model "
            f"into it, e.g. AutoTokenizer.from_pretrained(BASE).save_pretrained('{folder}')")
