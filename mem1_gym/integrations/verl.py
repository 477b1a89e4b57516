"""verl adapter: agent loops that play a mem1-gym env token-in/token-out (issue 22).

verl (0.9.1) runs one :class:`~verl.experimental.agent_loop.AgentLoopBase` per trajectory, picked by
the dataset row's ``agent_name`` column, with the row's columns as keyword arguments. Two are
registered here:

``mem1_gym``
    The append-only context. The task prompt (the env's first observation as one user message,
    through verl's chat template) is the prompt; every action and every observation after it
    continues one assistant message, as MEM1 does (reference/mem1.md §1.2). The response is
    ``action, observation, action, ...``: ``response_mask`` is 1 on the sampled ids and 0 on every
    env id, whose log-probs are 0. One :class:`AgentLoopOutput` per trajectory: any verl trainer.
``mem1_gym_mem1``
    The MEM1 context: each turn reads the task prompt, the last action (which carries the internal
    state) and the last observation, so no single token sequence holds the trajectory. The loop
    returns one output per turn (prompt = that turn's context, response = its action, all mask 1),
    each with the trajectory's reward. verl 0.9.1 accepts a list of outputs in its V1 trainer
    (``trainer.use_v1=True``, the default: ``AgentLoopWorkerTQ._agent_loop_postprocess``,
    TransferQueue), which computes GRPO advantages from each session's last output and copies them
    to its other outputs (verl RFC #5375); the legacy trainer takes one output per loop.

The env's reward (the sum over the episode) is the ``reward_score``, so verl's reward function is
never called; the scores of the last ``info`` go to ``extra_fields["reward_extra_info"]``. The
loop stops at the env's end or when the response budget (``rollout.response_length``; for
``mem1_gym_mem1`` the context must also fit ``rollout.prompt_length``) is spent, an episode cut
short keeping the reward it has (0 for a QA task never answered). Env steps block (retrieval, a
browser) and run in a thread, off verl's event loop.

Which env and task: the row's ``env_id``, ``split`` and ``task_index`` (:func:`write_dataset`
writes them); env constructor arguments come from the agent loop config (``env_kwargs:``, see
docs/trainers/verl.md).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from uuid import uuid4

from mem1_gym.integrations.tasks import TextEpisode, make_env, task_index, task_rows

try:
    from omegaconf import DictConfig, OmegaConf
    from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
except ImportError as err:  # pragma: no cover - the main environment has no verl
    raise ImportError(
        'mem1_gym.integrations.verl needs verl: pip install -e ".[verl]" in a venv of its own (verl pins '
        "its own transformers; scripts/test_verl.sh builds one)"
    ) from err

AGENT_NAME = "mem1_gym"
"""The append-only loop: any verl trainer."""
MEM1_AGENT_NAME = "mem1_gym_mem1"
"""The MEM1-context loop, one output per turn: verl's V1 trainer (``trainer.use_v1=True``, the default)."""


class _Turn(NamedTuple):
    """One played turn, as ids."""

    context_ids: list[int]
    """What the model read."""
    action_ids: list[int]
    """What it sampled (at most the turn's budget: the server gets it as ``max_tokens``)."""
    action_logprobs: list[float] | None
    """Log-probs of ``action_ids`` from the server; None when verl does not ask for them."""
    observation_ids: list[int]
    """The env's answer (empty after the last turn: nothing is generated after it)."""


class _EpisodePool:
    """Open episodes per (env, split, env arguments): verl builds one agent loop per trajectory,
    while an env holds an index or a browser worth keeping. One pool per process, used from verl's
    event loop only (an episode is lent to one loop at a time)."""

    def __init__(self) -> None:
        self._idle: dict[str, list[TextEpisode]] = {}

    @contextlib.asynccontextmanager
    async def episode(self, env_id: str, split: str, env_kwargs: Mapping[str, Any]) -> AsyncIterator[TextEpisode]:
        idle = self._idle.setdefault(json.dumps([env_id, split, env_kwargs], sort_keys=True, default=str), [])
        episode = idle.pop() if idle else TextEpisode(await asyncio.to_thread(make_env, env_id, split, **env_kwargs))
        try:
            yield episode
        except BaseException:
            episode.close()  # an env that raised mid-episode is not lent again
            raise
        idle.append(episode)

    def close(self) -> None:
        for episodes in self._idle.values():
            for episode in episodes:
                episode.close()
        self._idle.clear()


