"""The mini-web's site model: every corpus passage as an HTML page, linked, and searchable.

The offline stand-in for the web (DESIGN.md §10). :class:`MiniWebSite` holds no sockets; the
HTTP server in :mod:`mem1_gym.web.server` serves it.

* **Pages**: passage ``id`` of the corpus is ``/wiki/<id>`` (stable: it depends on the id only).
  A page looks like a small encyclopedia page, with the chrome a real page has (site navigation,
  a script, a style sheet, a footer) so that ``<open>`` exercises the same extraction as on the
  real web. It links to the other passages of its article ("Other sections") and to the pages
  whose titles its text mentions ("See also"; capitalised word sequences, longest match first).
* **Search**: BM25 over the corpus through :func:`mem1_gym.retrieval.make_retriever` (bm25s by
  default), answered in Serper's JSON shape ``{"organic": [{"title", "link", "snippet",
  "position"}]}``. Snippets are query-biased like a search engine's: the sentences that share the
  most words with the query, up to ``snippet_chars`` characters. Result links are absolute under
  ``public_url`` (``http://miniweb.test``, the address :class:`~mem1_gym.web.providers.MiniWebProvider`
  shows the agent), never under the Host header a request sent.
* **Limits** (issue 21), each a :class:`MiniWebConfig` field and a ``mem1-gym serve-miniweb`` flag:
  a search body of at most ``max_body_bytes`` (else 413), a query of at most ``max_query_chars``
  characters and ``num`` an integer in [1, ``max_results``] (else 422); the search backend scores
  at most :data:`~mem1_gym.retrieval.base.MAX_QUERY_TERMS` distinct terms of a query, each once.

Memory (issue 20): no passage text is held. Pages read their passage, its neighbours' titles and
the titles they link to from the corpus's memory-mapped :class:`~mem1_gym.retrieval.docstore.DocStore`;
the "See also" lookup goes through a map of title hashes to rows (16 bytes a passage, on disk next to
the docstore, built in one pass the first time the corpus is served).
"""

from __future__ import annotations

import array
import dataclasses
import html
import logging
import os
import re
import threading
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import numpy as np

from mem1_gym.retrieval.base import Corpus, Retriever, weighted_terms
from mem1_gym.retrieval.docstore import DocStore, HashRows, key_hash, open_docstore, sorted_hash_rows

