"""What MEM1's released ``inference/eval.py`` would report, computed from our rollout records.

The paper's tables come from that script (reference/mem1.md §6.2), whose definitions differ from
ours (:mod:`mem1_agent.metrics`, :mod:`mem1_gym.scoring`); ``mem1-agent eval`` reports both, these
with a ``paper_`` prefix, so a number can be compared with the paper's and the gap explained.
``docs/metrics.md`` lists every difference and why ours differs. The script's rules, restated:

* **Its record of a turn** (:class:`Mem1Turn`): ``t`` = the first ``<think>`` block, re-wrapped
  around its stripped content (``""`` if none); ``r`` = the whole generated text, so the think is
  in it a second time; ``i`` = the observation. The prompt is never read. Only turns 0-9 are
  read (:data:`TURNS_READ`): an answer given at turn 11 scores 0.
* **EM, F1** (:func:`paper_score`): over ``t0 r0 i0 t1 …``, lowercased, with balanced ``<answer>``
  tags (else 0), the *last* ``<answer>`` block, split on ``;``; each piece and each alias is
  normalised by :func:`normalize` (punctuation becomes a space, articles are kept). A different
  number of answers than questions scores 0. EM: the piece equals an alias. F1: the best over
  aliases of F1 on token *sets*. Both summed over questions (0…N).
* **Peak tokens** (:func:`peak_tokens`): with a pruned context, the largest over turns of
  ``tokens(t_{k-1} r_{k-1} i_{k-1} t_k r_k)`` (the think counted twice, the prompt never); with the
  full history, the tokens of the whole ``t r i`` transcript. A trajectory whose rollout-time
  match (:func:`rollout_match`) is 0 is left out of the mean, as the script does.
* **Dependency** (:func:`dependency`): each of ``t_k`` and ``r_k`` adds ``(c + ℓ // 2)·ℓ`` for its
  ``ℓ`` tokens read after ``c`` context tokens (previous turn then current turn so far, or
  everything before it with the full history); observations only add to ``c``.

Tokens are counted by the caller's ``count_tokens`` (eval passes the policy's tokenizer, so the two
sets of columns differ by definitions only; the script used tiktoken's gpt-4o-mini encoding).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mem1_agent.records import Trajectory
from mem1_gym.protocol import ANSWER, THINK, close_tag, first_think, open_tag, parse_action

TURNS_READ = 10
"""eval.py reads the keys of turns 0-9 only (its loops run over ``range(10)``)."""
FULL_HISTORY = "full"
"""The context strategy read with eval.py's "non-compression" formulas; every other one is pruned."""
_ASSISTANT_MARK = "<|im_start|>assistant"  # eval.py scores only what follows the last one (absent from our text)
_ANSWER_RE = re.compile(f"{open_tag(ANSWER)}(.*?){close_tag(ANSWER)}", re.DOTALL)
_PUNCT_TO_SPACE = str.maketrans({ch: " " for ch in string.punctuation})

TokenCounter = Callable[[str], int]
"""Tokens of a text (eval.py: tiktoken's gpt-4o-mini encoding; ``mem1-agent eval``: the policy's tokenizer)."""


@dataclass(frozen=True)
class Mem1Turn:
    """One turn as MEM1's rollout file stores it (keys ``t{k}``, ``r{k}``, ``i{k}``)."""

    think: str
    response: str
    information: str


def mem1_turns(trajectory: Trajectory) -> list[Mem1Turn]:
    """Our turns as MEM1's records (all of them; the metrics read the first :data:`TURNS_READ`)."""
    turns = []
    for turn in trajectory.turns:
        text = turn.generated_text
        think = first_think(text, len(text))
        wrapped = "" if think is None else f"{open_tag(THINK)}{think}{close_tag(THINK)}"
        turns.append(Mem1Turn(wrapped, text, turn.observation.text))
    return turns


def normalize(text: str) -> str:
    """eval.py's normalisation: lowercase, every ASCII punctuation mark becomes a space, spaces collapse."""
    return " ".join(text.lower().translate(_PUNCT_TO_SPACE).split())


def answer_tags_balanced(text: str) -> bool:
    """As many ``<answer>`` as ``</answer>``, and every opening scanned in order has a closing after it."""
    opening, closing = open_tag(ANSWER), close_tag(ANSWER)
    if text.count(opening) != text.count(closing):
        return False
    at = text.find(opening)
    while at != -1:
        end = text.find(closing, at)
        if end == -1:
            return False
        at = text.find(opening, end + 1)
    return True


