"""The rollout engine: episodes in lock-step over several envs, one batched model call per step.

Each env is a *slot*. Every step, the context of every active slot is built by the context
strategy from the slot's records, the policy generates all of them in one call, and only the active
envs are stepped. A finished slot records its trajectory and takes the next episode from the queue
(continuous batching), so a long episode never holds up a batch of short ones.

Per turn it records the exact context (segment references into the trajectory), the generated
ids as sampled and their log-probs, the observation text and ids, reward, termination,
truncation, and the wall time of generation and of the env step.

Bad agent input is not an error (STYLE.md): garbage, a tag never closed (generation stops at
``max_new_tokens``) and an unparsable turn reach the env, which answers with an invalid-action
observation and goes on. A context too long for the model window cannot be read: the turn is
recorded as empty with ``FinishReason.CONTEXT_OVERFLOW`` and the env sees an empty, invalid
action, so a ``mem1`` context recovers on the next turn and a ``full`` one runs into truncation.

Everything family-specific comes from the env's protocol (``env.unwrapped.protocol``,
:class:`~mem1_gym.protocol.EnvProtocol`): the stop strings of each turn, the memory tags that end
the STATE segment, how a task is addressed, and which final ``info`` keys are the episode's scores.
An env without one is refused before any episode starts.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mem1_agent.context import ContextStrategy
from mem1_agent.policies.base import Generation, GenerationRequest, Policy
from mem1_agent.records import (
    FinishReason,
    Segment,
    SegmentKind,
    Trajectory,
    Turn,
    split_generation,
)
from mem1_gym.protocol import EnvProtocol, close_tag, env_protocol


@dataclass(frozen=True)
class EpisodeSpec:
    """Which episode to play: ``reset(seed=seed, options={"task_index": task_index})``."""

    seed: int
    """Seed of the env's reset (and of nothing else: sampling has its own seed)."""
    task_index: int | None = None
    """Index into the env's ``protocol.task_ids``; None: the env draws the task from ``seed``."""
    group: int | None = None
    """The group of rollouts of one task this episode belongs to (GRPO/RLOO baselines); None: none.
    Every member of a group must name the same ``task_index``: groups are never rebuilt from seeds."""


