"""Retrieval: one batched :class:`Retriever` interface over bm25s, tantivy, pyserini, FAISS and HTTP backends.

``make_retriever("bm25s", corpus_path=...)`` builds (once, cached) and opens an index;
``make_retriever("http://127.0.0.1:8013")`` talks to a Search-R1-format ``/retrieve`` server, which
``mem1-gym serve-retriever`` (or :func:`mem1_gym.retrieval.server.start_server`) runs over any backend.
Nothing heavy is imported here: each backend imports its library when first used.
"""

from mem1_gym.retrieval.base import Corpus, Doc, RetrievalError, Retriever
from mem1_gym.retrieval.build import BACKENDS, build_index, default_index_dir, load_retriever, make_retriever
from mem1_gym.retrieval.docstore import iter_corpus

__all__ = [
    "BACKENDS",
    "Corpus",
    "Doc",
    "RetrievalError",
    "Retriever",
    "build_index",
    "default_index_dir",
    "iter_corpus",
    "load_retriever",
    "make_retriever",
]
