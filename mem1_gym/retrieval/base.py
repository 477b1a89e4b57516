"""The retrieval contract: passages (:class:`Doc`), the batched :class:`Retriever` interface, the corpus.

Corpus format (Search-R1 / wiki-18): JSON lines ``{"id": "0", "contents": "\\"Title\\"\\ntext"}``;
the first line of ``contents`` is the title *with* its quotes, the rest is the passage text.

Query cost is bounded by :func:`weighted_terms` (issue 21): the BM25 backends score each distinct
term of a query once, weighted by how often it occurs, and at most ``max_query_terms`` distinct
terms (default :data:`MAX_QUERY_TERMS`).
"""

from __future__ import annotations

import abc
import functools
import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Iterable, Sequence, TypeVar

_T = TypeVar("_T", bound=Hashable)

MAX_QUERY_TERMS = 64
"""Distinct terms of one query that a BM25 backend scores (``max_query_terms``). A multi-hop
question has 5 to 20 content words; 64 keeps a pasted paragraph's first ~100 words and bounds the
postings read per query (a 1,000-character query of ~150 distinct common words: 36 to 60 ms on the
embedded world before the cap, 2 to 13 ms after, measured on 2 busy cores)."""


class RetrievalError(RuntimeError):
    """A retrieval backend, index or server failed; the message names the cause and the fix."""


@dataclass(frozen=True)
class Doc:
    """One retrieved passage."""

    id: str
    title: str  # first line of ``contents``, quotes kept: '"Evan Morris"'
    text: str  # the rest of ``contents``
    score: float | None = None

    @property
    def contents(self) -> str:
        return f"{self.title}\n{self.text}"

    @classmethod
    def from_contents(cls, doc_id: str, contents: str, score: float | None = None) -> "Doc":
        title, _, text = contents.partition("\n")
        return cls(str(doc_id), title, text, score)


class Retriever(abc.ABC):
    """Batched search: one list of at most ``k`` docs per query, best first."""

    name: str = "retriever"

    @abc.abstractmethod
    def search(self, queries: Sequence[str], k: int = 3) -> list[list[Doc]]: ...

    def close(self) -> None:
        """Release files, JVMs, sockets. Idempotent."""

    def __enter__(self) -> "Retriever":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_bm25_parameters(k1: float, b: float) -> None:
    """BM25's k1 >= 0 and b in [0, 1], with Lucene's values (what Search-R1 searches with) in the message."""
    if k1 < 0:
        raise ValueError(f"k1 must be >= 0 (Lucene uses 0.9), got {k1}")
    if not 0.0 <= b <= 1.0:
        raise ValueError(f"b must be in [0, 1] (Lucene uses 0.4), got {b}")


def weighted_terms(terms: Iterable[_T], max_terms: int = MAX_QUERY_TERMS) -> dict[_T, int]:
    """Each distinct term with its number of occurrences, in order of first occurrence, the first
    ``max_terms`` distinct terms only.

    Scoring a distinct term once with weight ``n`` is exactly scoring its ``n`` repeats (BM25 sums
    over query terms; Anserini, hence pyserini and Search-R1's BM25 server, boosts each distinct
    term by its count), but reads its postings once: "year" 4,000 times took 14 s and 1.4 GB before.
    """
    if max_terms < 1:
        raise ValueError(f"max_terms must be >= 1, got {max_terms}")
    return dict(itertools.islice(Counter(terms).items(), max_terms))


class Corpus:
    """All passages of a small corpus in memory, addressable by row (index backends store rows).

    For tests and corpora made in code. Every index, server and the mini-web read passages through
    a memory-mapped :class:`~mem1_gym.retrieval.docstore.DocStore` instead (the same ``doc(row)``,
    ``row_of(id)``, ``len`` and ``path``): no library code path loads a corpus file this way."""

    def __init__(self, ids: list[str], contents: list[str], path: Path | None = None):
        if len(ids) != len(contents):
            raise ValueError("ids and contents must have the same length")
        self.ids = ids
        self.contents = contents
        self.path = path

    @classmethod
    def load(cls, path: str | Path) -> "Corpus":
        from mem1_gym.retrieval.docstore import iter_corpus  # docstore imports this module

        ids, contents = [], []
        for doc_id, text in iter_corpus(path):
            ids.append(doc_id)
            contents.append(text)
        return cls(ids, contents, Path(path))

    def __len__(self) -> int:
        return len(self.ids)

    def doc(self, row: int, score: float | None = None) -> Doc:
        return Doc.from_contents(self.ids[row], self.contents[row], score)

    def row_of(self, doc_id: str) -> int | None:
        return self._rows.get(str(doc_id))

    @functools.cached_property
    def _rows(self) -> dict[str, int]:
        return {doc_id: row for row, doc_id in enumerate(self.ids)}
