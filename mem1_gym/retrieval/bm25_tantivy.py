"""BM25 at wiki-18 scale without Java: `tantivy` (the Rust engine's official Python bindings).

tantivy keeps its index in memory-mapped segments and indexes in a bounded writer heap, so neither
the build nor the loaded index grows with the corpus in RAM (issue 20). Two things differ from
Lucene and are handled here:

* **Scoring.** tantivy's BM25 has k1=1.2, b=0.75 built in; the bindings cannot change them. So
  tantivy only proposes ``candidates`` passages per query (its own BM25 over the same terms), and
  those are re-scored exactly as Lucene's ``BM25Similarity`` with k1=0.9, b=0.4 (pyserini's and
  Search-R1's setting): ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))`` with ``df`` from tantivy,
  ``tf / (tf + k1 (1 - b + b dl / avgdl))`` with Lucene's lossy one-byte document length, in
  float32. The candidates' term counts come from ``terms.txt``, each passage's analysed terms on
  one line (memory-mapped, ~80% of the corpus size on disk): re-analysing their text instead cost
  ~200 us per candidate, 27 ms per query at 100 candidates (measured on 2 busy cores).
* **Analysis.** tantivy's tokenizers are not Lucene's English analyzer, so passages are analysed
  here (:func:`lucene_terms`: UAX#29-like words, possessive ``'s`` dropped, lowercase, Lucene's 33
  English stopwords, Porter stemming as Lucene's ``PorterStemFilter``) and tantivy indexes the
  resulting terms split on spaces. Queries go through the same function.
"""

from __future__ import annotations

import array
import functools
import json
import mmap
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mem1_gym.retrieval.base import (
    MAX_QUERY_TERMS,
    Doc,
    RetrievalError,
    Retriever,
    check_bm25_parameters,
    weighted_terms,
)

# k1, b and candidates act at search time (the re-scoring), so none needs a rebuild.
BUILD_PARAMS: tuple[str, ...] = ()
ANALYZER = "lucene-english-v1"  # recorded with the index: a changed analyzer needs a rebuild
INDEX_SUBDIR = "tantivy"  # tantivy writes its own meta.json; ours lives one level up
_PARAMS_FILE = "mem1_tantivy.json"
# Line i of terms.txt is [o[i], o[i+1]) with N + 1 offsets; each term has its own spaces around it
# (" a  b  c "), so ``line.count(b" a ")`` is term a's frequency, one C call per query term.
TERMS_FILE, TERM_OFFSETS_FILE = "terms.txt", "terms_offsets.u64"
_FLUSH = 1 << 17  # offsets buffered before a write
_TOKENIZER = "mem1_terms"
# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET.
_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)
# Word boundaries close to Lucene's StandardTokenizer (UAX#29): letters joined by ' . : (U.S,
# o'neil), digits joined by , . ; (1,000 and 3.5); anything else splits.
_WORD_RE = re.compile(r"\w+(?:(?:(?<=[^\W\d_])[.'’:](?=[^\W\d_])|(?<=\d)[.,;'’](?=\d))\w+)*")
_POSSESSIVE_RE = re.compile(r"['’]s\b", re.IGNORECASE)


