"""Text views for third-party policies: what a ``callable(str) -> str`` should read at each turn.

A mem1-gym env returns, after ``reset``, the task prompt (instructions and questions, or the
shopping instruction and the first page) and, after each ``step``, only the *new* observation
(``<information>…</information>`` or ``<state>…</state>``). A policy that reads nothing but the
latest observation therefore loses the questions after its first turn. Two wrappers assemble a
complete view, as plain strings (the observation space stays text, so ``check_env`` passes):

* :class:`Mem1View`: what the prompt promises, "these instructions, your previous turn and the
  latest search results": task prompt + the agent's previous turn + the latest observation. This is
  MEM1's bounded context (``mem1-agent --context mem1``), so a policy carries everything else it
  needs in its own ``<think>`` (or WebShop ``<summary>``).
* :class:`Transcript`: task prompt + every turn and observation so far, in order (the
  full-history baseline, ``--context full``).

Both keep the env's own observation in ``info["observation_latest"]``. A policy is a
``callable(observation: str) -> str`` returning one model turn; one that also wants ``info`` may
take ``(observation, info)``: :func:`as_text_policy` tells the two apart by their signature.

>>> import gymnasium as gym, mem1_gym
>>> env = Mem1View(gym.make("MEM1-MultiHopQA-2"))
>>> obs, info = env.reset(seed=0)
>>> obs, reward, terminated, truncated, info = env.step("<think>nothing yet</think><search>Evotrola</search>")
>>> "Q2:" in obs, "<search>Evotrola</search>" in obs, obs.endswith(info["observation_latest"])
(True, True, True)
>>> env.close()
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from mem1_gym.core import UnicodeText


class _TextView(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Shared bookkeeping: the task prompt from ``reset`` and the turns played since."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)  # so gym.make can rebuild a spec that lists the view
        gym.Wrapper.__init__(self, env)
        if not isinstance(env.observation_space, gym.spaces.Text):
            raise TypeError(
                f"{type(self).__name__} assembles text; {env.spec.id if env.spec else env} observes "
                f"{env.observation_space}. Apply it directly to a mem1-gym env, before any vector wrapper."
            )
        self.observation_space = UnicodeText()
        self._prompt = ""
        self._turns: list[tuple[str, str]] = []  # (the agent's turn, the observation that followed)

    def reset(self, **kwargs) -> tuple[str, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._prompt, self._turns = obs, []
        return self.view(), {**info, "observation_latest": obs}

    def step(self, action: str):
        obs, reward, terminated, truncated, info = self.env.step(action)
        # A non-string action reached the env as an invalid action; the view shows it as text.
        self._turns.append((action if isinstance(action, str) else repr(action), obs))
        return self.view(), reward, terminated, truncated, {**info, "observation_latest": obs}

    keep_turns: int | None
    """How many of the last turns the view shows (None: all)."""

    def view(self) -> str:
        """The current observation: the task prompt, then the kept turns, each followed by its observation."""
        kept = self._turns if self.keep_turns is None else self._turns[-self.keep_turns :]
        return self._prompt + "".join(turn + obs for turn, obs in kept)


class Mem1View(_TextView):
    """Observation = task prompt + the agent's previous turn + the latest observation."""

    keep_turns = 1


class Transcript(_TextView):
    """Observation = task prompt + every turn and observation so far, in order."""

    keep_turns = None


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def as_text_policy(policy: Callable[..., str]) -> Callable[[str, dict[str, Any]], str]:
    """``policy`` as ``(observation, info) -> turn``: a ``callable(str) -> str`` is called with the
    observation alone, one with two required positional parameters (or ``*args``) with both."""
    return policy if _takes_info(policy) else lambda observation, info: policy(observation)


def _takes_info(policy: Callable[..., str]) -> bool:
    try:
        params = inspect.signature(policy).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable without a signature: the plain form
        return False
    required = [p for p in params if p.kind in _POSITIONAL and p.default is inspect.Parameter.empty]
    return (len(required) >= 2
            or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params))
