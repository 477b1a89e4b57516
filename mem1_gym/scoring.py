"""Verifiable QA rewards: per-objective exact match and F1, summed over objectives.

One definition for training reward, environment ``info`` and evaluation (the original MEM1 had
three: reference/mem1.md §8, R1). Normalisation comes from :mod:`mem1_gym.protocol`.

* EM of one objective = 1 if the normalised answer equals any normalised alias, else 0.
* F1 of one objective = max over aliases of SQuAD token F1 (multiset overlap of normalised tokens).
* Answers are positional. Missing answers score 0, extra answers are ignored, and the
  :class:`AnswerScore` says so (``count_mismatch``) — no all-or-nothing penalty, as in the paper's
  "EM count" (the sum over objectives, 0…N).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from mem1_gym.protocol import normalize_answer, split_answers


def exact_match(prediction: str, aliases: Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(alias) for alias in aliases))


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        # Both empty counts as agreement; one empty side has no overlap (SQuAD convention).
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, aliases: Sequence[str]) -> float:
    pred_tokens = normalize_answer(prediction).split()
    return max((_token_f1(pred_tokens, normalize_answer(a).split()) for a in aliases), default=0.0)


@dataclass(frozen=True)
class AnswerScore:
    """Score of one answer block against N objectives."""

    em: tuple[float, ...]  # per objective, question order
    f1: tuple[float, ...]
    n_expected: int
    n_given: int

    @property
    def em_sum(self) -> float:
        """The paper's "EM count": number of objectives answered exactly (0…N)."""
        return float(sum(self.em))

    @property
    def f1_sum(self) -> float:
        return float(sum(self.f1))

    @property
    def count_mismatch(self) -> bool:
        return self.n_given != self.n_expected

    @property
    def success(self) -> bool:
        return self.em_sum == self.n_expected


def score_answers(answers: Sequence[str], golds: Sequence[Sequence[str]]) -> AnswerScore:
    """Score positional ``answers`` against ``golds`` (one alias list per objective)."""
    padded = list(answers[: len(golds)]) + [""] * max(0, len(golds) - len(answers))
    em, f1 = [], []
    for i, (answer, aliases) in enumerate(zip(padded, golds)):
        missing = i >= len(answers)
        em.append(0.0 if missing else exact_match(answer, aliases))
        f1.append(0.0 if missing else f1_score(answer, aliases))
    return AnswerScore(tuple(em), tuple(f1), n_expected=len(golds), n_given=len(answers))


def score_answer_text(answer_text: str, golds: Sequence[Sequence[str]]) -> AnswerScore:
    """Score the content of an ``<answer>`` block (``"a1; a2"``)."""
    return score_answers(split_answers(answer_text), golds)
