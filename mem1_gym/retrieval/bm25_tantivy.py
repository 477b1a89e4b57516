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
* **Speed on full questions.** Their common words ("what", "year": half of all passages) were 9/10
  of a question's time at 1M passages: tantivy cannot skip postings blocks of a word that matches
  in every block. So only the rarer terms choose the candidates (tantivy walks their postings and
  seeks into the common ones, which still rank them), and when the k-th re-scored passage does not
  beat the sum of the common terms' weights, which bounds a passage holding only those, the query
  is asked again with every term (see ``common_share``): 152 -> 983 full questions/s at 1M.
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
    common_share: float = 0.4
    """Share of a query's total term weight that its lowest-weight terms may hold and still only
    rank tantivy's candidates, not choose them (0: every term chooses). At 0.4 a full question at
    1M passages took 1/6 of the time and no synthetic query needed the exhaustive retry; 0.5 retried
    82% of the two-word hop queries at 100k, 0.6 half of the full questions at 1M."""

    def __post_init__(self) -> None:
        check_bm25_parameters(self.k1, self.b)
        if not 0 <= self.common_share < 1:
            raise ValueError(f"common_share must be in [0, 1), got {self.common_share}")
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


def _common_terms(weights: dict[str, float], share: float) -> set[str]:
    """The query terms tantivy need not see to choose candidates: the lowest-weight ones whose
    weights sum to at most ``share`` of all. A passage holding none of the others scores below that
    sum, under the passages that hold the rare terms, and the caller checks it did (else it asks
    again with every term). Common words ("year" in half the passages) are most of a full question's
    postings; tantivy's block-max pruning barely skips them because every block has a match."""
    budget, total, common = share * sum(weights.values()), 0.0, set()
    for term in sorted(weights, key=weights.get):
        total += weights[term]
        if total > budget:
            break
        common.add(term)
    return common


def _doc_id(doc: Doc) -> str:
    return doc.id


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
    for name in ("max_query_terms", "candidates", "common_share"):  # options of the searcher, not of the index
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
        counts = weighted_terms(lucene_terms(query), self.config.max_query_terms)
        dfs = {term: self._searcher.doc_freq("body", term) for term in counts}
        terms = {term: count for term, count in counts.items() if dfs[term]}  # the others match nothing
        if not terms:
            return []
        # Lucene's BM25 weight (count x idf) bounds what a term adds to any passage's score.
        weights = {term: float(np.float32(count * self._idf(dfs[term]))) for term, count in terms.items()}
        common = _common_terms(weights, self.config.common_share)
        scored = self._rescore(self._propose(terms, common, k), weights)
        # 1e-6: the float32 rounding of a score of only common terms could just reach their sum.
        if common and (len(scored) < k or -scored[k - 1][0] <= sum(weights[t] for t in common) * (1 + 1e-6)):
            # A passage with only common terms could still reach the top k: propose from all passages.
            scored = self._rescore(self._propose(terms, set(), k), weights)
        return self._ties_by_id(scored, k)

    def _ties_by_id(self, scored: list[tuple[float, int]], k: int) -> list[Doc]:
        """The best ``k`` of ``scored`` (-score, row) as Docs, passages of equal score
        ordered by their id as a string, as Lucene (Anserini) orders them: the answer for k is the
        prefix of the answer for a larger k, and a tie at the k-th place keeps pyserini's passage.
        Passages are read only for the score groups that reach into the top k."""
        best: list[Doc] = []
        start = 0
        while len(best) < k and start < len(scored):
            end = start + 1
            while end < len(scored) and scored[end][0] == scored[start][0]:
                end += 1
            best.extend(sorted((self._store.doc(row, float(-neg)) for neg, row in scored[start:end]), key=_doc_id))
            start = end
        return best[:k]

    def _propose(self, terms: dict[str, int], common: set[str], k: int) -> list[int]:
        """Corpus rows of tantivy's best ``candidates`` passages (its own BM25 over all ``terms``)
        among those that hold a term not in ``common``. tantivy then walks only the rare terms'
        postings and skips through the common ones; ``count=False`` lets it skip blocks too."""
        tantivy = self._tantivy
        rare, frequent = [], []
        for term, count in terms.items():
            clause = tantivy.Query.term_query(self._schema, "body", term)
            if count > 1:
                clause = tantivy.Query.boost_query(clause, float(count))
            (frequent if term in common else rare).append((tantivy.Occur.Should, clause))
        query = tantivy.Query.boolean_query(rare)
        if frequent:
            query = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), *frequent])
        hits = self._searcher.search(query, max(k, self.config.candidates), count=False).hits
        return self._searcher.fast_field_values("row", [address for _, address in hits]) if hits else []

    def _rescore(self, rows: list[int], weights: dict[str, float]) -> list[tuple[float, int]]:
        """(-score, row) of ``rows`` by Lucene's BM25Scorer over all query terms, best first (ties by
        corpus row here, by id in :meth:`_ties_by_id`): ``weight - weight / (1 + tf * normInverse)`` summed over
        the terms from float32 weights and norms, rounded to float32 as Lucene returns it. The loop
        is plain Python floats over ``bytes.count``: numpy scalars cost ~1 us per operation."""
        if not rows:
            return []
        needles = [(b" %s " % t.encode(), w) for t, w in weights.items()]
        index = np.asarray(rows, dtype=np.int64)
        starts, ends = self._term_offsets[index].tolist(), (self._term_offsets[index + 1] - 1).tolist()
        lines, norm_inverse, totals = self._terms, self._norm_inverse, []
        for a, b in zip(starts, ends):
            line = lines[a:b]
            n_terms = line.count(b" ") >> 1
            inverse = norm_inverse.get(n_terms) or self._norm_inverse_of(n_terms)
            total = 0.0
            for needle, weight in needles:
                tf = line.count(needle)
                if tf:
                    total += weight - weight / (1.0 + tf * inverse)
            totals.append(total)
        return sorted(zip((-score for score in np.asarray(totals, dtype=np.float32).tolist()), rows))

    def _idf(self, df: int) -> np.float32:
        return np.float32(np.log1p((self._n_docs - df + 0.5) / (df + 0.5)))

    def _norm_inverse_of(self, n_terms: int) -> float:
        """1 / (k1 (1 - b + b dl / avgdl)) in float32 for a passage of ``n_terms``, cached."""
        k1, b, length = self.config.k1, self.config.b, _lucene_length(n_terms)
        inverse = self._norm_inverse[n_terms] = float(np.float32(1 / (k1 * ((1 - b) + b * length / self._avgdl))))
        return inverse

    def close(self) -> None:
        if "_pool" in self.__dict__:
            self._pool.shutdown()
        self._searcher = None
        if self._store is not None:
            self._terms.close()
            self._store.close()
            self._store = None
