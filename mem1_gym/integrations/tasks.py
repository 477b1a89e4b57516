"""What every trainer adapter shares: the task rows of a split, and one env episode driven by text.

A trainer's dataset row names a task, never a seed the env draws from: ``{"env_id", "split",
"task_index", "task_id"}``. :class:`TextEpisode` resets an env to that task through the env's
protocol (``reset(options={"task_index": i})``), so every rollout of a GRPO group plays the same task
in every family, and keeps what a trainer needs back: the observations, the env's reward and the
last ``info`` with the scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from mem1_gym.protocol.base import EnvProtocol, env_protocol

ROW_KEYS = ("env_id", "split", "task_index", "task_id")


def make_env(env_id: str, split: str = "train", **env_kwargs: Any) -> gym.Env:
    """``gym.make`` of a registered mem1-gym id on ``split`` (registers the ids first)."""
    import mem1_gym  # noqa: F401  (registers the env ids)

    return gym.make(env_id, split=split, **env_kwargs)


def task_rows(env_id: str, split: str = "train", *, limit: int | None = None,
              env_kwargs: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per task of ``split`` (the first ``limit``), in the env's task order."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (None: every task of the split), got {limit}")
    env = make_env(env_id, split, **dict(env_kwargs or {}))
    try:
        task_ids = env_protocol(env).task_ids
    finally:
        env.close()
    count = len(task_ids) if limit is None else min(limit, len(task_ids))
    return [{"env_id": env_id, "split": split, "task_index": i, "task_id": task_ids[i]} for i in range(count)]


def task_index(row: Mapping[str, Any]) -> int:
    """The task index of a dataset row, or a ValueError naming the columns a row needs."""
    if "task_index" not in row:
        raise ValueError(f"a task row needs a 'task_index' column (rows come from "
                         f"mem1_gym.integrations.tasks.task_rows: {ROW_KEYS}), got columns {sorted(row)}")
    return int(row["task_index"])


@dataclass
class TextEpisode:
    """One episode of ``env`` played with model text; ``env`` stays open for the next :meth:`reset`."""

    env: gym.Env
    observations: list[str] = field(default_factory=list)
    """Every observation so far, the first one (the task prompt) included."""
    reward: float = 0.0
    """Sum of the env's rewards so far (the trajectory's reward)."""
    info: dict[str, Any] = field(default_factory=dict)
    """``info`` of the last reset or step (the scores are in the last step's)."""
    done: bool = False
    """The episode terminated or was truncated."""

    @property
    def protocol(self) -> EnvProtocol:
        return env_protocol(self.env)

    def reset(self, index: int, seed: int | None = None) -> str:
        """Start task ``index`` of the env's split; returns the first observation."""
        observation, info = self.env.reset(seed=seed, options=self.protocol.reset_options(index))
        self.observations, self.reward, self.info, self.done = [observation], 0.0, dict(info), False
        return observation

    def step(self, text: str) -> str:
        """Play one model turn (a malformed one is an observation with an ``info`` flag, never an error)."""
        if self.done:
            raise RuntimeError("the episode is over: reset() before stepping again")
        observation, reward, terminated, truncated, info = self.env.step(text)
        self.observations.append(observation)
        self.reward += float(reward)
        self.info, self.done = dict(info), bool(terminated or truncated)
        return observation

    def scores(self) -> dict[str, Any]:
        """The protocol's score keys of the last ``info`` (absent keys left out)."""
        return {key: self.info[key] for key in self.protocol.score_keys if key in self.info}

    def mean_scores(self) -> dict[str, float]:
        """:meth:`scores` as a trainer's float metrics: a per-objective list as its mean (an empty one left out)."""
        means = {}
        for key, value in self.scores().items():
            if isinstance(value, (list, tuple)):
                if value:
                    means[key] = sum(value) / len(value)
            else:
                means[key] = float(value)
        return means

    def close(self) -> None:
        self.env.close()
