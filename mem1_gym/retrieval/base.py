"""The retrieval contract: passages (:class:`Doc`), the batched :class:`Retriever` interface, the corpus.

Corpus format (Search-R1 / wiki-18): JSON lines ``{"id": "0", "contents": "\\"Title\\"\\ntext"}``;
the first line of ``contents`` is the title *with* its quotes, the rest is the passage text.

Query cost is bounded by :func:`weighted_terms` (issue 21): the BM25 backends score each distinct
term of a query once, weighted by how often it occurs, and at most ``max_query_terms`` distinct
terms (default :data:`MAX_QUERY_TERMS`).
"""

from __future__ import annotations

import abc
import gzip
import itertools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Iterable, Iterator, Sequence, TypeVar

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


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def iter_corpus(path: str | Path) -> Iterator[tuple[str, str]]:
    """Yield ``(id, contents)`` from a corpus jsonl (optionally ``.gz``), with errors that name the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"corpus not found at {path}; pass corpus_path= a Search-R1-format jsonl "
            f"({{\"id\", \"contents\"}} per line), or omit it to use the embedded synthetic world"
        )
    with _open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                yield str(row["id"]), row["contents"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise RetrievalError(
                    f"corpus {path} line {line_no} is not a {{\"id\", \"contents\"}} JSON object ({err}); "
                    f"fix or regenerate the file"
                ) from err


class Corpus:
    """All passages of a corpus in memory, addressable by row (index backends store rows).

    Built indexes read passages through :class:`~mem1_gym.retrieval.docstore.DocStore` instead
    (same ``doc(row)``/``len``/``path``, memory-mapped); this class remains for builds that need
    every passage at once (bm25s, dense encoding), the mini-web and indexes built elsewhere."""

    def __init__(self, ids: list[str], contents: list[str], path: Path | None = None):
        if len(ids) != len(contents):
            raise ValueError("ids and contents must have the same length")
        self.ids = ids
        self.contents = contents
        self.path = path

    @classmethod
    def load(cls, path: str | Path) -> "Corpus":
        ids, contents = [], []
        for doc_id, text in iter_corpus(path):
            ids.append(doc_id)
            contents.append(text)
        if not ids:
            raise RetrievalError(f"corpus {path} is empty; it needs at least one {{\"id\", \"contents\"}} line")
        return cls(ids, contents, Path(path))

    def __len__(self) -> int:
        return len(self.ids)

    def doc(self, row: int, score: float | None = None) -> Doc:
        return Doc.from_contents(self.ids[row], self.contents[row], score)
