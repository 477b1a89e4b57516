"""A scripted oracle that plays the MEM1 QA protocol: tests, benchmarks and behaviour-cloning data.

It is *privileged*: it reads the task's hops (the keyword query, the answer and the supporting
passage of every step, known for the synthetic world) instead of the search results. It plays as
a constant-memory agent would: one search per turn, questions in order, hops in order, and a
``<think>`` that carries the whole state forward, e.g.::

    Q1: [Velmora Shipping Company founded] = Aldric Venn (confirmed); [Aldric Venn born] = Tarsen
    (confirmed) -> answer Tarsen. Q2: [Kest River flows] = ... next. Q3: pending.

After each search it checks whether the hop's answer appears in the results and records
"confirmed" or "not in results"; being privileged, it keeps the answer either way.

It answers every question at once when all hops are done, or on the last turn (``turns_left ==
1``). A question whose hops were all searched gets its canonical answer (``answers[0]``); one that
the budget cut short gets the best value it has (the answer of its last searched hop, else
"unknown"), so a budget too short costs reward as it would cost an honest agent.

Items without hops (real data) get one search with the question text, then ``answers[0]``.

>>> from mem1_gym.data.tasks import Hop, QAItem, Task
>>> item = QAItem("q0", "Where was Ada born?", ("Tarsen",), hops=(Hop("Ada born", "Tarsen", "7"),))
>>> oracle = ScriptedOracle()
>>> oracle.reset(Task("t0", (item,)))
>>> print(oracle.act("Answer the following question: ...", turns_left=6))
<think>Q1: [Ada born] next.</think>
<search>Ada born</search>
>>> print(oracle.act('Doc 1(Title: "Ada") Ada was born in Tarsen.', turns_left=5))
<think>Q1: [Ada born] = Tarsen (confirmed) -> answer Tarsen.</think>
<answer>Tarsen</answer>
"""

from __future__ import annotations

from dataclasses import dataclass

from mem1_gym.data.tasks import Hop, QAItem, Task
from mem1_gym.protocol import ANSWER_SEPARATOR, ActionType, format_turn, join_answers, normalize_answer

UNKNOWN = "unknown"
DOUBT_MARKS = ("(unconfirmed)", "(not in results)")
"""What the oracle's state says of an answer its searches did not show (it keeps the answer anyway)."""


def _plan(item: QAItem) -> tuple[Hop, ...]:
    """The searches for one question: its hops, or the question text itself for real data."""
    return item.hops or (Hop(item.question, item.answers[0] if item.answers else UNKNOWN, ""),)


def oracle_turns_needed(task: Task) -> int:
    """Turns the oracle needs to answer ``task`` fully: one per search, plus the answer turn."""
    return sum(len(_plan(item)) for item in task.items) + 1


@dataclass
class _Found:
    hop: Hop
    confirmed: bool | None  # None until the results of its search have been seen


class ScriptedOracle:
    """Deterministic privileged policy for MEM1 QA tasks (see the module docstring)."""

    def __init__(self) -> None:
        self._task: Task | None = None
        self._plans: list[tuple[Hop, ...]] = []
        self._found: list[list[_Found]] = []

    def reset(self, task: Task) -> None:
        """Start a new episode on ``task`` (forgets everything about the previous one)."""
        self._task = task
        self._plans = [_plan(item) for item in task.items]
        self._found = [[] for _ in task.items]

    def act(self, observation: str, turns_left: int) -> str:
        """One full turn (think + search or answer) given the latest observation.

        ``turns_left`` counts the current turn: 1 means this turn must answer.
        """
        if self._task is None:
            raise RuntimeError("call ScriptedOracle.reset(task) before act()")
        self._check_last_search(observation)
        nxt = self._next_hop()
        if nxt is None or turns_left <= 1:
            return format_turn(self._state(None), ActionType.ANSWER, join_answers(self._answers()))
        question, hop = nxt
        self._found[question].append(_Found(hop, None))
        return format_turn(self._state(nxt), ActionType.SEARCH, hop.query)

    # ---- internals ---------------------------------------------------------------------------------

    def _check_last_search(self, observation: str) -> None:
        seen = f" {normalize_answer(observation)} "
        for found in self._found:
            if found and found[-1].confirmed is None:
                answer = normalize_answer(found[-1].hop.answer)
                found[-1].confirmed = bool(answer) and f" {answer} " in seen

    def _next_hop(self) -> tuple[int, Hop] | None:
        for question, plan in enumerate(self._plans):
            if len(self._found[question]) < len(plan):
                return question, plan[len(self._found[question])]
        return None

    def _resolved(self, question: int) -> bool:
        return len(self._found[question]) == len(self._plans[question])

    def _answers(self) -> list[str]:
        answers = []
        for question, item in enumerate(self._task.items):
            if self._resolved(question) and item.answers:
                answers.append(_answer_text(item))
            elif self._found[question]:
                answers.append(self._found[question][-1].hop.answer)
            else:
                answers.append(UNKNOWN)
        return answers

    def _state(self, searching: tuple[int, Hop] | None) -> str:
        """The compact memory carried in <think>: what each question has established so far.

        A resolved question keeps only its answer and untouched ones collapse into one "pending"
        range: the hop trail of a finished question is exactly what MEM1 teaches an agent to drop,
        and keeping it made the state grow 2.5x from N = 2 to N = 16 (bench_memory.py).
        """
        answers = self._answers()
        parts, pending = [], []
        for question, found in enumerate(self._found):
            in_flight = searching is not None and searching[0] == question
            if not found:
                pending.append(question + 1)
                continue
            parts.extend(_pending_range(pending))
            pending = []
            if not in_flight and self._resolved(question):
                doubt = "" if all(f.confirmed for f in found) else f" {DOUBT_MARKS[0]}"
                parts.append(f"Q{question + 1}: {answers[question]}{doubt}.")
                continue
            done = found[:-1] if in_flight else found  # the hop searched now has no result yet
            facts = [f"[{f.hop.query}] = {f.hop.answer} {_status(f.confirmed)}" for f in done]
            if in_flight:
                facts.append(f"[{searching[1].query}] next")
            else:
                facts.append(f"best guess {answers[question]}")
            parts.append(f"Q{question + 1}: {'; '.join(facts)}.")
        parts.extend(_pending_range(pending))
        return " ".join(parts)


def _pending_range(questions: list[int]) -> list[str]:
    if not questions:
        return []
    if len(questions) == 1:
        return [f"Q{questions[0]}: pending."]
    return [f"Q{questions[0]}-Q{questions[-1]}: pending."]


def _answer_text(item: QAItem) -> str:
    """The first alias that survives ``;``-splitting of the answer block (real data has aliases like
    "Smith; Jones"); otherwise the first alias with ``;`` made ``,``, which normalises the same."""
    clean = [a for a in item.answers if ANSWER_SEPARATOR not in a]
    return clean[0] if clean else item.answers[0].replace(ANSWER_SEPARATOR, ",")


def _status(confirmed: bool | None) -> str:
    return "(confirmed)" if confirmed else DOUBT_MARKS[1]
