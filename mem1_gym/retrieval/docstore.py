"""Passages by row or id without the corpus text in memory, and the one streaming corpus reader.

wiki-18 is 14 GB of text for 21M passages (issue 20): held as Python strings it needed ~25 GB
before any index. A built index instead keeps a :class:`DocStore`: the byte offset of every
passage's line in the corpus jsonl (``docstore_offsets.u64``, 8 bytes per passage) and an id map
(``docstore_ids.u64``: 64-bit hashes of the ids, sorted, with their rows), both memory-mapped, so
a search reads only the lines of the passages it returns. A ``.gz`` corpus cannot be read at an
offset, so its lines are copied, uncompressed, into the index directory (``passages.jsonl``).

:class:`CorpusStream` is the one reader for builds: a single pass in chunks of lines, a progress
bar with ETA (tqdm in a terminal, else a log line every 5%), the docstore written as it goes, and
a line that is not an ``{"id", "contents"}`` object stops the build with its line number, or, with
``skip_bad_lines``, is skipped and counted. :func:`iter_corpus` is the same reader without a docstore.

A corpus opened without an index of ours (Search-R1's ``e5_Flat.index``, a Lucene index without raw
documents, the mini-web) gets a docstore of its own, built once into the cache by
:func:`open_docstore`: no code path loads a corpus's text into memory.
"""

from __future__ import annotations

import array
import contextlib
import gzip
import hashlib
import json
import logging
import mmap
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from mem1_gym.data.cache import cache_dir
from mem1_gym.data.manifest import build_lock, replace_dir
from mem1_gym.retrieval.base import Doc, RetrievalError

OFFSETS_FILE = "docstore_offsets.u64"
IDS_FILE = "docstore_ids.u64"  # (2, N): sorted id hashes, then the row of each
COPY_FILE = "passages.jsonl"
STORE_FILE = "docstore.json"
_BUFFER = 1 << 20  # offsets written per 128k passages: the build holds no per-passage list
_log = logging.getLogger(__name__)


