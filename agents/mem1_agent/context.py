"""Context strategies: which recorded segments the policy reads at the next turn.

A strategy only *selects* segments (:class:`~mem1_agent.records.SegmentRef`); the ids come from the
trajectory's stored segments, so a context is always made of the exact prompt ids, the exact
sampled ids and the exact observation ids (never a re-tokenised or left-truncated rolling buffer,
reference/mem1.md §8, B5 and B7).

======================  ===============================================================
``mem1``                task prompt + last state + last action + last observation (the paper's
                        bounded context: at most one state, one action, one observation)
``full``                task prompt + every turn (the full-history baseline the paper beats)
``truncate:K``          task prompt + the last K turns
======================  ===============================================================

Structurally ``mem1`` is ``truncate:1``; what makes it MEM1 is a policy trained to carry
everything it needs in its internal state: the STATE segment, which holds the env protocol's
memory tags (``<think>``; WebShop's ``<think>`` and ``<summary>``; the rollout cuts it by
``env.unwrapped.protocol.memory_tags``). The paper's "truncate" baseline applies this same pruning
to an untrained instruct model (reference/mem1.md §6.3).

The last turn is the forced final answer: the observation before it carries the protocol's
"must answer in the next turn" hint and generation may only stop at ``</answer>``
(:meth:`mem1_gym.protocol.EnvProtocol.stops`).
"""

from __future__ import annotations

import abc
from typing import NamedTuple

from mem1_agent.records import SegmentKind, SegmentRef, Trajectory

_TURN_KINDS = (SegmentKind.STATE, SegmentKind.ACTION, SegmentKind.OBSERVATION)
PROMPT_REF = SegmentRef(SegmentKind.PROMPT, 0)


class Context(NamedTuple):
    """What the policy reads at one turn."""

    refs: tuple[SegmentRef, ...]
    token_ids: tuple[int, ...]
    text: str
    prompt_tokens: int


class ContextStrategy(abc.ABC):
    """Chooses the segments of the next context from the turns played so far."""

    name: str

    @abc.abstractmethod
    def select(self, n_turns: int) -> tuple[SegmentRef, ...]:
        """Segments to read after ``n_turns`` completed turns (turn indices 0 … n_turns - 1)."""

    def build(self, trajectory: Trajectory) -> Context:
        """The next context of ``trajectory``, as ids and as text."""
        refs = self.select(len(trajectory.turns))
        segments = [trajectory.segment(ref) for ref in refs]
        ids = tuple(tok for seg in segments for tok in seg.token_ids)
        prompt = sum(len(seg) for seg in segments if seg.kind is SegmentKind.PROMPT)
        return Context(refs, ids, "".join(seg.text for seg in segments), prompt)


class TruncateContext(ContextStrategy):
    """The task prompt and the last ``keep_turns`` turns."""

    def __init__(self, keep_turns: int) -> None:
        if keep_turns < 1:
            raise ValueError(f"truncate keeps at least one turn, got {keep_turns}; use --context truncate:1 or more")
        self.keep_turns = keep_turns
        self.name = f"truncate:{keep_turns}"

    def select(self, n_turns: int) -> tuple[SegmentRef, ...]:
        first = max(0, n_turns - self.keep_turns)
        return (PROMPT_REF,) + tuple(SegmentRef(kind, t) for t in range(first, n_turns) for kind in _TURN_KINDS)


class Mem1Context(TruncateContext):
    """MEM1: the task prompt, the last internal state, the last action and the last observation."""

    def __init__(self) -> None:
        super().__init__(keep_turns=1)
        self.name = "mem1"


class FullContext(ContextStrategy):
    """Everything: the task prompt and every turn, in order."""

    name = "full"

    def select(self, n_turns: int) -> tuple[SegmentRef, ...]:
        return (PROMPT_REF,) + tuple(SegmentRef(kind, t) for t in range(n_turns) for kind in _TURN_KINDS)


def make_strategy(name: str) -> ContextStrategy:
    """``"mem1"``, ``"full"`` or ``"truncate:K"`` (plain ``"truncate"`` keeps 2 turns)."""
    if name == "mem1":
        return Mem1Context()
    if name == "full":
        return FullContext()
    if name == "truncate" or name.startswith("truncate:"):
        k = name.partition(":")[2] or "2"
        if not k.isdigit():
            raise ValueError(f"--context {name}: K must be a whole number of turns, e.g. truncate:3")
        return TruncateContext(int(k))
    raise ValueError(f"unknown context strategy {name!r}; use mem1, full or truncate:K")

