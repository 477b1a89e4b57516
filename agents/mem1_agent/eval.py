"""Evaluation: the same tasks under each context strategy and horizon, resumable, with a report.

``run_eval`` plans the episodes of every env id (a seeded draw of distinct task indices of the
split, read from the env's protocol, so ``--context mem1`` and ``--context full`` play identical
tasks in every env family), skips the task ids already
finished in ``OUT/<env>.<context>.jsonl``, plays the rest with :func:`mem1_agent.rollout.rollout`
(one trajectory appended per line, fsynced, as soon as it ends), and summarises every planned trajectory.
A torn last line left by a run killed mid-write is cut away on start and its episode replayed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mem1_agent.context import make_strategy
from mem1_agent.mem1_eval import PaperMetrics, paper_metrics
from mem1_agent.metrics import Summary, TrajectoryMetrics, summarize, trajectory_metrics
from mem1_agent.policies.base import Policy
from mem1_agent.records import Trajectory, read_jsonl, truncate_torn_tail, write_jsonl
from mem1_agent.rollout import EpisodeSpec, RolloutConfig, rollout
from mem1_gym.protocol import env_protocol

_HORIZON_RE = re.compile(r"\A(.*-)(\d+)\Z")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run."""

    env_id: str = "MEM1-MultiHopQA-8"
    """A registered env id; with ``horizons`` its trailing number is replaced by each N."""
    contexts: tuple[str, ...] = ("mem1",)
    """Context strategies to compare on identical tasks: mem1, full, truncate:K."""
    episodes: int = 50
    """Tasks per (env, context) cell."""
    horizons: tuple[int, ...] = ()
    """Sweep N (e.g. 1, 2, 4, 8, 16); empty: only ``env_id``."""
    seed: int = 0
    """Seed of the task draw and of every episode's reset."""
    split: str = "test"
    """Which split the tasks come from."""
    concurrency: int = 8
    """Envs played in lock-step, i.e. the batch size of the model calls."""
    out: Path = Path("runs/mem1-eval")
    """Folder for the JSONL records and the reports; rerunning with the same folder resumes."""
    max_new_tokens: int = 512
    """Most tokens per turn."""
    max_context_tokens: int | None = None
    """Context + generation limit (None: the policy's window)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``gym.make`` kwargs (max_turns, retriever, …)."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if not self.contexts:
            raise ValueError("give at least one context strategy, e.g. --context mem1,full")
        for name in self.contexts:
            make_strategy(name)
        if self.horizons and not _HORIZON_RE.match(self.env_id):
            raise ValueError(f"--horizons needs an env id ending in a number (MEM1-MultiHopQA-8), got {self.env_id!r}")

    def env_ids(self) -> list[str]:
        if not self.horizons:
            return [self.env_id]
        prefix = _HORIZON_RE.match(self.env_id).group(1)
        return [f"{prefix}{n}" for n in self.horizons]


@dataclass
class Cell:
    """The trajectories and metrics of one (env, context strategy) pair."""

    env_id: str
    context: str
    path: Path
    specs: list[EpisodeSpec]
    keys: list[str]
    """Episode keys (task ids) in plan order."""
    trajectories: dict[str, Trajectory] = field(default_factory=dict)
    golds: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    """Gold aliases of each episode key (QA tasks), for the ``paper_`` metrics; empty for other envs."""
    count_tokens: Callable[[str], int] | None = None
    """Counts tokens of text for the ``paper_`` metrics (the policy's tokenizer); None: not computed."""

    @property
    def todo(self) -> list[EpisodeSpec]:
        return [spec for spec, key in zip(self.specs, self.keys) if key not in self.trajectories]

    def metrics(self) -> list[TrajectoryMetrics]:
        return [trajectory_metrics(self.trajectories[k]) for k in self.keys if k in self.trajectories]

    def paper_metrics(self) -> list[PaperMetrics]:
        """The finished trajectories as MEM1's eval script scores them (those with known golds)."""
        if self.count_tokens is None:
            return []
        done = [k for k in self.keys if k in self.trajectories and k in self.golds]
        return [paper_metrics(self.trajectories[k], self.golds[k], self.count_tokens) for k in done]

    def summary(self) -> Summary:
        return summarize(self.metrics(), self.paper_metrics())


def record_path(out: Path, env_id: str, context: str) -> Path:
    return Path(out) / f"{env_id}.{context.replace(':', '-')}.jsonl"


def plan(config: EvalConfig, policy: Policy, make_env: Any) -> list[Cell]:
    """Every (env, context) cell with its episodes, loading what earlier runs finished."""
    cells = []
    for env_id in config.env_ids():
        env = make_env(env_id)
        specs, keys = _draw_episodes(env, config.episodes, config.seed)
        golds = {task.id: tuple(task.golds) for task in getattr(env.unwrapped, "tasks", None) or ()}
        env.close()
        for context in config.contexts:
            cell = Cell(env_id, context, record_path(config.out, env_id, context), specs, keys, golds=golds,
                        count_tokens=_token_counter(policy))
            _load_finished(cell, policy)
            cells.append(cell)
    return cells


def _draw_episodes(env: Any, episodes: int, seed: int) -> tuple[list[EpisodeSpec], list[str]]:
    import numpy as np

    protocol = env_protocol(env)  # refuses an env the agent cannot drive, before any work
    if episodes > protocol.n_tasks:
        raise ValueError(f"--episodes {episodes} exceeds the {protocol.n_tasks} tasks of this split; lower it or use "
                         "another split")
    indices = np.random.default_rng(seed).permutation(protocol.n_tasks)[:episodes]
    specs = [EpisodeSpec(seed=seed + k, task_index=int(i)) for k, i in enumerate(indices)]
    return specs, [protocol.task_ids[s.task_index] for s in specs]


def _token_counter(policy: Policy) -> Callable[[str], int]:
    codec = policy.codec
    return lambda text: len(codec.encode(text))


def _episode_key(trajectory: Trajectory) -> str:
    return trajectory.task_id or f"seed-{trajectory.seed}"


def _load_finished(cell: Cell, policy: Policy) -> None:
    if not cell.path.is_file():
        return
    # Before anything is appended: a rerun that wrote after a torn line would corrupt the file (issue 21).
    dropped = truncate_torn_tail(cell.path)
    if dropped:
        logger.warning("%s: dropped a torn last line (%d bytes, a run killed mid-write); "
                       "its episode will be replayed", cell.path, dropped)
    for trajectory in read_jsonl(cell.path):
        if trajectory.policy != policy.name:
            raise ValueError(
                f"{cell.path} holds trajectories of policy {trajectory.policy!r}, not {policy.name!r}; "
                "pass another --out folder (or delete the file) to evaluate a different policy"
            )
        cell.trajectories[_episode_key(trajectory)] = trajectory


def run_eval(config: EvalConfig, policy: Policy, progress: bool = True) -> list[Cell]:
    """Play every unfinished planned episode and return the cells (records written as they finish)."""
    import gymnasium as gym
    from tqdm.auto import tqdm

    import mem1_gym  # noqa: F401  (registers the env ids)

    def make_env(env_id: str) -> Any:
        return gym.make(env_id, split=config.split, **config.env_kwargs)

    cells = plan(config, policy, make_env)
    total = sum(len(cell.todo) for cell in cells)
    with tqdm(total=total, desc="episodes", unit="ep", disable=not progress, dynamic_ncols=True) as bar:
        for cell in cells:
            todo = cell.todo
            if not todo:
                continue
            bar.set_postfix_str(f"{cell.env_id} {cell.context}")
            envs = [make_env(cell.env_id) for _ in range(min(config.concurrency, len(todo)))]

            def done(trajectory: Trajectory, cell: Cell = cell) -> None:
                write_jsonl(cell.path, [trajectory])
                cell.trajectories[_episode_key(trajectory)] = trajectory
                bar.update(1)

            rollout_config = RolloutConfig(config.max_new_tokens, config.max_context_tokens, cell.env_id)
            try:
                rollout(envs, policy, make_strategy(cell.context), todo, rollout_config, on_trajectory=done)
            finally:
                for env in envs:
                    env.close()
    return cells