def key_hash(key: str) -> int:
    """A 64-bit hash of ``key`` (the same on every machine and run, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def sorted_hash_rows(hashes: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """The (2, N) table of :class:`HashRows` for ``hashes[i]``, the key hash of row ``rows[i]``
    (default: row ``i``; given in ascending order): hashes sorted, then their rows. Equal hashes keep
    row order (a stable sort), so the first match is the lowest row."""
    order = np.argsort(hashes, kind="stable")
    return np.stack([hashes[order], (order if rows is None else rows[order]).astype("<u8")])


class HashRows:
    """Rows by key through a sorted (2, N) table of 64-bit key hashes (memory-mapped or in memory):
    8 bytes a row for an id map or a title map, where a Python dict takes ~100."""

    def __init__(self, table: np.ndarray):
        self._hashes, self._rows = table

    @classmethod
    def open(cls, path: str | Path) -> "HashRows":
        return cls(np.memmap(path, dtype="<u8", mode="r").reshape(2, -1))

    def candidates(self, key: str) -> Iterator[int]:
        """The rows whose key hashes like ``key``, lowest first; the caller checks the key itself."""
        target = np.uint64(key_hash(key))
        i = int(np.searchsorted(self._hashes, target))
        while i < len(self._hashes) and self._hashes[i] == target:
            yield int(self._rows[i])
            i += 1


def _bad_line(path: Path, line_no: int, why: str) -> RetrievalError:
    return RetrievalError(
        f"corpus {path} line {line_no} is not a {{\"id\", \"contents\"}} JSON object ({why}); fix the line, "
        f"or pass --skip-bad-lines (skip_bad_lines=True) to skip such lines and count them"
    )


class _Progress:
    """Bytes read out of the corpus size: a tqdm bar in a terminal when tqdm is installed (it is in
    the agent extra, not the core), else a log line at every 5%."""

    def __init__(self, total: int, desc: str):
        self._total, self._desc, self._done, self._next_log = total, desc, 0, 0.05
        self._bar = None
        if sys.stderr.isatty():  # a bar in a terminal; log lines in job logs, where bars are noise
            with contextlib.suppress(ImportError):
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, mininterval=2.0)

    def update_to(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._done)
        self._done = done
        if self._bar is None and self._total and self._done >= self._next_log * self._total:
            _log.info("%s: %.0f%% of %d bytes", self._desc, 100 * self._done / self._total, self._total)
            self._next_log += 0.05

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._done:
            _log.info("%s: done, %d bytes", self._desc, self._done)


class CorpusStream:
    """One pass over a corpus jsonl(.gz) yielding ``(id, contents)``; with ``out_dir`` it also
    writes the :class:`DocStore` files there. ``n_docs`` and ``skipped`` are set when it ends.

    Memory: one line at a time plus a 1 MiB offset buffer; at the end the id map is sorted in
    memory (8 bytes per passage while reading, 24 while sorting: 0.5 GB for wiki-18's 21M).
    """

    def __init__(self, corpus_path: str | Path, out_dir: str | Path | None = None, *,
                 skip_bad_lines: bool = False, desc: str = "indexing"):
        self.path = Path(corpus_path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"corpus not found at {self.path}; pass a Search-R1-format jsonl ({{\"id\", \"contents\"}} per line)"
            )
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.skip_bad_lines = skip_bad_lines
        self.desc = desc
        self.n_docs = 0
        self.skipped = 0

    def __iter__(self) -> Iterator[tuple[str, str]]:
        gz = self.path.suffix == ".gz"
        progress = _Progress(self.path.stat().st_size, f"{self.desc} {self.path.name}")
        hashes = array.array("Q")  # 8 bytes per passage, not a Python int's 36
        pending: list[int] = []
        offsets = copy = None
        if self.out_dir is not None:
            offsets = open(self.out_dir / OFFSETS_FILE, "wb")
            copy = open(self.out_dir / COPY_FILE, "wb") if gz else None
        self.n_docs = self.skipped = 0
        position = 0
        try:
            with open(self.path, "rb") as raw, (gzip.open(raw, "rb") if gz else raw) as f:
                for line_no, line in enumerate(f, start=1):
                    if line_no % 1024 == 0:
                        progress.update_to(raw.tell())  # compressed bytes for .gz: the size we know
                    start = position  # of this line in the file the docstore reads (the copy for .gz)
                    if copy is None:
                        position += len(line)
                    parsed = self._parse(line, line_no)
                    if parsed is None:
                        continue
                    if offsets is not None:
                        if copy is not None:
                            line = line if line.endswith(b"\n") else line + b"\n"
                            copy.write(line)
                            position += len(line)
                        pending.append(start)
                        hashes.append(key_hash(parsed[0]))
                        if len(pending) * 8 >= _BUFFER:
                            offsets.write(np.asarray(pending, dtype="<u8").tobytes())
                            pending.clear()
                    self.n_docs += 1
                    yield parsed
                progress.update_to(raw.tell())
            if offsets is not None:
                offsets.write(np.asarray(pending, dtype="<u8").tobytes())
                self._write_ids(np.frombuffer(hashes, dtype=np.uint64), gz)
        finally:
            progress.close()
            for file in (offsets, copy):
                if file is not None:
                    file.close()
        if self.skipped:
            _log.warning("%s: skipped %d bad lines (skip_bad_lines=True)", self.path, self.skipped)
        if self.n_docs == 0:
            raise RetrievalError(f"corpus {self.path} is empty; it needs at least one {{\"id\", \"contents\"}} line")

    def _parse(self, line: bytes, line_no: int) -> tuple[str, str] | None:
        if not line.strip():
            return None
        try:
            row = json.loads(line)
            doc_id, contents = row["id"], row["contents"]
            if not isinstance(contents, str):
                raise TypeError(f"contents is a {type(contents).__name__}, not a string")
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            if not self.skip_bad_lines:
                raise _bad_line(self.path, line_no, f"{type(err).__name__}: {err}") from err
            self.skipped += 1
            return None
        return str(doc_id), contents

    def _write_ids(self, hashes: np.ndarray, gz: bool) -> None:
        sorted_hash_rows(hashes).tofile(self.out_dir / IDS_FILE)
        info = {"n_docs": self.n_docs, "skipped_lines": self.skipped, "copy": gz}
        (self.out_dir / STORE_FILE).write_text(json.dumps(info) + "\n")


class DocStore:
    """Passages of a built index by row (what the index stores) or by id, read from the corpus
    through memory maps: resident memory grows with the passages read, not with the corpus."""

    def __init__(self, index_dir: str | Path, corpus_path: str | Path):
        self.dir = index_dir = Path(index_dir)
        info = json.loads((index_dir / STORE_FILE).read_text())
        self.path = index_dir / COPY_FILE if info["copy"] else Path(corpus_path)
        self._offsets = np.memmap(index_dir / OFFSETS_FILE, dtype="<u8", mode="r")
        if len(self._offsets) != info["n_docs"]:
            raise RetrievalError(
                f"the docstore of {index_dir} has {len(self._offsets)} rows, {info['n_docs']} when built; rebuild the index"
            )
        self._ids = HashRows.open(index_dir / IDS_FILE)
        with open(self.path, "rb") as f:
            self._text = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    @staticmethod
    def exists(index_dir: str | Path) -> bool:
        return (Path(index_dir) / STORE_FILE).is_file()

    def __len__(self) -> int:
        return len(self._offsets)

    def row_json(self, row: int) -> dict:
        start = int(self._offsets[row])
        end = self._text.find(b"\n", start)
        return json.loads(self._text[start : end if end >= 0 else len(self._text)])

    def contents(self, row: int) -> str:
        return self.row_json(row)["contents"]

    def doc(self, row: int, score: float | None = None) -> Doc:
        line = self.row_json(row)
        return Doc.from_contents(str(line["id"]), line["contents"], score)

    def row_of(self, doc_id: str) -> int | None:
        """The row of passage ``doc_id``, or None: a binary search of the hashes, then the line checked."""
        doc_id = str(doc_id)
        return next((row for row in self._ids.candidates(doc_id) if str(self.row_json(row)["id"]) == doc_id), None)

    def close(self) -> None:
        self._text.close()


def iter_corpus(corpus_path: str | Path, *, skip_bad_lines: bool = False) -> CorpusStream:
    """``(id, contents)`` of each passage of a corpus jsonl(.gz), read once in a stream, nothing kept."""
    return CorpusStream(corpus_path, skip_bad_lines=skip_bad_lines, desc="reading")


def corpus_cache_dir(corpus_path: str | Path) -> Path:
    """``cache_dir()/indexes/<corpus name>-<key>``, where the indexes and the docstore of a corpus
    are cached; the key changes when the corpus file does (path, size, modification time)."""
    path = Path(corpus_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"corpus not found at {path}; pass a Search-R1-format jsonl")
    stat = path.stat()
    key = hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name.removesuffix(".gz").removesuffix(".jsonl"))
    return cache_dir() / "indexes" / f"{name}-{key}"


def open_docstore(corpus_path: str | Path, index_dir: str | Path | None = None) -> DocStore:
    """The docstore of ``index_dir`` when it has one, else the corpus's own in
    ``corpus_cache_dir(corpus_path)/docstore``, built there once (one streamed pass, in a temporary
    folder renamed into place, under a lock: a killed build leaves nothing that opens)."""
    if index_dir is not None and DocStore.exists(index_dir):
        return DocStore(index_dir, corpus_path)
    store_dir = corpus_cache_dir(corpus_path) / "docstore"
    if not DocStore.exists(store_dir):
        with build_lock(store_dir):
            if not DocStore.exists(store_dir):  # another process may have built it while we waited
                tmp = Path(tempfile.mkdtemp(prefix=".docstore.building-", dir=store_dir.parent))
                try:
                    for _ in CorpusStream(corpus_path, tmp, desc="docstore of"):
                        pass
                    replace_dir(tmp, store_dir)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    return DocStore(store_dir, corpus_path)
