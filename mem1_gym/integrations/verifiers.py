"""Every mem1-gym env as a verifiers environment (issue 22, requirement 4): ``pip install -e ".[verifiers]"``.

verifiers 0.4 is its v1 stack (``verifiers.v1``): an env is a *taskset* (the rows), an ``Env``
whose ``run()`` plays one task, and a *harness* (the program that calls the model). Here:

* :class:`Mem1Taskset` yields one task per task of a split (the rows of
  :func:`~mem1_gym.integrations.tasks.task_rows`, in ``TaskData.info``);
* :class:`Mem1Env` plays one episode per rollout, as the run's *user*: it makes its own gym env
  (concurrent rollouts never share one), sends the first observation, steps the env with each
  reply and answers with the next observation until the env ends the episode, then records the
  env's reward (the sum of its step rewards) as the trace's reward ``env_reward`` and the scores of
  the last ``info`` as metrics; the gym env is closed whatever happens;
* :class:`Mem1ChatHarness` is the default harness: one chat completion per turn, in-process,
  through verifiers' interception endpoint (so every call is on the trace). verifiers' own ``null``
  harness does the same in a ``uv``-built subprocess; pin it with ``--env.player.harness.id null``.

Context: verifiers replays the accreted conversation every turn, so the model sees the whole
transcript (append-only). The MEM1 context (task prompt + latest internal state + latest
observation) is the agent's (``mem1-agent eval``), not expressible as a verifiers exchange.

verifiers resolves a taskset, env and harness by the id of an importable top-level module that
exports them via ``__all__``: the package ``mem1_gym_verifiers`` re-exports this module's (``vf-eval mem1_gym_verifiers``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

try:
    import verifiers.v1 as vf
    from openai import AsyncOpenAI
    from verifiers.v1.dialects.chat import message_to_wire
    from verifiers.v1.runtimes import ProgramResult
except ImportError as error:  # the adapter is an extra; say which one
    raise ImportError('the verifiers adapter needs verifiers: pip install -e ".[verifiers]"') from error

from mem1_gym.integrations.tasks import TextEpisode, make_env, task_index, task_rows

TASKSET_ID = "mem1_gym_verifiers"
REWARD_NAME = "env_reward"

__all__ = ["Mem1ChatHarness", "Mem1Env", "Mem1Taskset", "load_environment"]


class Mem1TasksetConfig(vf.TasksetConfig):
    """Which env, split and tasks a run plays (``--env.taskset.*``)."""

    id: str = TASKSET_ID
    env_id: str = "MEM1-MultiHopQA-2"
    """A registered mem1-gym id (``mem1_gym.ENV_IDS``)."""
    split: str = "test"
    """The split whose tasks are the rows."""
    limit: int | None = None
    """Only the first ``limit`` tasks of the split (None: all of them)."""
    env_kwargs: dict[str, Any] = {}
    """Keyword arguments of ``gym.make`` for every rollout's env."""


class Mem1TaskData(vf.TaskData):
    info: dict[str, Any]
    """The task row: ``env_id``, ``split``, ``task_index``, ``task_id``."""


class Mem1Task(vf.Task[Mem1TaskData, vf.State, vf.TaskConfig]):
    pass


class Mem1Taskset(vf.Taskset[Mem1Task, Mem1TasksetConfig]):
    """One prompt-less task per task of the split: the env's first observation opens each exchange."""

    def load(self) -> Iterator[Mem1Task]:
        config = self.config
        for row in task_rows(config.env_id, config.split, limit=config.limit, env_kwargs=config.env_kwargs):
            yield Mem1Task(Mem1TaskData(id=row["task_id"], name=f"{config.env_id}#{row['task_index']}", info=row),
                           config.task)


class Mem1EnvConfig(vf.EnvConfig):
    """The run's ``[env]`` block: the taskset and the one seat, ``player``."""

    taskset: Mem1TasksetConfig = Mem1TasksetConfig()
    player: vf.AgentConfig = vf.AgentConfig(runtime=vf.SubprocessConfig())
    """The policy's seat; its harness runs in-process, so a local runtime is all it needs."""


class Mem1Env(vf.Env[Mem1EnvConfig]):
    """One episode of a mem1-gym env per rollout, the env playing the user (see the module docstring)."""

    async def start(self) -> None:
        # Env calls leave the event loop (the interception server shares it) but stay on one
        # thread: the QA envs of a process share one retriever (multihop_qa._get_retriever), whose
        # PyStemmer tokenizer is not thread-safe.
        self._env_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mem1-gym-env")

    async def stop(self) -> None:
        if executor := getattr(self, "_env_thread", None):
            executor.shutdown(wait=True)

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._env_thread, fn, *args)

    async def run(self, task: Mem1Task, agents: vf.Agents) -> None:
        row, config = task.data.info, self.taskset.config
        episode = TextEpisode(await self._call(lambda: make_env(row["env_id"], row["split"], **config.env_kwargs)))
        try:
            observation = await self._call(episode.reset, task_index(row))
            async with agents.player.interaction(task) as interaction:
                segment = await interaction.turn(observation)
                while not segment.terminated:
                    observation = await self._call(episode.step, segment.last_reply)
                    if episode.done:
                        break  # the env ended the episode: end the exchange
                    segment = await interaction.turn(observation)
        finally:
            await self._call(episode.close)
        trace = interaction.trace
        trace.record_reward(REWARD_NAME, episode.reward, 1.0)
        trace.record_metrics(episode.mean_scores())
        trace.info["env_done"] = episode.done


class Mem1ChatHarness(vf.Harness[vf.HarnessConfig]):
    """One chat completion per segment on the conversation so far, in-process (no program to install).

    Every call goes to verifiers' interception ``endpoint``, which applies the run's model and
    sampling and records the call on the trace (the contract :meth:`vf.Harness.launch` states).
    """

    APPENDS_SYSTEM_PROMPT = True
    SUPPORTS_RESUME = True  # verifiers relaunches on the accreted conversation each turn
    EXECUTES_CODE = False
    NEEDS_CONTAINER = False

    async def launch(self, ctx: vf.ModelContext, trace: vf.Trace, runtime: vf.Runtime, endpoint: str,
                     secret: str, mcp_urls: dict[str, str], data: vf.TaskData) -> ProgramResult:
        system, prompt = self.resolve_prompt(data)
        messages = [{"role": "system", "content": system}] if system else []
        if isinstance(prompt, str):
            messages.append({"role": "user", "content": prompt})
        else:
            messages.extend(message_to_wire(message) for message in prompt or [])
        async with AsyncOpenAI(base_url=endpoint, api_key=secret) as client:
            response = await client.chat.completions.create(model=ctx.model, messages=messages)
        return ProgramResult(exit_code=0, stdout=response.choices[0].message.content or "", stderr="")


def load_environment(env_id: str = "MEM1-MultiHopQA-2", split: str = "test", limit: int | None = None,
                     **env_kwargs: Any) -> Mem1Env:
    """A verifiers environment over ``env_id``'s ``split`` (its first ``limit`` tasks); ``env_kwargs`` go to ``gym.make``."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (None: every task of the split), got {limit}")
    config = Mem1EnvConfig(taskset=Mem1TasksetConfig(env_id=env_id, split=split, limit=limit, env_kwargs=env_kwargs))
    return vf.load_environment(config)
