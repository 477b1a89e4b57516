"""Product search: BM25 (k1 = 0.9, b = 0.4) over the products, through mem1-gym's retrieval backends.

Each product becomes one passage of a Search-R1-format corpus, with WebShop's indexed text
(reference/webshop.md §4): ``lower(title + " " + description + " " + first bullet + " " + options)``.
The default backend is bm25s (in process, Snowball stemming); "pyserini" is Lucene's BM25 with its
English analyzer, the original's engine. Analyzers differ, so ranks can differ slightly between them.
A search returns at most 50 ASINs (``SEARCH_RETURN_N``), shown 10 per page.
"""

from __future__ import annotations

import functools
import json
import threading
from pathlib import Path

from mem1_gym.webshop.catalog import Catalog, Product

SEARCH_RETURN_N = 50
RESULTS_PER_PAGE = 10
_CACHE_SIZE = 4096


def indexed_text(product: Product) -> str:
    """The text the original indexes for a product (its ``contents`` field)."""
    options = ", and ".join(f"{name}: {', '.join(values)}" for name, values in product.options)
    first_bullet = product.bullet_points[0] if product.bullet_points else ""
    return f"{product.title} {product.description} {first_bullet} {options}".lower()


def write_corpus(catalog: Catalog, path: Path) -> Path:
    """Write the catalogue as a Search-R1 corpus (id = ASIN; the title line is empty so the title is
    not indexed twice). Rewritten only when absent; written to a temporary name and renamed."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": product.asin, "contents": '""\n' + indexed_text(product)}, ensure_ascii=False) + "\n" for product in catalog)
    tmp.replace(path)
    return path


class ProductSearch:
    """``search(keywords) -> [asin, ...]`` (best first, at most 50), cached per query."""

    def __init__(self, catalog: Catalog, corpus_path: Path, backend: str = "bm25s", index_dir: str | Path | None = None):
        from mem1_gym.retrieval import make_retriever

        self.catalog = catalog
        self.backend = backend
        self._retriever = make_retriever(backend, corpus_path=write_corpus(catalog, corpus_path), index_dir=index_dir)
        # The Flask server answers from several threads, and pyserini's searcher is not thread-safe.
        self._lock = threading.Lock()
        self._cached = functools.lru_cache(maxsize=_CACHE_SIZE)(self._search_uncached)

    def search(self, keywords: str) -> tuple[str, ...]:
        return self._cached(" ".join(keywords.lower().split()))

    def _search_uncached(self, query: str) -> tuple[str, ...]:
        if not query:
            return ()
        with self._lock:
            docs = self._retriever.search([query], SEARCH_RETURN_N)[0]
        # Hits outside the loaded catalogue are dropped, as the original does.
        return tuple(doc.id for doc in docs if doc.id in self.catalog)

    def close(self) -> None:
        self._retriever.close()