_POOL = _EpisodePool()
atexit.register(_POOL.close)


@register(AGENT_NAME)
class Mem1GymAgentLoop(AgentLoopBase):
    """Plays one task of a mem1-gym env with the append-only context; one output per trajectory."""

    def __init__(self, *args: Any, env_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(env_kwargs, DictConfig):  # from the agent loop YAML
            env_kwargs = OmegaConf.to_container(env_kwargs, resolve=True)
        self.env_kwargs = dict(env_kwargs or {})
        self.prompt_length = int(self.rollout_config.prompt_length)
        self.response_length = int(self.rollout_config.response_length)

    async def run(self, sampling_params: dict[str, Any], **row: Any) -> AgentLoopOutput | list[AgentLoopOutput]:
        for column in ("env_id", "split"):
            if column not in row:
                raise ValueError(f"a mem1_gym row needs an {column!r} column; write the dataset with "
                                 f"mem1_gym.integrations.verl.write_dataset (got columns {sorted(row)})")
        index = task_index(row)
        async with _POOL.episode(str(row["env_id"]), str(row["split"]), self.env_kwargs) as episode:
            observation = await asyncio.to_thread(episode.reset, index)
            prompt_ids = await self.ct_build_initial_tokens([{"role": "user", "content": observation}])
            timing = {"generate_sequences": 0.0, "tool_calls": 0.0}
            turns = await self._play(episode, prompt_ids, sampling_params, timing)
            extra = {"reward_extra_info": _scores(episode), "env_done": episode.done}
            return self._outputs(prompt_ids, turns, episode.reward, timing, extra)

    async def _play(self, episode: TextEpisode, prompt_ids: list[int], sampling_params: dict[str, Any],
                    timing: dict[str, float]) -> list[_Turn]:
        """Generate and step until the env ends the episode or the budget runs out."""
        request_id = uuid4().hex  # one id per trajectory: verl routes its turns to one server (prefix cache)
        turns: list[_Turn] = []
        turns_left = int(episode.info.get("turns_left", 1))
        while not episode.done:
            context = self._context(prompt_ids, turns)
            budget = self._budget(context, turns)
            if budget < 1:
                break
            params = {**sampling_params, "max_tokens": budget, "stop": list(episode.protocol.stops(turns_left))}
            started = time.perf_counter()
            out = await self.server_manager.generate(request_id=request_id, prompt_ids=context, sampling_params=params)
            timing["generate_sequences"] += time.perf_counter() - started
            ids = list(out.token_ids)
            logprobs = list(out.log_probs) if out.log_probs else None
            started = time.perf_counter()
            observation = await asyncio.to_thread(episode.step, self.tokenizer.decode(ids, skip_special_tokens=True))
            timing["tool_calls"] += time.perf_counter() - started
            obs_ids = [] if episode.done else self.tokenizer.encode(observation, add_special_tokens=False)
            turns.append(_Turn(context, ids, logprobs, obs_ids))
            turns_left = int(episode.info.get("turns_left", turns_left - 1))
        return turns

    def _context(self, prompt_ids: list[int], turns: Sequence[_Turn]) -> list[int]:
        """Append-only: the prompt and every action and observation so far."""
        return prompt_ids + [tok for turn in turns for tok in (*turn.action_ids, *turn.observation_ids)]

    def _budget(self, context: Sequence[int], turns: Sequence[_Turn]) -> int:
        """Tokens the next action may sample: what is left of the one response."""
        return self.response_length - sum(len(t.action_ids) + len(t.observation_ids) for t in turns)

    def _outputs(self, prompt_ids: list[int], turns: Sequence[_Turn], reward: float, timing: dict[str, float],
                 extra: dict[str, Any]) -> AgentLoopOutput | list[AgentLoopOutput]:
        """One output: response = action, observation, action, ... (mask 1, 0, 1, ...), cut to the budget."""
        ids, mask, logprobs = [], [], []
        with_logprobs = all(turn.action_logprobs is not None for turn in turns)
        for turn in turns:
            ids += turn.action_ids + turn.observation_ids
            mask += [1] * len(turn.action_ids) + [0] * len(turn.observation_ids)
            logprobs += (turn.action_logprobs or []) + [0.0] * len(turn.observation_ids)
        n = self.response_length  # the last observation may overrun it; nothing is generated after it
        return AgentLoopOutput(
            prompt_ids=prompt_ids, response_ids=ids[:n], response_mask=mask[:n],
            response_logprobs=logprobs[:n] if with_logprobs and turns else None,
            reward_score=reward, num_turns=1 + len(turns) + sum(bool(t.observation_ids) for t in turns),
            metrics=timing, extra_fields=extra,
        )


@register(MEM1_AGENT_NAME)
class Mem1GymMem1AgentLoop(Mem1GymAgentLoop):
    """Plays one task with MEM1's context (prompt + last action + last observation); one output per
    turn, each with the trajectory's reward. Needs verl's V1 trainer (``trainer.use_v1=True``, the default)."""

    def _context(self, prompt_ids: list[int], turns: Sequence[_Turn]) -> list[int]:
        """MEM1: the prompt, the last action (its internal state included) and the last observation."""
        return prompt_ids + (turns[-1].action_ids + turns[-1].observation_ids if turns else [])

    def _budget(self, context: Sequence[int], turns: Sequence[_Turn]) -> int:
        """Every turn is its own output: a whole response, as long as its context fits the prompt."""
        return self.response_length if len(context) <= self.prompt_length else 0

    def _outputs(self, prompt_ids: list[int], turns: Sequence[_Turn], reward: float, timing: dict[str, float],
                 extra: dict[str, Any]) -> list[AgentLoopOutput]:
        """One output per turn: prompt = the context the turn read, response = its action (all mask 1)."""
        return [
            AgentLoopOutput(
                prompt_ids=turn.context_ids, response_ids=turn.action_ids, response_mask=[1] * len(turn.action_ids),
                response_logprobs=turn.action_logprobs, reward_score=reward, num_turns=2,
                metrics=timing, extra_fields=dict(extra),
            )
            for turn in turns
        ]


def _scores(episode: TextEpisode) -> dict[str, float]:
    """Every score key of the protocol as one float (a per-objective list summed, an absent key 0):
    verl stacks ``reward_extra_info`` into columns, so every row needs the same keys."""
    scores = {}
    for key in episode.protocol.score_keys:
        value = episode.info.get(key) or 0.0
        scores[key] = float(sum(value)) if isinstance(value, (list, tuple)) else float(value)
    return scores


def write_dataset(path: str | Path, env_id: str, split: str = "train", *, limit: int | None = None,
                  env_kwargs: Mapping[str, Any] | None = None, agent_name: str = AGENT_NAME) -> Path:
    """A parquet file for verl's ``RLHFDataset``: one row per task of ``split``.

    Columns: the task row (``env_id``, ``split``, ``task_index``, ``task_id``), ``agent_name`` (which
    loop plays it), ``data_source``, ``prompt`` (the task prompt as one user message: verl filters
    prompts longer than ``data.max_prompt_length`` on it; the loop itself plays the env's own first
    observation) and ``extra_info.index``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if agent_name not in (AGENT_NAME, MEM1_AGENT_NAME):
        raise ValueError(f"agent_name must be {AGENT_NAME!r} (append-only) or {MEM1_AGENT_NAME!r} "
                         f"(MEM1 context, verl's V1 trainer), got {agent_name!r}")
    rows = task_rows(env_id, split, limit=limit, env_kwargs=env_kwargs)
    episode = TextEpisode(make_env(env_id, split, **dict(env_kwargs or {})))
    try:
        for row in rows:
            prompt = episode.reset(row["task_index"])
            row.update(data_source=f"mem1_gym/{env_id}", agent_name=agent_name,
                       prompt=[{"role": "user", "content": prompt}], extra_info={"index": row["task_index"]})
    finally:
        episode.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path