def _set_f1(prediction: str, gold: str) -> float:
    pred, ref = set(prediction.split()), set(gold.split())
    if not pred or not ref:
        return 0.0
    common = len(pred & ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def paper_score(solution: str, golds: Sequence[Sequence[str]], kind: str) -> float:
    """eval.py's ``compute_score`` (``kind`` "em" or "f1") of a solution string against one alias list per question."""
    solution = solution.lower().split(_ASSISTANT_MARK)[-1]
    blocks = _ANSWER_RE.findall(solution) if answer_tags_balanced(solution) else []
    if not blocks:
        return 0.0
    answers = [normalize(piece) for piece in blocks[-1].strip().split(";")]
    if len(answers) != len(golds):
        return 0.0
    total = 0.0
    for answer, aliases in zip(answers, golds):
        normalized = [normalize(alias) for alias in aliases]
        if kind == "em":
            total += float(answer in normalized)
        else:
            total += max((_set_f1(answer, alias) for alias in normalized), default=0.0)
    return total


def rollout_match(answer: str | None, golds: Sequence[Sequence[str]]) -> int:
    """The ``Exact_match`` MEM1's rollout script stores and eval.py filters peak tokens on: per question,
    1 if the lowercased answer and the *first* alias contain one another (an empty answer always does);
    0 in all when there are fewer answers than questions. No answer reads as the text "None"."""
    answers = str(answer).split(";")
    if len(answers) < len(golds):
        return 0
    matched = 0
    for piece, aliases in zip(answers, golds):
        given, gold = piece.lower().strip(), str(aliases[0]).lower().strip()
        matched += int(given in gold or gold in given)
    return matched


def solution_string(turns: Sequence[Mem1Turn]) -> str:
    """``t0 r0 i0 t1 r1 i1 …`` over the turns eval.py reads."""
    return "".join(t.think + t.response + t.information for t in turns[:TURNS_READ])


def peak_tokens(turns: Sequence[Mem1Turn], count: TokenCounter, pruned: bool) -> int | None:
    """eval.py's peak, before its rollout-match filter (:func:`paper_metrics` applies it); None for a
    pruned context that read no tokens at all (the script leaves such rows out)."""
    if not pruned:
        return count(solution_string(turns))
    peak, previous = 0, ""
    for k in range(TURNS_READ):  # past the last turn the window is the last turn's t r i alone
        turn = turns[k] if k < len(turns) else Mem1Turn("", "", "")
        peak = max(peak, count(previous + turn.think + turn.response))
        previous = turn.think + turn.response + turn.information
    return peak or None


def dependency(turns: Sequence[Mem1Turn], count: TokenCounter, pruned: bool) -> int | None:
    """eval.py's dependency; None when nothing was generated (the script leaves such rows out)."""
    total, generated, context = 0, 0, ""
    for turn in turns[:TURNS_READ]:
        for segment in (turn.think, turn.response):
            length = count(segment)
            total += (count(context) + length // 2) * length
            generated += length
            context += segment
        context = (turn.think + turn.response if pruned else context) + turn.information
    return total if generated else None


@dataclass(frozen=True)
class PaperMetrics:
    """One trajectory as MEM1's eval.py scores it."""

    em: float
    """EM count (0…N) by eval.py's rules."""
    f1: float
    rollout_match: int
    """The rollout-time substring match (0…N) the peak is filtered on."""
    peak_tokens: int | None
    """None where eval.py leaves the trajectory out of the peak mean (rollout match 0, or no tokens)."""
    dependency: int | None


def paper_metrics(trajectory: Trajectory, golds: Sequence[Sequence[str]], count_tokens: TokenCounter) -> PaperMetrics:
    """What eval.py computes for ``trajectory`` (golds: one alias list per question, in order)."""
    turns = mem1_turns(trajectory)
    pruned = trajectory.context_strategy != FULL_HISTORY
    solution = solution_string(turns)
    last = trajectory.turns[-1] if trajectory.turns else None
    answer = parse_action(last.generated_text).content if last is not None and last.action_type == "answer" else None
    match = rollout_match(answer, golds)
    return PaperMetrics(
        em=paper_score(solution, golds, "em"),
        f1=paper_score(solution, golds, "f1"),
        rollout_match=match,
        peak_tokens=peak_tokens(turns, count_tokens, pruned) if match else None,
        dependency=dependency(turns, count_tokens, pruned),
    )
