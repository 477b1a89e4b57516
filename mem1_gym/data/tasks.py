"""Typed QA records and the composition of N questions into one multi-objective task.

Composition (reference/mem1.md §3.1, improved): the original took consecutive blocks of N rows
per source, unshuffled. Here the pool is shuffled with a seeded generator, sources can be mixed or
kept apart, every task has a stable id, and ``compose`` is a pure function of its arguments, so
``task_index`` addresses the same task on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np


@dataclass(frozen=True)
class Hop:
    """One retrieval step of a question's solution (known for the synthetic world)."""

    query: str  # a keyword query that retrieves the supporting passage
    answer: str  # what this hop establishes (a bridge entity, a year, the final answer)
    doc_id: str  # the supporting passage


@dataclass(frozen=True)
class QAItem:
    """One question with its answer aliases."""

    id: str
    question: str
    answers: tuple[str, ...]  # aliases; any one counts as correct
    source: str = "unknown"  # "synthetic", "nq", "hotpotqa", ...
    kind: str = "unknown"  # "single", "bridge", "comparison", or "unknown" for real data
    gold_doc_ids: tuple[str, ...] = ()
    hops: tuple[Hop, ...] = ()  # empty for real data


@dataclass(frozen=True)
class Task:
    """N questions answered in one episode, positionally."""

    id: str
    items: tuple[QAItem, ...]
    prompt: str | None = None  # the prompt stored with the task (MEM1's parquet); None: built from the questions

    @property
    def questions(self) -> list[str]:
        return [item.question for item in self.items]

    @property
    def golds(self) -> list[tuple[str, ...]]:
        return [item.answers for item in self.items]

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Composition:
    """How a pool of questions becomes tasks."""

    n: int  # questions per task
    seed: int = 0  # shuffling seed; the same seed gives the same tasks everywhere
    mix_sources: bool = True  # False: every task draws from one source only (as the original)
    shuffle: bool = True  # False: keep file order (consecutive blocks, as the original)
    prefix: str = field(default="task")

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"Composition.n must be >= 1, got {self.n}")


def compose(items: Sequence[QAItem], spec: Composition) -> list[Task]:
    """Group ``items`` into ``len(items) // n`` tasks of ``n`` questions (the remainder is dropped).

    Every item is used at most once, so iterating the result visits each evaluation question once.
    """
    if spec.mix_sources:
        groups = [list(items)]
    else:
        by_source: dict[str, list[QAItem]] = {}
        for item in items:
            by_source.setdefault(item.source, []).append(item)
        groups = [by_source[s] for s in sorted(by_source)]
    rng = np.random.default_rng(spec.seed)
    tasks: list[Task] = []
    for group in groups:
        order = rng.permutation(len(group)) if spec.shuffle else np.arange(len(group))
        usable = len(group) - len(group) % spec.n
        for start in range(0, usable, spec.n):
            chunk = tuple(group[i] for i in order[start : start + spec.n])
            tasks.append(Task(f"{spec.prefix}-n{spec.n}-{len(tasks)}", chunk))
    return tasks


def iter_tasks(tasks: Sequence[Task]) -> Iterator[tuple[int, Task]]:
    """Every task exactly once, with the ``task_index`` that ``reset(options=...)`` accepts."""
    yield from enumerate(tasks)