@dataclass(frozen=True)
class RolloutConfig:
    """Budgets of a rollout."""

    max_new_tokens: int = 512
    """Most tokens per turn (MEM1 used 1000 in training, 1024 at inference)."""
    max_context_tokens: int | None = None
    """Context + generation limit; None: the policy's window (unlimited if unknown)."""
    env_id: str = ""
    """Label stored in the records (the env id)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_context_tokens is not None and self.max_context_tokens < 2:
            raise ValueError(f"max_context_tokens must be >= 2 or None, got {self.max_context_tokens}")


@dataclass
class _Slot:
    env: Any
    protocol: EnvProtocol
    trajectory: Trajectory
    observation: str
    turns_left: int
    started: float


def as_env_list(envs: Any) -> list[Any]:
    """A list of envs, or the sub-envs of a ``SyncVectorEnv`` (stepped one by one, only when active)."""
    if isinstance(envs, (list, tuple)):
        return list(envs)
    if hasattr(envs, "envs"):
        return list(envs.envs)
    raise TypeError(
        f"rollout needs a list of envs or a gymnasium SyncVectorEnv, got {type(envs).__name__}; an "
        "AsyncVectorEnv cannot step a subset of its envs: pass [gym.make(id) for _ in range(n)] instead"
    )


def rollout(
    envs: Any,
    policy: Policy,
    strategy: ContextStrategy,
    episodes: Iterable[EpisodeSpec],
    config: RolloutConfig = RolloutConfig(),
    on_trajectory: Callable[[Trajectory], None] | None = None,
) -> list[Trajectory]:
    """Play ``episodes`` on ``envs`` with ``policy`` and return the trajectories in finishing order."""
    envs = as_env_list(envs)
    for env in envs:
        env_protocol(env)  # refuses an env the agent cannot drive before any episode starts
    queue = collections.deque(episodes)
    slots: list[_Slot | None] = [_start(env, i, queue, policy, strategy, config) for i, env in enumerate(envs)]
    finished: list[Trajectory] = []
    while any(slots):
        active = [i for i, slot in enumerate(slots) if slot is not None]
        contexts = {i: strategy.build(slots[i].trajectory) for i in active}
        generations, gen_seconds = _generate(policy, {i: slots[i] for i in active}, contexts, config)
        for i in active:
            slot = slots[i]
            done = _step(slot, contexts[i], generations[i], gen_seconds, policy)
            if done:
                slot.trajectory.wall_seconds = time.perf_counter() - slot.started
                finished.append(slot.trajectory)
                if on_trajectory is not None:
                    on_trajectory(slot.trajectory)
                slots[i] = _start(slot.env, i, queue, policy, strategy, config)
    return finished


def _start(env: Any, slot: int, queue: collections.deque, policy: Policy, strategy: ContextStrategy,
           config: RolloutConfig) -> _Slot | None:
    if not queue:
        return None
    spec, protocol = queue.popleft(), env_protocol(env)
    started = time.perf_counter()
    observation, info = env.reset(seed=spec.seed, options=protocol.reset_options(spec.task_index))
    policy.start_episode(slot, env)
    prompt = Segment(SegmentKind.PROMPT, 0, policy.codec.encode_prompt(observation), observation)
    task_index = spec.task_index if spec.task_index is not None else int(info.get(protocol.task_index_key, -1))
    trajectory = Trajectory(
        env_id=config.env_id or getattr(getattr(env, "spec", None), "id", "") or "",
        task_id=protocol.task_ids[task_index] if 0 <= task_index < protocol.n_tasks else "",
        task_index=task_index,
        group=spec.group,
        seed=spec.seed,
        policy=policy.name,
        context_strategy=strategy.name,
        tokenizer=policy.codec.name,
        prompt=prompt,
    )
    return _Slot(env, protocol, trajectory, observation, int(info.get("turns_left", 1)), started)


def _generate(policy: Policy, slots: dict[int, _Slot], contexts: dict, config: RolloutConfig) -> tuple[dict, float]:
    """One batched call for every slot whose context fits; an empty turn for those that do not."""
    window = config.max_context_tokens or policy.window
    requests, out = [], {}
    for i, slot in slots.items():
        context = contexts[i]
        budget = config.max_new_tokens if window is None else min(config.max_new_tokens, window - len(context.token_ids))
        if budget < 1:
            out[i] = Generation((), "", (), FinishReason.CONTEXT_OVERFLOW, ids_as_sampled=True)
            continue
        requests.append(GenerationRequest(
            slot=i, context_ids=context.token_ids, context_text=context.text, stop=slot.protocol.stops(slot.turns_left),
            max_new_tokens=budget, observation=slot.observation, turns_left=slot.turns_left,
        ))
    started = time.perf_counter()
    generations = policy.generate(requests) if requests else []
    seconds = (time.perf_counter() - started) / max(1, len(requests))
    out.update({request.slot: gen for request, gen in zip(requests, generations)})
    return out, seconds


def _step(slot: _Slot, context: Any, generation: Generation, gen_seconds: float, policy: Policy) -> bool:
    """Step the env with one generated turn and record it; True when the episode ended."""
    trajectory, index = slot.trajectory, len(slot.trajectory.turns)
    state, action = _segments(generation, index, policy, slot.protocol)
    started = time.perf_counter()
    observation, reward, terminated, truncated, info = slot.env.step(generation.text)
    env_seconds = time.perf_counter() - started
    observation_ids = policy.codec.encode(observation) if observation else ()
    trajectory.turns.append(Turn(
        index=index,
        context=context.refs,
        context_tokens=len(context.token_ids),
        prompt_tokens=context.prompt_tokens,
        turns_left=slot.turns_left,
        state=state,
        action=action,
        observation=Segment(SegmentKind.OBSERVATION, index, observation_ids, observation),
        logprobs=generation.logprobs,
        ids_as_sampled=generation.ids_as_sampled,
        finish=generation.finish,
        reward=float(reward),
        terminated=bool(terminated),
        truncated=bool(truncated),
        valid_action=bool(info.get("valid_action", True)),
        action_type=str(info.get("action_type", "")),
        gen_seconds=gen_seconds if generation.finish is not FinishReason.CONTEXT_OVERFLOW else 0.0,
        env_seconds=env_seconds,
    ))
    slot.observation, slot.turns_left = observation, int(info.get("turns_left", slot.turns_left - 1))
    if terminated or truncated:
        trajectory.em = tuple(float(x) for x in info.get("em", ()))
        trajectory.f1 = tuple(float(x) for x in info.get("f1", ()))
        trajectory.evidence = tuple(float(x) for x in info.get("evidence", ()))
        trajectory.answered = bool(info.get("answered", terminated))
        trajectory.scores = episode_scores(info, slot.protocol)
        return True
    return False


def episode_scores(info: dict, protocol: EnvProtocol) -> dict[str, float]:
    """The last step's scores under the protocol's ``score_keys``, a per-objective list summed; a key
    the last step lacks scores 0 (a WebShop episode truncated before a purchase has no ``reward``)."""
    scores = {}
    for key in protocol.score_keys:
        value = info.get(key) or 0.0
        scores[key] = float(sum(value)) if isinstance(value, (list, tuple)) else float(value)
    return scores


def _segments(generation: Generation, turn: int, policy: Policy, protocol: EnvProtocol) -> tuple[Segment, Segment]:
    """Cut the sampled ids into STATE (through the last of the protocol's memory tags to close:
    ``</think>``, or WebShop's ``</summary>``) and ACTION, between sampled tokens."""
    text, ids = generation.text, generation.token_ids
    ends = [text.find(close_tag(tag)) + len(close_tag(tag)) for tag in protocol.memory_tags if close_tag(tag) in text]
    state_end = max(ends, default=None)

    def decode(part: Sequence[int]) -> str:
        return policy.codec.decode(part, skip_special_tokens=True)

    cut = split_generation(ids, decode, state_end)
    state_text = decode(ids[:cut])
    action_text = text[len(state_text):] if text.startswith(state_text) else decode(ids[cut:])
    return (
        Segment(SegmentKind.STATE, turn, tuple(ids[:cut]), state_text),
        Segment(SegmentKind.ACTION, turn, tuple(ids[cut:]), action_text),
    )
