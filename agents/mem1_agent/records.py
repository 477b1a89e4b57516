"""Typed rollout records: what the policy read, what it sampled, what the env answered.

A :class:`Trajectory` stores every piece of text exactly once, as a :class:`Segment` (kind, turn,
token ids, text): the task prompt, and per turn the internal state, the action and the observation.
Each :class:`Turn` names the segments its context was made of (:class:`SegmentRef`), so
``trajectory.context_ids(t)`` rebuilds the exact token ids the policy read at turn ``t`` without
storing a full-history context 36 times over. Generated ids are kept as sampled: the state/action
split is a cut *between* sampled tokens (see :func:`split_generation`), never a decode→re-encode
(the original re-tokenised segments, so it trained on tokens it never sampled: reference/mem1.md §8, B5).

Records serialise to one JSON object per line (:func:`write_jsonl`, :func:`read_jsonl`;
:func:`truncate_torn_tail` repairs a file a kill left mid-line before a resumed run appends).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

RECORD_VERSION = 1


class SegmentKind(enum.IntEnum):
    """What a run of tokens is; the learner masks by kind (loss only on STATE and ACTION)."""

    PROMPT = 0
    STATE = 1  # the memory blocks (<think>; WebShop <think><summary>): the internal state carried forward
    ACTION = 2  # the action block (<search>/<answer>/...) and anything sampled after the state
    OBSERVATION = 3  # text the env injected: <information>…</information>, <state>…</state>


class FinishReason(enum.IntEnum):
    """Why generation of one turn stopped."""

    STOP = 0  # a stop string (</search>, </answer>) was produced
    EOS = 1  # the end-of-sequence token
    LENGTH = 2  # max_new_tokens reached (e.g. a tag that was never closed)
    CONTEXT_OVERFLOW = 3  # the context no longer fits the model window: nothing was generated
    SCRIPTED = 4  # a scripted policy (the oracle): text, not sampled tokens


class SegmentRef(NamedTuple):
    """Names one segment of a trajectory: (kind, turn). The prompt is (PROMPT, 0)."""

    kind: SegmentKind
    turn: int


@dataclass(frozen=True)
class Segment:
    """A run of tokens of one kind, with the text it stands for."""

    kind: SegmentKind
    turn: int
    token_ids: tuple[int, ...]
    text: str

    @property
    def ref(self) -> SegmentRef:
        return SegmentRef(self.kind, self.turn)

    def __len__(self) -> int:
        return len(self.token_ids)


@dataclass
class Turn:
    """One model turn and the env step it caused."""

    index: int
    """0-based turn number within the episode."""
    context: tuple[SegmentRef, ...]
    """The segments the policy read, in order (``Trajectory.context_ids`` gives the ids)."""
    context_tokens: int
    """Tokens of that context (policy tokenizer)."""
    prompt_tokens: int
    """Tokens of the task prompt inside that context (0 if a strategy dropped it)."""
    turns_left: int
    """Turns left before this one was played, counting it (1 = the forced final answer)."""
    state: Segment
    """Generated tokens up to and including the token that closes the last memory tag (``</think>``; may be empty)."""
    action: Segment
    """The rest of the generated tokens, as sampled."""
    observation: Segment
    """What the env injected after this turn ("" after an answer)."""
    logprobs: tuple[float, ...] | None
    """Log-prob of each generated token under the sampling policy (state then action); None if unknown."""
    ids_as_sampled: bool
    """True when state/action ids are the sampled ids (transformers, vLLM, token-id servers)."""
    finish: FinishReason
    reward: float
    terminated: bool
    truncated: bool
    valid_action: bool
    action_type: str
    """The env's ``info["action_type"]``: "search", "answer" or "invalid"."""
    gen_seconds: float
    """Wall time of the batched generate call this turn was part of, divided by its batch size."""
    env_seconds: float
    """Wall time of this env step."""

    @property
    def generated_ids(self) -> tuple[int, ...]:
        return self.state.token_ids + self.action.token_ids

    @property
    def generated_text(self) -> str:
        return self.state.text + self.action.text