@dataclass(frozen=True)
class TantivyConfig:
    """Options of the tantivy backend."""

    k1: float = 0.9
    """Term-frequency saturation of the re-scoring (Lucene's default, as pyserini)."""
    b: float = 0.4
    """Document-length normalisation of the re-scoring, in [0, 1] (Lucene's default)."""
    candidates: int = 30
    """Passages per query that tantivy proposes (by its own k1=1.2, b=0.75) and that are re-scored;
    at least ``k``. On the 20k synthetic world agreement with pyserini stops rising at 20 (every
    remaining difference an exact tie); each candidate costs ~10 us."""
    heap_mb: int = 256
    """Writer memory budget in MiB: bounds the build's index memory whatever the corpus size."""
    threads: int = 2
    """tantivy indexing threads (each needs at least 15 MiB of the heap), and threads that search
    the queries of a batch (tantivy releases the GIL while it searches: 1.85x on 2 cores)."""
    max_query_terms: int = MAX_QUERY_TERMS
    """Distinct terms of a query that are scored (the first ones); bounds the cost of a query."""

    def __post_init__(self) -> None:
        check_bm25_parameters(self.k1, self.b)
        for name in ("candidates", "threads", "max_query_terms"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.heap_mb < 15 * self.threads:
            raise ValueError(
                f"heap_mb must be >= 15 per thread (tantivy's minimum), got {self.heap_mb} for {self.threads} threads"
            )


def _import_tantivy():
    try:
        import tantivy
    except ImportError as err:
        raise RetrievalError("the tantivy backend needs tantivy: `pip install tantivy`") from err
    return tantivy


@functools.cache
def _porter():
    import Stemmer

    return Stemmer.Stemmer("porter")  # Lucene's PorterStemFilter is the original Porter, not Snowball's


def lucene_terms(text: str) -> list[str]:
    """The terms Lucene's English analyzer (pyserini's default) makes of ``text``, approximately:
    CJK runs stay one word here where Lucene splits each ideograph."""
    words = [w for w in _WORD_RE.findall(_POSSESSIVE_RE.sub("", text).lower()) if w not in _STOPWORDS]
    return _porter().stemWords(words)


def _lucene_length(n_terms: int) -> int:
    """A document length as Lucene stores it, one byte (``SmallFloat.intToByte4``) and back: exact
    below 40, then 4 significant bits. Scores depend on it, so exact lengths rank differently."""
    if n_terms < 24:  # SmallFloat's NUM_FREE_VALUES
        return n_terms
    rest = n_terms - 24
    if rest < 8:
        return n_terms
    shift = rest.bit_length() - 4
    return 24 + (((rest >> shift) & 0x07 | 0x08) << shift)


def _analyzer(tantivy):
    return tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()


def _schema(tantivy):
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("body", stored=False, tokenizer_name=_TOKENIZER, index_option="freq")
    builder.add_unsigned_field("row", stored=False, fast=True, indexed=False)
    return builder.build()


def build_tantivy_index(passages: Iterable[str], out_dir: str | Path, config: TantivyConfig = TantivyConfig()) -> dict:
    """Index ``passages`` (contents, in corpus row order) into ``out_dir``; return the build parameters.

    Memory: tantivy's writer flushes a segment whenever ``heap_mb`` is used and merges segments on
    disk, so the build needs about ``heap_mb`` plus one passage at a time, whatever the corpus size.
    """
    tantivy = _import_tantivy()
    out_dir = Path(out_dir)
    index_dir = out_dir / INDEX_SUBDIR
    index_dir.mkdir()
    index = tantivy.Index(_schema(tantivy), path=str(index_dir))
    index.register_tokenizer(_TOKENIZER, _analyzer(tantivy))
    writer = index.writer(heap_size=config.heap_mb * 2**20, num_threads=config.threads)
    n_docs = n_terms = 0
    offsets = array.array("Q", [0])
    with open(out_dir / TERMS_FILE, "wb") as terms_file, open(out_dir / TERM_OFFSETS_FILE, "wb") as offsets_file:
        try:
            for row, contents in enumerate(passages):
                terms = lucene_terms(contents)
                line = " ".join(terms)
                n_terms += len(terms)
                doc = tantivy.Document()
                doc.add_text("body", line)
                doc.add_unsigned("row", row)
                writer.add_document(doc)
                encoded = b" %s \n" % "  ".join(terms).encode()
                terms_file.write(encoded)
                offsets.append(offsets[-1] + len(encoded))
                if len(offsets) >= _FLUSH:
                    offsets_file.write(offsets[:-1].tobytes())
                    offsets = offsets[-1:]
                n_docs += 1
        except BaseException:
            writer.rollback()  # stops the indexing threads before the caller deletes the folder
            raise
        offsets_file.write(offsets.tobytes())
    writer.commit()
    writer.wait_merging_threads()
    stats = {"n_docs": n_docs, "avgdl": n_terms / max(n_docs, 1), "analyzer": ANALYZER, "k1": config.k1, "b": config.b}
    (out_dir / _PARAMS_FILE).write_text(json.dumps(stats))
    params = asdict(config)
    for name in ("max_query_terms", "candidates"):  # limits of the searcher, not of the index
        del params[name]
    return {**params, "analyzer": ANALYZER}


class TantivyRetriever(Retriever):
    """Lucene-exact BM25 (k1, b) over tantivy's candidates; passages read from a ``DocStore``."""

    name = "tantivy"

    def __init__(self, index_dir: str | Path, store, config: TantivyConfig = TantivyConfig()):
        tantivy = _import_tantivy()
        self.index_dir = Path(index_dir)
        self.config = config
        self._store = store
        stats = json.loads((self.index_dir / _PARAMS_FILE).read_text())
        if stats["analyzer"] != ANALYZER:
            raise RetrievalError(
                f"the tantivy index at {self.index_dir} was analysed with {stats['analyzer']}, this mem1-gym uses "
                f"{ANALYZER}; rebuild it with `mem1-gym build-index --backend tantivy`"
            )
        if stats["n_docs"] != len(store):
            raise RetrievalError(
                f"the tantivy index at {self.index_dir} has {stats['n_docs']} rows but its corpus {store.path} has "
                f"{len(store)}; the corpus changed since the index was built"
            )
        self._tantivy = tantivy
        index = tantivy.Index.open(str(self.index_dir / INDEX_SUBDIR))
        index.register_tokenizer(_TOKENIZER, _analyzer(tantivy))
        self._schema = index.schema
        self._searcher = index.searcher()
        self._n_docs = self._searcher.num_docs
        self._avgdl = float(stats["avgdl"])
        # 1 / (k1 (1 - b + b dl / avgdl)) per passage length, from Lucene's one-byte length.
        self._norm_inverse: dict[int, float] = {}
        self._term_offsets = np.memmap(self.index_dir / TERM_OFFSETS_FILE, dtype=np.uint64, mode="r")
        with open(self.index_dir / TERMS_FILE, "rb") as f:
            self._terms = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    @classmethod
    def load(cls, index_dir: str | Path, store, **overrides) -> "TantivyRetriever":
        """Open an index written by :func:`build_tantivy_index`; ``overrides`` change search-time
        options (k1, b, candidates, max_query_terms)."""
        stats = json.loads((Path(index_dir) / _PARAMS_FILE).read_text())
        return cls(index_dir, store, TantivyConfig(**{"k1": stats["k1"], "b": stats["b"], **overrides}))

    def search(self, queries: Sequence[str], k: int = 3) -> list[list[Doc]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self._searcher is None:
            raise RetrievalError(f"the tantivy searcher on {self.index_dir} is closed")
        if self.config.threads == 1 or len(queries) < 2:
            return [self._search_one(query, k) for query in queries]
        return list(self._pool.map(functools.partial(self._search_one, k=k), queries))

    @functools.cached_property
    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.config.threads, thread_name_prefix="tantivy-search")

    def _search_one(self, query: str, k: int) -> list[Doc]:
        terms = weighted_terms(lucene_terms(query), self.config.max_query_terms)
        if not terms:
            return []
        tantivy = self._tantivy
        clauses = []
        for term, count in terms.items():
            clause = tantivy.Query.term_query(self._schema, "body", term)
            if count > 1:
                clause = tantivy.Query.boost_query(clause, float(count))
            clauses.append((tantivy.Occur.Should, clause))
        hits = self._searcher.search(tantivy.Query.boolean_query(clauses), max(k, self.config.candidates)).hits
        if not hits:
            return []
        rows = np.asarray(self._searcher.fast_field_values("row", [address for _, address in hits]), dtype=np.int64)
        weights = {b" %s " % t.encode(): float(np.float32(n * self._idf(t))) for t, n in terms.items()}
        starts, ends = self._term_offsets[rows].tolist(), (self._term_offsets[rows + 1] - 1).tolist()
        scored = sorted(  # best first; ties by corpus row, like the other backends
            (-self._score(self._terms[a:b], weights), row) for a, b, row in zip(starts, ends, rows.tolist())
        )
        return [self._store.doc(row, float(-neg)) for neg, row in scored[:k]]

    def _idf(self, term: str) -> np.float32:
        df = self._searcher.doc_freq("body", term)
        return np.float32(np.log1p((self._n_docs - df + 0.5) / (df + 0.5)))

    def _score(self, line: bytes, weights: dict[bytes, float]) -> float:
        """Lucene's BM25Scorer, ``weight - weight / (1 + tf * normInverse)`` summed over the terms,
        from float32 weights and norms, rounded to float32 as Lucene returns it. The arithmetic is
        in Python floats: numpy scalars cost ~1 us per operation, most of a query's time."""
        n_terms = line.count(b" ") // 2
        inverse = self._norm_inverse.get(n_terms)
        if inverse is None:
            k1, b, length = self.config.k1, self.config.b, _lucene_length(n_terms)
            inverse = self._norm_inverse[n_terms] = float(np.float32(1 / (k1 * ((1 - b) + b * length / self._avgdl))))
        total = 0.0
        for term, weight in weights.items():
            tf = line.count(term)
            if tf:
                total += weight - weight / (1.0 + tf * inverse)
        return float(np.float32(total))

    def close(self) -> None:
        if "_pool" in self.__dict__:
            self._pool.shutdown()
        self._searcher = None
        if self._store is not None:
            self._terms.close()
            self._store.close()
            self._store = None