_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MAX_TITLE_WORDS = 8  # longer titles are not looked for in running text
_NEIGHBOURS = 10  # other sections of an article are looked for this many rows either side
_MATCH_PREFIX = 5  # "independent" matches "independence": a cheap stand-in for stemming in snippets
TITLES_FILE = "miniweb_titles.u64"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiniWebConfig:
    """What the mini-web serves (``mem1-gym serve-miniweb`` flags, and the env's defaults)."""

    corpus_path: str | None = None
    """Search-R1-format corpus jsonl (wiki-18 or your own); None -> the embedded synthetic world."""
    backend: str = "bm25s"
    """Search backend over the corpus: "bm25s", "pyserini", "faiss-flat" or "faiss-hnsw"."""
    index_dir: str | None = None
    """Where the index lives or is built; None -> the cache directory keyed by the corpus."""
    snippet_chars: int = 240
    """Longest snippet per result (Google's are about 160; a few more keep a whole fact sentence)."""
    see_also: int = 12
    """Most "See also" links per page."""
    public_url: str = "http://miniweb.test"
    """Scheme and host of the result links: the reserved name (RFC 6761) that ``MiniWebProvider``
    sends as Host and shows the agent, whatever port serves it; keep it for the envs, whose
    ``<open>`` only opens links under it. A request's Host header is never copied into links (a
    client could make them point anywhere)."""
    max_body_bytes: int = 64 * 1024
    """Largest ``POST /search`` body (a query and a number); larger: HTTP 413."""
    max_query_chars: int = 2048
    """Longest query, in characters (Google's limit); longer: HTTP 422."""
    max_results: int = 100
    """Largest ``num`` (Serper's); larger, or not an integer: HTTP 422."""

    def resolved(self) -> "MiniWebConfig":
        """The same config with ``corpus_path=None`` replaced by the synthetic world's corpus."""
        if self.corpus_path is not None:
            return self
        from mem1_gym.data.synthetic import ensure_world

        return dataclasses.replace(self, corpus_path=str(ensure_world().corpus_path))

    def __post_init__(self) -> None:
        if self.snippet_chars < 20:
            raise ValueError(f"snippet_chars must be >= 20 so a snippet can hold a fact, got {self.snippet_chars}")
        if self.see_also < 0:
            raise ValueError(f"see_also must be >= 0, got {self.see_also}")
        parts = urlsplit(self.public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"public_url must be a scheme and host like http://miniweb.test, got {self.public_url!r}")
        for name in ("max_body_bytes", "max_query_chars", "max_results"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def _plain_title(title_line: str) -> str:
    return title_line.strip().strip('"').strip() or "(untitled)"


def _key(words: list[str]) -> str:
    return " ".join(w.lower() for w in words)


class MiniWebSite:
    """Pages and search over one corpus; thread-safe (searches are serialised, pages are read-only).
    ``corpus``: a :class:`DocStore` (what :meth:`load` opens) or, for small corpora made in code, a
    :class:`Corpus`."""

    def __init__(self, corpus: DocStore | Corpus, retriever: Retriever, config: MiniWebConfig = MiniWebConfig()):
        self.corpus, self.config = corpus, config
        self._retriever = retriever
        self._lock = threading.Lock()  # backends need not be thread-safe (retrieval/server.py)
        self._title_rows = _title_rows(corpus)

    @classmethod
    def load(cls, config: MiniWebConfig = MiniWebConfig()) -> "MiniWebSite":
        """Open the corpus's docstore and (building once, cached) its index."""
        from mem1_gym.retrieval import make_retriever

        config = config.resolved()
        retriever = make_retriever(config.backend, corpus_path=config.corpus_path, index_dir=config.index_dir)
        return cls(open_docstore(config.corpus_path), retriever, config)

    def close(self) -> None:
        self._retriever.close()

    # ------------------------------------------------------------------ search

    def search(self, query: str, num: int) -> dict:
        """Serper-shaped results for ``query`` (``num`` in [1, ``max_results``], checked by the server)."""
        base_url = self.config.public_url.rstrip("/")
        with self._lock:
            docs = self._retriever.search([query], num)[0]
        organic = [
            {
                "title": _plain_title(doc.title),
                "link": base_url + page_path(doc.id),
                "snippet": snippet(doc.text, query, self.config.snippet_chars),
                "position": rank,
            }
            for rank, doc in enumerate(docs, start=1)
        ]
        return {"searchParameters": {"q": query, "num": num, "engine": "mem1-gym-miniweb"}, "organic": organic}

    # ------------------------------------------------------------------ pages

    def page(self, doc_id: str) -> str | None:
        """The HTML page of passage ``doc_id``, or None if the corpus has no such passage."""
        row = self.corpus.row_of(doc_id)
        if row is None:
            return None
        doc = self.corpus.doc(row)
        title, text = _plain_title(doc.title), doc.text
        sections = [self._link(r, f"{title} (part {i})") for i, r in self._article(row, title)]
        see_also = [self._link(r, self._title(r)) for r in self._mentions(text, title)]
        paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n") if p.strip())
        return _PAGE.format(
            title=html.escape(title),
            doc_id=html.escape(doc_id),
            body=paragraphs,
            sections=_link_list("Other sections of this article", sections),
            see_also=_link_list("See also", see_also),
        )

    def home(self) -> str:
        return _HOME.format(n=len(self.corpus), first=page_path(self.corpus.doc(0).id))

    def _title(self, row: int) -> str:
        return _plain_title(self.corpus.doc(row).title)

    def _link(self, row: int, label: str) -> str:
        return f'<a href="{page_path(self.corpus.doc(row).id)}">{html.escape(label)}</a>'

    def _article(self, row: int, title: str) -> list[tuple[int, int]]:
        """(part number, row) of the passages next to ``row`` with its ``title``, itself excluded."""
        n = len(self.corpus)
        first = row
        while first > max(0, row - _NEIGHBOURS) and self._title(first - 1) == title:
            first -= 1
        last = row
        while last < min(n - 1, row + _NEIGHBOURS) and self._title(last + 1) == title:
            last += 1
        return [(i, r) for i, r in enumerate(range(first, last + 1), start=1) if r != row]

    def _mentions(self, text: str, title: str) -> list[int]:
        """Rows of the pages whose titles occur in ``text`` (capitalised words, longest match first)."""
        words, own, found, i = _WORD.findall(text), _key(_WORD.findall(title)), [], 0
        while i < len(words) and len(found) < self.config.see_also:
            step = 1
            if words[i][:1].isupper():
                for n in range(min(_MAX_TITLE_WORDS, len(words) - i), 0, -1):
                    key = _key(words[i : i + n])
                    row = self._row_titled(key) if key != own else None
                    if row is not None:
                        if row not in found:
                            found.append(row)
                        step = n
                        break
            i += step
        return found


    def _row_titled(self, key: str) -> int | None:
        """The first row whose title's words are ``key`` (a hash lookup, then the title checked)."""
        return next((r for r in self._title_rows.candidates(key) if _title_key(self._title(r)) == key), None)


def _title_key(title: str) -> str | None:
    """The lookup key of a plain title, or None for one too long to be looked for in running text."""
    words = _WORD.findall(title)
    return _key(words) if 0 < len(words) <= _MAX_TITLE_WORDS else None


def _title_rows(corpus: DocStore | Corpus) -> HashRows:
    """The map of title keys to rows: for a docstore a file next to it, written (whole, then renamed)
    on first use; for a :class:`Corpus` in memory."""
    path = corpus.dir / TITLES_FILE if isinstance(corpus, DocStore) else None
    if path is not None and path.is_file():
        return HashRows.open(path)
    if path is not None:
        _log.info("mapping the titles of %d passages of %s (once; kept in %s)", len(corpus), corpus.path, path)
    hashes, rows = array.array("Q"), array.array("Q")  # 8 bytes a passage, not a Python int's 36
    for row in range(len(corpus)):
        key = _title_key(_plain_title(corpus.doc(row).title))
        if key is not None:
            hashes.append(key_hash(key))
            rows.append(row)
    table = sorted_hash_rows(np.frombuffer(hashes, dtype=np.uint64), np.frombuffer(rows, dtype=np.uint64))
    if path is None:
        return HashRows(table)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    table.tofile(tmp)
    os.replace(tmp, path)  # a title map that exists is a whole one
    return HashRows.open(path)


def page_path(doc_id: str) -> str:
    """The stable path of a passage's page."""
    return "/wiki/" + quote(doc_id, safe="")


def snippet(text: str, query: str, max_chars: int) -> str:
    """The sentences of ``text`` that share the most words with ``query``, in text order, within ``max_chars``."""
    sentences = [s for s in _SENTENCE_END.split(text.replace("\n", " ")) if s.strip()]
    terms = set(weighted_terms(w.lower()[:_MATCH_PREFIX] for w in _WORD.findall(query) if len(w) > 2))
    scores = [len(terms & {w.lower()[:_MATCH_PREFIX] for w in _WORD.findall(s)}) for s in sentences]
    chosen, used = [], 0
    for i in sorted(range(len(sentences)), key=lambda j: (-scores[j], j)):
        if scores[i] == 0 and chosen:
            break
        if used + len(sentences[i]) + 1 > max_chars and chosen:
            continue
        chosen.append(i)
        used += len(sentences[i]) + 1
    parts, previous = [], None
    for i in sorted(chosen):
        if previous is not None and i != previous + 1:
            parts.append("...")
        parts.append(sentences[i])
        previous = i
    joined = " ".join(parts)
    if len(joined) <= max_chars:
        return joined
    cut = joined[:max_chars].rsplit(" ", 1)[0]
    return cut + " ..."


def _link_list(heading: str, links: list[str]) -> str:
    if not links:
        return ""
    items = "".join(f"<li>{link}</li>" for link in links)
    return f"<h2>{heading}</h2><ul>{items}</ul>"


# The chrome (nav, script, style, footer) is there on purpose: <open> must strip it, as on real pages.
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - mini-web</title>
<style>body{{font-family:sans-serif;max-width:48em;margin:auto}}nav a{{margin-right:1em}}</style>
<script>window.miniweb = {{page: "{doc_id}"}};</script></head>
<body><header><nav><a href="/">Home</a><a href="/search?q=">Search API</a></nav></header>
<main><article><h1>{title}</h1>{body}{sections}{see_also}</article></main>
<footer><p>mini-web page {doc_id}, served by mem1-gym from a local corpus.</p></footer></body></html>
"""
_HOME = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mini-web</title></head>
<body><main><h1>mini-web</h1><p>{n} pages. Search: <code>GET /search?q=QUERY&amp;num=10</code> or
<code>POST /search</code> with <code>{{"q": "QUERY", "num": 10}}</code> (Serper's format).
A page: <a href="{first}">{first}</a>.</p></main></body></html>
"""
