"""Every mem1-gym env as a SkyRL-gym ``BaseTextEnv`` (issue 22, requirement 3): ``pip install -e ".[skyrl]"``.

Importing this module registers ``mem1_gym/<env id>`` with skyrl-gym for every id in
:data:`mem1_gym.ENV_IDS` (``mem1_gym/MEM1-MultiHopQA-2``, ``mem1_gym/MEM1-WebQA-4``,
``mem1_gym/MEM1-WebShop-Text``, ``mem1_gym/MEM1-WebShop``, ...). One class serves every family: all of
them take the model's raw text and parse it with the env's own protocol, so the action surface is
the same and a per-family class would only repeat this one.

SkyRL's generator makes one env per trajectory with ``skyrl_gym.make(env_class, env_config=...,
extras=row)``, where ``row`` is a dataset row minus its ``prompt`` and ``env_class`` columns:
:func:`skyrl_rows` writes those rows, so the task comes from ``extras["task_index"]`` and every
rollout of a group plays the same task. The step reward is the env's reward for that turn (their
sum is the episode's reward) and the scores of the last ``info`` are the episode's metrics.

Context: SkyRL appends each observation to the chat history, so the model sees the whole
transcript (append-only). The MEM1 context (task prompt + latest internal state + latest
observation) is not expressible through ``BaseTextEnv``; train it with ``mem1-agent train``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

try:
    import skyrl_gym
    from omegaconf import DictConfig, OmegaConf
    from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput, ConversationType
except ImportError as error:  # the adapter is an extra; say which one
    raise ImportError('the SkyRL adapter needs skyrl-gym: pip install -e ".[skyrl]"') from error

from mem1_gym.integrations.tasks import TextEpisode, make_env, task_index, task_rows

ENV_CLASS_PREFIX = "mem1_gym/"


def env_class(env_id: str) -> str:
    """The skyrl-gym id (a dataset row's ``env_class``) of mem1-gym env ``env_id``."""
    return f"{ENV_CLASS_PREFIX}{env_id}"


@dataclass(frozen=True)
class SkyRLEnvConfig:
    """What SkyRL's ``env_config`` (``environment.skyrl_gym["mem1_gym/<id>"]``) may set for one env id."""

    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``gym.make`` (e.g. a web QA provider); the split comes from the dataset row."""

    @classmethod
    def from_config(cls, env_config: Any) -> SkyRLEnvConfig:
        """A config from what SkyRL passes: None, a mapping or an OmegaConf ``DictConfig``."""
        if env_config is None or isinstance(env_config, cls):
            return env_config or cls()
        if isinstance(env_config, DictConfig):
            env_config = OmegaConf.to_container(env_config, resolve=True)
        if not isinstance(env_config, Mapping):
            raise TypeError(f"env_config must be a mapping of {cls.__name__} fields, got {type(env_config).__name__}")
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(env_config) - known):
            raise ValueError(f"unknown env_config keys {unknown} for a mem1_gym env; the keys are {sorted(known)} "
                             f"(gym.make arguments go under env_kwargs)")
        return cls(env_kwargs=dict(env_config.get("env_kwargs") or {}))


class Mem1TextEnv(BaseTextEnv):
    """One episode of a mem1-gym env, played through skyrl-gym's ``init`` / ``step`` / ``close``.

    ``extras`` is the dataset row: ``task_index`` (required), ``split`` (default "train"),
    ``env_id`` (checked against the registered id when present) and SkyRL's ``max_turns``
    (when set, the episode ends after that many steps even if the env would go on).
    """

    def __init__(self, env_id: str, env_config: Any = None, extras: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        extras = dict(extras or {})
        if extras.get("env_id", env_id) != env_id:
            raise ValueError(f"the row is a task of {extras['env_id']} but was routed to {env_class(env_id)}; "
                             f"set its env_class to {env_class(extras['env_id'])} (skyrl_rows does)")
        self.env_id = env_id
        self.task_index = task_index(extras)
        # SkyRL's generator always sets max_turns (its own turn budget); a direct make may not.
        self.max_turns = int(extras["max_turns"]) if extras.get("max_turns") else None
        config = SkyRLEnvConfig.from_config(env_config)
        self.episode = TextEpisode(make_env(env_id, extras.get("split", "train"), **dict(config.env_kwargs)))

    def init(self, prompt: ConversationType) -> tuple[ConversationType, dict[str, Any]]:
        """Reset the env to the row's task; the first user message is the env's first observation.

        The env owns the task prompt, so the row's user messages are replaced by it; the row's
        system messages are kept (a trainer may add its own).
        """
        observation = self.episode.reset(self.task_index)
        self.turns = 0
        system = [message for message in prompt or [] if message.get("role") == "system"]
        return [*system, {"role": "user", "content": observation}], {"task_id": self.episode.info.get("task_id")}

    def step(self, action: str) -> BaseTextEnvStepOutput:
        """Play one model turn; a malformed one is the env's error observation with reward 0, not an error."""
        self.turns += 1
        before = self.episode.reward
        observation = self.episode.step(action)
        done = self.episode.done or (self.max_turns is not None and self.turns >= self.max_turns)
        return BaseTextEnvStepOutput(
            observations=[] if done else [{"role": "user", "content": observation}],
            reward=self.episode.reward - before,
            done=done,
            metadata=self.episode.info,
        )

    def get_metrics(self) -> dict[str, Any]:
        """The episode's reward, its turns and its scores (a per-objective list as its mean)."""
        return {"reward": self.episode.reward, "turns": self.turns, **self.episode.mean_scores()}

    def close(self) -> None:
        self.episode.close()


def skyrl_rows(env_id: str, split: str = "train", *, limit: int | None = None,
               env_kwargs: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """SkyRL dataset rows of ``split`` (the first ``limit`` tasks): ``prompt``, ``env_class`` and the task row.

    ``prompt`` is the task's first observation (SkyRL filters rows by its token length), so this
    resets the env once per task; :meth:`Mem1TextEnv.init` replays the same reset.
    """
    rows = task_rows(env_id, split, limit=limit, env_kwargs=env_kwargs)
    episode = TextEpisode(make_env(env_id, split, **dict(env_kwargs or {})))
    try:
        return [{"prompt": [{"role": "user", "content": episode.reset(row["task_index"])}],
                 "env_class": env_class(env_id), **row} for row in rows]
    finally:
        episode.close()


def register_skyrl_envs() -> tuple[str, ...]:
    """Register ``mem1_gym/<env id>`` with skyrl-gym for every mem1-gym id (idempotent); returns the ids."""
    from mem1_gym import ENV_IDS

    for env_id in ENV_IDS:
        if env_class(env_id) not in skyrl_gym.registry:
            skyrl_gym.register(id=env_class(env_id), entry_point=f"{__name__}:Mem1TextEnv", kwargs={"env_id": env_id})
    return tuple(env_class(env_id) for env_id in ENV_IDS)


register_skyrl_envs()