@dataclass
class Trajectory:
    """One episode: the prompt, the turns, and the env's final score."""

    env_id: str
    task_id: str
    """The played task's id (``env.unwrapped.protocol.task_ids[task_index]``)."""
    task_index: int
    seed: int
    policy: str
    context_strategy: str
    tokenizer: str
    """Which tokenizer counted the tokens (the policy's, or the counting tokenizer of a text policy)."""
    prompt: Segment
    turns: list[Turn] = field(default_factory=list)
    em: tuple[float, ...] = ()
    f1: tuple[float, ...] = ()
    evidence: tuple[float, ...] = ()
    """Per question, the fraction of its supporting passages some search retrieved (the env's
    ``info["evidence"]``; empty when the env does not report it)."""
    answered: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    """The env's final scores by its protocol's ``score_keys`` (QA: em, f1 summed over questions;
    WebShop: reward, success); empty in records written before the field existed."""
    group: int | None = None
    """The rollout group (same task, several samples) the learner assigned; None outside training."""
    wall_seconds: float = 0.0
    version: int = RECORD_VERSION

    @property
    def n_objectives(self) -> int:
        return len(self.em)

    @property
    def done(self) -> bool:
        return bool(self.turns) and (self.turns[-1].terminated or self.turns[-1].truncated)

    def segment(self, ref: SegmentRef) -> Segment:
        if ref.kind is SegmentKind.PROMPT:
            return self.prompt
        turn = self.turns[ref.turn]
        return {SegmentKind.STATE: turn.state, SegmentKind.ACTION: turn.action}.get(ref.kind, turn.observation)

    def context_segments(self, turn: int) -> list[Segment]:
        return [self.segment(ref) for ref in self.turns[turn].context]

    def context_ids(self, turn: int) -> list[int]:
        """The exact token ids the policy read at ``turn``."""
        return [tok for seg in self.context_segments(turn) for tok in seg.token_ids]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        if data.get("version") != RECORD_VERSION:
            raise ValueError(f"trajectory record version {data.get('version')} is not {RECORD_VERSION}; re-run the eval")
        data = dict(data)
        data["prompt"] = _segment(data["prompt"])
        data["turns"] = [_turn(t) for t in data["turns"]]
        data["em"], data["f1"] = tuple(data["em"]), tuple(data["f1"])
        data["evidence"] = tuple(data.get("evidence", ()))  # records written before the field existed
        return cls(**data)


def _segment(data: dict[str, Any]) -> Segment:
    return Segment(SegmentKind(data["kind"]), data["turn"], tuple(data["token_ids"]), data["text"])


def _turn(data: dict[str, Any]) -> Turn:
    data = dict(data)
    data["context"] = tuple(SegmentRef(SegmentKind(k), t) for k, t in data["context"])
    for key in ("state", "action", "observation"):
        data[key] = _segment(data[key])
    data["logprobs"] = None if data["logprobs"] is None else tuple(data["logprobs"])
    data["finish"] = FinishReason(data["finish"])
    return Turn(**data)


def split_generation(ids: Sequence[int], decode: Callable[[Sequence[int]], str], state_end: int | None) -> int:
    """How many leading sampled tokens form the STATE segment.

    ``state_end`` is the character offset just past ``</think>`` in the turn's text (None: no state). The
    cut is the shortest prefix of ``ids`` whose decoded text reaches that offset, found by binary
    search over prefixes (O(log n) decodes). A token that straddles the boundary goes to the state.
    """
    if state_end is None or not ids:
        return 0
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(decode(ids[:mid])) >= state_end:
            hi = mid
        else:
            lo = mid + 1
    return lo


def write_jsonl(path: str | Path, trajectories: Iterable[Trajectory], append: bool = True) -> None:
    """Append (or write) one JSON line per trajectory, each flushed and fsynced before the next one.

    A kill (or power loss) can still tear the line being written; :func:`truncate_torn_tail` cuts it
    away before a resumed run appends (issue 21, item 4).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", encoding="utf-8") as fh:
        for traj in trajectories:
            fh.write(json.dumps(traj.to_dict(), ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def read_jsonl(path: str | Path) -> Iterator[Trajectory]:
    """Load trajectories back; a torn last line (a run killed mid-write) is left out, the file untouched."""
    records, _ = _scan_jsonl(Path(path))
    for data in records:
        yield Trajectory.from_dict(data)


def truncate_torn_tail(path: str | Path) -> int:
    """Cut a torn last line off ``path`` (in place) so appends start on a fresh line; returns the bytes dropped."""
    path = Path(path)
    complete_end = _scan_jsonl(path)[1]
    dropped = path.stat().st_size - complete_end
    if dropped:
        with path.open("r+b") as fh:
            fh.truncate(complete_end)
            fh.flush()
            os.fsync(fh.fileno())
    return dropped


def _scan_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The records of ``path`` and the byte offset just past the last complete one.

    The file is read as bytes and each line decoded on its own: a run killed mid-write can cut a
    multi-byte character, which must not make the whole file undecodable. The last line is torn (left
    out) when it lacks its newline or is not valid UTF-8 JSON; such a line anywhere else is corruption
    this code never writes, so it is an error rather than a record silently lost.
    """
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # what follows the last newline is an unterminated, so torn, fragment
    lines = data[:end].split(b"\n")[:-1]
    filled = [i for i, line in enumerate(lines) if line.strip()]
    last = filled[-1] if filled and not data[end:].strip() else None  # a line that may be torn
    records, complete_end = [], 0
    for i, line in enumerate(lines):
        if line.strip():
            try:
                records.append(json.loads(line.decode("utf-8")))
            except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                if i == last:
                    return records, complete_end
                raise ValueError(f"{path}:{i + 1} is not a complete JSON record, yet records follow it (an older "
                                 f"version appended after a torn line); delete line {i + 1} (its episode is "
                                 "replayed) and re-run") from None
        complete_end += len(line) + 1
    return records, complete_end
