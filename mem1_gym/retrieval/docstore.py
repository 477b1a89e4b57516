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
``skip_bad_lines``, is skipped and counted.
"""

from __future__ import annotations

import array
import contextlib
import gzip
import hashlib
import json
import logging
import mmap
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from mem1_gym.retrieval.base import Doc, RetrievalError

OFFSETS_FILE = "docstore_offsets.u64"
IDS_FILE = "docstore_ids.u64"  # (2, N): sorted id hashes, then the row of each
COPY_FILE = "passages.jsonl"
STORE_FILE = "docstore.json"
_BUFFER = 1 << 20  # offsets written per 128k passages: the build holds no per-passage list
_log = logging.getLogger(__name__)


def _id_hash(doc_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little")


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
                        hashes.append(_id_hash(parsed[0]))
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
        order = np.argsort(hashes, kind="stable")
        np.stack([hashes[order], order.astype("<u8")]).tofile(self.out_dir / IDS_FILE)
        info = {"n_docs": self.n_docs, "skipped_lines": self.skipped, "copy": gz}
        (self.out_dir / STORE_FILE).write_text(json.dumps(info) + "\n")


class DocStore:
    """Passages of a built index by row (what the index stores) or by id, read from the corpus
    through memory maps: resident memory grows with the passages read, not with the corpus."""

    def __init__(self, index_dir: str | Path, corpus_path: str | Path):
        index_dir = Path(index_dir)
        info = json.loads((index_dir / STORE_FILE).read_text())
        self.path = index_dir / COPY_FILE if info["copy"] else Path(corpus_path)
        self._offsets = np.memmap(index_dir / OFFSETS_FILE, dtype="<u8", mode="r")
        if len(self._offsets) != info["n_docs"]:
            raise RetrievalError(
                f"the docstore of {index_dir} has {len(self._offsets)} rows, {info['n_docs']} when built; rebuild the index"
            )
        self._ids = np.memmap(index_dir / IDS_FILE, dtype="<u8", mode="r").reshape(2, -1)
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
        hashes, rows = self._ids
        key = np.uint64(_id_hash(str(doc_id)))
        i = int(np.searchsorted(hashes, key))
        while i < len(hashes) and hashes[i] == key:
            row = int(rows[i])
            if str(self.row_json(row)["id"]) == str(doc_id):
                return row
            i += 1
        return None

    def close(self) -> None:
        self._text.close()
