"""The default backend: BM25 with `bm25s`, in process, numpy only, saved as a directory.

Scoring is Lucene's BM25 with Lucene's defaults k1=0.9, b=0.4, the values pyserini (and so
Search-R1's BM25 server, reference/search-r1.md §3.3) uses, so that this backend and the pyserini
backend rank passages alike. Row ``i`` of the index is row ``i`` of the corpus.

Memory: the token ids of every passage and the score matrix are in RAM while building (bm25s'
design, hence :func:`check_fits_in_memory`), the passage texts never: the build tokenizes the
corpus stream one passage at a time, and search reads the passages it returns from the
memory-mapped :class:`~mem1_gym.retrieval.docstore.DocStore`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mem1_gym.retrieval.base import (
    MAX_QUERY_TERMS,
    Corpus,
    Doc,
    RetrievalError,
    Retriever,
    check_bm25_parameters,
    weighted_terms,
)
from mem1_gym.retrieval.docstore import DocStore

# The options fixed when the index is built; a different value at load time needs a rebuild.
BUILD_PARAMS = ("k1", "b", "stemmer")
_PARAMS_FILE = "mem1_bm25.json"
# Words of one character count, as in Lucene's analyzer: bm25s' default pattern (\w\w+) drops them,
# and with them the "7" of "Apollo 7" and the initials of names.
_TOKEN_PATTERN = r"(?u)\b\w+\b"
_TOKEN_RE = re.compile(_TOKEN_PATTERN)
# From one posting read per 20 passages of the corpus, scores are summed into an array over the
# corpus instead of sorting the postings (np.unique): the two cost the same near that ratio on 20k
# and on 21M passages (measured).
_DENSE_RATIO = 20
# Build peak per byte of corpus jsonl: 3.3 GB for the synthetic world's 1M passages (570 MB of
# jsonl; SETUP-NOTES, Scale), rounded up. wiki-18's 14 GB would need ~85 GB.
BUILD_BYTES_PER_CORPUS_BYTE = 6.0
_GZIP_RATIO = 3.5  # a .gz corpus is sized by its compressed bytes; text jsonl compresses ~3.5x
_MEMORY_HEADROOM = 0.8  # the share of available memory a build may plan to use


@functools.cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN  # what bm25s.tokenize(stopwords="en") removes

    return frozenset(STOPWORDS_EN)


@dataclass(frozen=True)
class BM25Config:
    """Options of the bm25s backend."""

    k1: float = 0.9
    """Term-frequency saturation (Lucene's default; built into the stored scores)."""
    b: float = 0.4
    """Document-length normalisation in [0, 1] (Lucene's default; built into the stored scores)."""
    stemmer: str = "english"
    """Stemming: "english" (Snowball, PyStemmer: a core dependency so that every machine builds the
    same index), "none", or "auto" (english when PyStemmer is installed)."""
    n_threads: int = 0
    """Threads for batched search; 0 scores queries in the calling thread."""
    max_query_terms: int = MAX_QUERY_TERMS
    """Distinct index terms of a query that are scored (the first ones); bounds the cost of a query."""

    def __post_init__(self) -> None:
        check_bm25_parameters(self.k1, self.b)
        if self.stemmer not in ("auto", "english", "none"):
            raise ValueError(f'stemmer must be "auto", "english" or "none", got {self.stemmer!r}')
        if self.n_threads < 0:
            raise ValueError(f"n_threads must be >= 0, got {self.n_threads}")
        if self.max_query_terms < 1:
            raise ValueError(f"max_query_terms must be >= 1, got {self.max_query_terms}")

    def resolved(self) -> "BM25Config":
        """The same config with ``stemmer="auto"`` replaced by what this machine can do."""
        if self.stemmer != "auto":
            return self
        try:
            import Stemmer  # noqa: F401  (PyStemmer is optional; without it we index unstemmed)
        except ImportError:
            return dataclasses.replace(self, stemmer="none")
        return dataclasses.replace(self, stemmer="english")


def _top_k(rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best positive scores, by score descending, then corpus row ascending.

    Every passage tied with the k-th best score is a candidate, not only those ``argpartition``
    happens to keep, so the answer for ``k`` is always the prefix of the answer for a larger ``k``:
    the server searches a merged batch at its largest ``k`` and cuts each request's answer from it.
    """
    if len(scores) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]  # the k-th highest score
        candidates = np.flatnonzero(scores >= kth)  # exact float comparison: ties are equal bits
    else:
        candidates = np.arange(len(scores))
    best = candidates[np.lexsort((rows[candidates], -scores[candidates]))][:k]
    return best[scores[best] > 0]

def available_memory() -> int:
    """Bytes the system can give a new allocation without swapping (Linux ``MemAvailable``)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    return int(psutil.virtual_memory().available)


def check_fits_in_memory(corpus_path: str | Path) -> None:
    """Refuse (before reading it) a corpus whose bm25s build would not fit in the available memory:
    bm25s holds the corpus text, its tokens and the score matrix in RAM, and a build that swaps
    runs for days instead of failing."""
    corpus_path = Path(corpus_path)
    size = corpus_path.stat().st_size * (_GZIP_RATIO if corpus_path.suffix == ".gz" else 1.0)
    need, available = size * BUILD_BYTES_PER_CORPUS_BYTE, available_memory()
    if need > _MEMORY_HEADROOM * available:
        raise RetrievalError(
            f"the bm25s index of {corpus_path} would need about {need / 2**30:.1f} GB to build, and "
            f"{available / 2**30:.1f} GB is available; bm25s holds the whole index in memory. Use the "
            f"memory-mapped backends instead: retriever=\"tantivy\" (`mem1-gym build-index --backend tantivy`, "
            f"no Java) or retriever=\"pyserini\" (Lucene, needs `pip install \"mem1-gym[pyserini]\"`)"
        )


def build_bm25_index(passages: Iterable[tuple[str, str]], out_dir: str | Path, config: BM25Config) -> dict:
    """Index the ``(id, contents)`` stream ``passages`` into ``out_dir``; return the build parameters.
    The passages are read once, one at a time, and their text is not kept."""
    config = config.resolved()
    model = _index(_tokenize((contents for _, contents in passages), config), config)
    return BM25Retriever(model, None, config).save(out_dir)


def _tokenize(texts: Iterable[str], config: BM25Config) -> tuple[list[list[int]], dict[str, int]]:
    """(term ids of each text, vocabulary): what ``bm25s.tokenize`` returns (lowercase,
    :data:`_TOKEN_PATTERN`, English stopwords removed, then stemmed), from a stream of texts.

    The same steps as bm25s (each distinct word stemmed once, at the end, then the ids mapped in
    place), but bm25s' tokenizer takes a list of all the texts; here each text is freed once split.
    Term ids come in another order than bm25s' (a set's), which changes no score.
    """
    stopwords = _stopwords()
    word_ids: dict[str, int] = {}  # word as written -> its id; the ints are shared, not one per token
    token_ids = [
        [word_ids.setdefault(w, len(word_ids)) for w in _TOKEN_RE.findall(text.lower()) if w not in stopwords]
        for text in texts
    ]
    stem = _stemmer(config.stemmer)
    words = list(word_ids)
    vocab: dict[str, int] = {}
    term_of = [vocab.setdefault(term, len(vocab)) for term in (stem.stemWords(words) if stem else words)]
    for ids in token_ids:
        ids[:] = [term_of[i] for i in ids]
    return token_ids, vocab


def _index(tokens: tuple[list[list[int]], dict[str, int]], config: BM25Config):
    import bm25s

    model = bm25s.BM25(k1=config.k1, b=config.b, method="lucene")
    model.index(tokens, show_progress=False)
    return model


def _stemmer(name: str):
    if name == "none":
        return None
    try:
        import Stemmer
    except ImportError as err:
        raise RetrievalError(
            "this bm25s index was built with English stemming, which needs PyStemmer: "
            "`pip install PyStemmer`, or rebuild the index on this machine"
        ) from err
    return Stemmer.Stemmer(name)


class BM25Retriever(Retriever):
    """BM25 in memory (lowercase, English stopwords, optional stemming); passages are read by row
    from a :class:`~mem1_gym.retrieval.docstore.DocStore` (or a :class:`Corpus`)."""

    name = "bm25s"

    def __init__(self, model, corpus: DocStore | Corpus | None, config: BM25Config):
        if config.stemmer == "auto":
            raise ValueError("pass config.resolved(): the stemmer must be decided before indexing")
        self._model = model
        self._corpus = corpus
        self.config = config
        self._stem = _stemmer(config.stemmer)

    @classmethod
    def from_corpus(cls, corpus: Corpus, config: BM25Config = BM25Config()) -> "BM25Retriever":
        """Index an in-memory ``corpus`` (about 1 s per 100k short passages on 2 cores)."""
        config = config.resolved()
        texts = (corpus.doc(row).contents for row in range(len(corpus)))
        return cls(_index(_tokenize(texts, config), config), corpus, config)

    def save(self, out_dir: str | Path) -> dict:
        """Write the index into ``out_dir`` (the corpus is not copied); return its build parameters."""
        out_dir = Path(out_dir)
        self._model.save(str(out_dir), show_progress=False)
        params = asdict(self.config)
        del params["max_query_terms"]  # a limit of the searcher, not of the index (issue 21)
        (out_dir / _PARAMS_FILE).write_text(json.dumps(params))
        return params

    @classmethod
    def load(cls, index_dir: str | Path, corpus: DocStore | Corpus, **overrides) -> "BM25Retriever":
        """Load an index written by :meth:`save`; ``overrides`` may change search-time options."""
        import bm25s

        index_dir = Path(index_dir)
        params = json.loads((index_dir / _PARAMS_FILE).read_text())
        config = BM25Config(**{**params, **overrides})
        # Memory-mapped: the score matrix is read from the page cache, which every process serving
        # this index (`serve-retriever --workers N`) shares, instead of a private copy in each.
        model = bm25s.BM25.load(str(index_dir), show_progress=False, mmap=True)
        n_rows = int(model.scores["num_docs"])
        if n_rows != len(corpus):
            raise RetrievalError(
                f"bm25s index at {index_dir} has {n_rows} rows but the corpus {corpus.path} has {len(corpus)} "
                f"passages; the corpus changed since the index was built"
            )
        return cls(model, corpus, config)

    def search(self, queries: Sequence[str], k: int = 3) -> list[list[Doc]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return [self._search_one(query, k) for query in queries]

    def _search_one(self, query: str, k: int) -> list[Doc]:
        """Score only the passages that contain a query term.

        bm25s' own ``retrieve`` materialises a score for every passage and runs ``argpartition``
        over all of them: 0.35 ms per query at 20k passages, 1.7 ms at 100k, 95% of the search time
        (profiled). Reading the postings of the query terms from the stored CSC matrix and ranking
        only those is exact (a passage without a query term scores 0, and Lucene returns no hit for
        it either) and costs time in proportion to the postings, not the corpus.
        """
        terms = self.query_terms(query)
        if not terms:
            return []
        data, rows, indptr = self._postings
        spans = [(indptr[t], indptr[t + 1]) for t in terms]
        hits = np.concatenate([rows[a:b] for a, b in spans])
        # In float64, as bincount summed n float32 repeats: the scores equal scoring each repeat.
        weights = np.concatenate([np.multiply(data[a:b], n, dtype=np.float64)
                                  for (a, b), n in zip(spans, terms.values())])
        if len(terms) == 1:
            passages, scores = hits, weights
        elif len(hits) * _DENSE_RATIO >= len(self._corpus):
            # Common words: a score per passage costs O(postings + passages), sorting the postings
            # O(postings log postings): 1.8 ms against 75 ms for 400k postings over 20k passages.
            scores = np.bincount(hits, weights=weights, minlength=len(self._corpus))
            passages = np.flatnonzero(scores)  # sorted passage rows
            scores = scores[passages]
        else:
            passages, where = np.unique(hits, return_inverse=True)  # sorted passage rows
            scores = np.bincount(where, weights=weights)
        return [self._corpus.doc(int(passages[i]), float(scores[i])) for i in _top_k(passages, scores, k)]

    def query_terms(self, query: str) -> dict[int, int]:
        """The index's term ids of ``query`` with their counts, the first ``max_query_terms`` only.

        Tokenised exactly as bm25s tokenised the passages (lowercase, ``_TOKEN_PATTERN``, English
        stopwords removed, then stemmed). A term repeated ``n`` times is scored once with weight
        ``n``: the same scores as bm25s and Lucene, which add up every repeat (see
        :func:`~mem1_gym.retrieval.base.weighted_terms`).
        """
        words = [w for w in _TOKEN_RE.findall(query.lower()) if w not in _stopwords()]
        vocab = self._model.vocab_dict
        if self._stem is not None:
            distinct = list(dict.fromkeys(words))  # stemming is the slow part: each word once
            stems = dict(zip(distinct, self._stem.stemWords(distinct)))
            words = [stems[w] for w in words]
        return weighted_terms((vocab[w] for w in words if w in vocab), self.config.max_query_terms)

    @functools.cached_property
    def _postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, passage rows, term pointers): the column-compressed matrix bm25s stores."""
        stored = self._model.scores
        return np.asarray(stored["data"]), np.asarray(stored["indices"]), np.asarray(stored["indptr"])

