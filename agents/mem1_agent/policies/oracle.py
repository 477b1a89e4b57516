"""The scripted oracle of mem1-gym behind the policy interface (no model, no sampling).

It is privileged: :meth:`OraclePolicy.start_episode` hands it the env's task, and it plays from the
latest observation alone, whatever context strategy is in use. Its text is encoded with the
counting tokenizer (``ids_as_sampled=False``), which makes it the model-independent probe of the
paper's memory claim: the same turns, counted under the ``mem1`` and ``full`` contexts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mem1_agent.policies.base import Generation, GenerationRequest, Policy, TokenCodec
from mem1_agent.records import FinishReason
from mem1_gym.oracle import ScriptedOracle


class OraclePolicy(Policy):
    """One :class:`~mem1_gym.oracle.ScriptedOracle` per env slot."""

    def __init__(self, codec: TokenCodec) -> None:
        self.name = "oracle"
        self.codec = codec
        self._oracles: dict[int, ScriptedOracle] = {}

    def start_episode(self, slot: int, env: Any) -> None:
        task = getattr(env.unwrapped, "task", None)
        if task is None:
            raise TypeError(f"the oracle needs an env that exposes .task (the QA envs do); got {type(env.unwrapped).__name__}")
        self._oracles.setdefault(slot, ScriptedOracle()).reset(task)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        out = []
        for request in requests:
            if request.slot not in self._oracles:
                raise RuntimeError(f"slot {request.slot} has no episode; the rollout must call start_episode first")
            text = self._oracles[request.slot].act(request.observation, request.turns_left)
            ids = self.codec.encode(text)
            out.append(Generation(ids, text, None, FinishReason.SCRIPTED, ids_as_sampled=False))
        return out
