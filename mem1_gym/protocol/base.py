"""What every task family shares: tags, the linear-time tag scanner, the one turn parser, and
:class:`EnvProtocol`, the object through which an agent drives an env.

A family (QA, web QA, WebShop) differs only in data: which action kinds it has, whether an action is
its own tag (``<search>q</search>``) or a bare ``kind[argument]`` inside an envelope tag
(``<answer>click[buy now]</answer>``), which tags carry the agent's memory, and how an argument is
checked. :class:`TurnGrammar` holds that data and :meth:`TurnGrammar.parse` is the one parser of
all three families (issue 19, 1d); the family modules only declare their grammar and protocol.

Every env sets ``self.protocol`` (an :class:`EnvProtocol` bound to its split's task ids); the
agent's rollout, eval, SFT and learner read it through :func:`env_protocol`, which refuses an env
without one with a message that says which envs the agent can drive.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------

THINK = "think"
SEARCH = "search"
ANSWER = "answer"
INFORMATION = "information"
# WebShop (DESIGN.md §4): persistent memory lives in <summary>, observations in <state>.
SUMMARY = "summary"
STATE = "state"

MAX_QUERY_CHARS = 1000


def open_tag(name: str) -> str:
    return f"<{name}>"


def close_tag(name: str) -> str:
    return f"</{name}>"


# --------------------------------------------------------------------------------------------
# Linear-time tag scanning
# --------------------------------------------------------------------------------------------


def first_block(text: str, tags: Sequence[str], limit: int | None = None) -> tuple[str, int, int, int, int] | None:
    """The earliest ``<tag>…</tag>`` among ``tags`` that is closed: (tag, start, content start, content end, end).

    An opening tag at ``p`` has a match iff its closing tag occurs after ``p``, so one ``rfind``
    per tag decides every candidate in O(1) and the whole scan stays linear.
    """
    limit = len(text) if limit is None else limit
    best = None
    for tag in tags:
        opening, closing = open_tag(tag), close_tag(tag)
        last_close = text.rfind(closing, 0, limit)
        start = text.find(opening, 0, limit)
        if start == -1 or last_close < start + len(opening):
            continue
        if best is None or start < best[1]:
            content_start = start + len(opening)
            content_end = text.find(closing, content_start, limit)
            best = (tag, start, content_start, content_end, content_end + len(closing))
    return best


def first_action_block(text: str, tags: Sequence[str]) -> tuple[str, int, int, int, int] | None:
    """:func:`first_block` of ``tags`` outside every ``<think>…</think>``: a tag the model writes
    while thinking ("I could <search>x</search> next") is never its action (issue 19, 1e).

    Think blocks are skipped in order up to the first closed action block that no ``<think>``
    precedes; an unclosed ``<think>`` makes the rest of the text thought (no action). A tag's next
    opening is searched again only once the scan has passed it, and an opening is closed iff the
    tag's last closing comes after it, so the scan stays linear on any input.
    """
    think_open, think_close = open_tag(THINK), close_tag(THINK)
    last_close = {tag: text.rfind(close_tag(tag)) for tag in tags}
    next_open = {tag: text.find(open_tag(tag)) for tag in tags}
    begin = 0
    while True:
        for tag, at in next_open.items():
            if 0 <= at < begin:
                next_open[tag] = text.find(open_tag(tag), begin)
        closed = [(at, tag) for tag, at in next_open.items() if 0 <= at and last_close[tag] >= at + len(open_tag(tag))]
        if not closed:
            return None
        start, tag = min(closed)
        think_at = text.find(think_open, begin, start)
        if think_at == -1:
            content_start = start + len(open_tag(tag))
            content_end = text.find(close_tag(tag), content_start)
            return tag, start, content_start, content_end, content_end + len(close_tag(tag))
        think_end = text.find(think_close, think_at + len(think_open))
        if think_end == -1:
            return None
        begin = think_end + len(think_close)


def first_content(text: str, tag: str, before: int) -> str | None:
    """The stripped content of the first closed ``<tag>`` block that ends by ``before``, if any."""
    block = first_block(text, (tag,), limit=before)
    return text[block[2] : block[3]].strip() if block else None


def first_think(text: str, before: int) -> str | None:
    return first_content(text, THINK, before)


UNCLOSED_THINK_ERROR = "unclosed <think> tag (tags inside <think>...</think> are thoughts, not actions)"


def unclosed_think(text: str) -> bool:
    """The text ends inside a ``<think>`` block, so :func:`first_action_block` read no action after it."""
    return text.rfind(open_tag(THINK)) > text.rfind(close_tag(THINK))


# --------------------------------------------------------------------------------------------
# The one turn parser
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedTurn:
    """What :meth:`TurnGrammar.parse` understood of one agent turn, in any family."""

    kind: str
    """The action kind ("search", "answer", "open", "click"); "" when the turn has no valid action."""
    argument: str
    """The query, answer text, URL or label, stripped and checked; "" when invalid."""
    memory: Mapping[str, str | None]
    """Per memory tag of the family, the content of its first block before the action (None: absent)."""
    end: int
    """Characters of the input consumed (through the action's closing tag)."""
    error: str
    """Why the turn is invalid; "" when valid."""

    @property
    def valid(self) -> bool:
        return bool(self.kind)

    @property
    def think(self) -> str | None:
        return self.memory.get(THINK)

    @property
    def text(self) -> str:
        """The action as a bare ``kind[argument]`` (WebShop's syntax), "" when invalid."""
        return f"{self.kind}[{self.argument}]" if self.valid else ""


def _either(items: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``: how the error messages list alternatives."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


@dataclass(frozen=True)
class TurnGrammar:
    """How one family writes an action, and the parser of its turns."""

    kinds: tuple[str, ...]
    """Action kinds, in the order error messages list them; ``kind[argument]`` is the bare form of each."""
    check: Callable[[str, str], tuple[str, str]]
    """``check(kind, stripped argument) -> (argument, error)``: caps or refuses an argument ("" error: valid)."""
    envelope: str | None = None
    """None: each kind is its own tag (``<search>q</search>``). A tag (WebShop's "answer"): the action
    is the bare ``kind[argument]`` inside that tag (``<answer>click[buy now]</answer>``)."""
    memory_tags: tuple[str, ...] = (THINK,)
    """Tags whose first block before the action is the agent's memory."""
    ignore_case: bool = False
    """Whether bare kinds are matched case-insensitively (WebShop's ``Click[Buy Now]``)."""
    placeholders: tuple[str, ...] = ()
    """Per kind, what its argument is ("keywords", "label"), for the message of an envelope that holds
    no bare action; empty: "..."."""

    @property
    def tags(self) -> tuple[str, ...]:
        """The tags an action block can have."""
        return self.kinds if self.envelope is None else (self.envelope,)

    def parse(self, text: str) -> ParsedTurn:
        """Parse a full model turn or a bare action; never raises, linear time on any input.

        * A full turn: the first complete action block outside ``<think>`` (:func:`first_action_block`)
          is the action; text after its closing tag is ignored, as generation stops there. The first
          block of each memory tag before it is the memory.
        * A bare action: the whole string is ``kind[argument]`` (no memory).
        Anything else is invalid, with ``error`` saying why.
        """
        if not isinstance(text, str):
            return ParsedTurn("", "", self._no_memory(), 0, f"action must be a str, got {type(text).__name__}")
        bare = re.compile(rf"\A\s*({'|'.join(self.kinds)})\[(.*)\]\s*\Z", re.DOTALL | (re.I if self.ignore_case else 0))
        block = first_action_block(text, self.tags)
        if block is None:
            match = bare.match(text)
            if match is None:
                return ParsedTurn("", "", self._memory(text, len(text)), len(text), self._why_invalid(text))
            kind, argument, end, memory = match.group(1).lower(), match.group(2), len(text), self._no_memory()
        else:
            tag, start, content_start, content_end, end = block
            kind, argument, memory = tag, text[content_start:content_end], self._memory(text, start)
            if self.envelope is not None:
                match = bare.match(argument)
                if match is None:
                    names = self.placeholders or ("...",) * len(self.kinds)
                    forms = _either([f"{kind}[{name}]" for kind, name in zip(self.kinds, names)])
                    return ParsedTurn("", "", memory, end, f"the {self.envelope} must be {forms}")
                kind, argument = match.group(1).lower(), match.group(2)
        argument, error = self.check(kind, argument.strip())
        return ParsedTurn("" if error else kind, "" if error else argument, memory, end, error)

    def _no_memory(self) -> dict[str, str | None]:
        return dict.fromkeys(self.memory_tags)

    def _memory(self, text: str, before: int) -> dict[str, str | None]:
        return {tag: first_content(text, tag, before) for tag in self.memory_tags}

    def _why_invalid(self, text: str) -> str:
        if not text.strip():
            return "empty action"
        if unclosed_think(text):
            return UNCLOSED_THINK_ERROR
        for tag in self.tags:
            if open_tag(tag) in text and close_tag(tag) not in text:
                return f"unclosed <{tag}> tag"
        blocks = _either([f"{open_tag(t)}...{close_tag(t)}" for t in self.tags])
        if self.envelope is None:
            return f"no {blocks} block"
        return f"no {blocks} block and no bare {_either([f'{k}[...]' for k in self.kinds])}"


# --------------------------------------------------------------------------------------------
# The protocol object of an env
# --------------------------------------------------------------------------------------------

DRIVABLE_ENVS = "MEM1-MultiHopQA-N, MEM1-WebQA-N, MEM1-WebShop and MEM1-WebShop-Text"


@dataclass(frozen=True)
class EnvProtocol:
    """Everything an agent needs to drive one env: ``env.unwrapped.protocol`` (issue 19, 1d)."""

    family: str
    """The task family: "qa", "webqa" or "webshop"."""
    grammar: TurnGrammar
    """The family's action syntax and parser (:meth:`parse`)."""
    stop_strings: tuple[str, ...]
    """Generation stops at the end of any action block (training and evaluation alike)."""
    final_turn_stop_strings: tuple[str, ...]
    """Stop strings of the last turn, where only the final answer is allowed."""
    score_keys: tuple[str, ...]
    """``info`` keys of an episode's last step holding its scores (a list is per objective)."""
    task_index_key: str = "task_index"
    """The ``info`` key with the index of the task ``reset`` drew."""
    task_ids: tuple[str, ...] = ()
    """The env's tasks (its split), in index order; ``reset(options={"task_index": i})`` plays ``task_ids[i]``."""

    @property
    def memory_tags(self) -> tuple[str, ...]:
        """Tags that carry the agent's memory (the internal state a MEM1 context keeps)."""
        return self.grammar.memory_tags

    @property
    def n_tasks(self) -> int:
        return len(self.task_ids)

    def parse(self, text: str) -> ParsedTurn:
        return self.grammar.parse(text)

    def stops(self, turns_left: int) -> tuple[str, ...]:
        """Stop strings of a turn played with ``turns_left`` turns left (counting it)."""
        return self.final_turn_stop_strings if turns_left <= 1 else self.stop_strings

    def reset_options(self, task_index: int | None) -> dict[str, int] | None:
        """``reset`` options that play task ``task_index`` (None: the env draws one from the seed)."""
        if task_index is None:
            return None
        if not 0 <= task_index < self.n_tasks:
            raise ValueError(f"task_index must be in [0, {self.n_tasks}), got {task_index}")
        return {"task_index": task_index}

    def with_tasks(self, task_ids: Sequence[str]) -> EnvProtocol:
        """This protocol bound to an env's task list."""
        return dataclasses.replace(self, task_ids=tuple(task_ids))


def env_protocol(env: Any) -> EnvProtocol:
    """The protocol of ``env`` (a wrapped env is unwrapped), or a ValueError naming the envs the agent drives."""
    protocol = getattr(getattr(env, "unwrapped", env), "protocol", None)
    if not isinstance(protocol, EnvProtocol):
        spec = getattr(env, "spec", None)
        name = getattr(spec, "id", None) or type(getattr(env, "unwrapped", env)).__name__
        raise ValueError(f"env {name} has no mem1_gym protocol (env.unwrapped.protocol: its action syntax, stop "
                         f"strings, tasks and score keys), so the agent cannot drive it; the agent drives "
                         f"{DRIVABLE_ENVS}")
    return protocol
