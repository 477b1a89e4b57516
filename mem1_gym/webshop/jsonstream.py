"""Stream the elements of a top-level JSON array, or the items of a top-level JSON object, from a file.

WebShop's full catalogue ``items_shuffle.json`` is one 5 GB JSON array; ``json.load`` of it needs
about 15 GB of memory (reference/webshop.md §10, AgentBench #32). These readers hold one chunk plus
one element at a time, using the standard library's ``json.JSONDecoder.raw_decode`` on a sliding
buffer, so memory is bounded by the largest element, not the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

CHUNK_CHARS = 1 << 20
# One product record is a few kB; a "value" this long means the file is broken, and reading on would
# pull the rest of a 5 GB file into memory before failing.
MAX_ELEMENT_CHARS = 1 << 26
_WHITESPACE = " \t\n\r"
_DECODER = json.JSONDecoder()


class _Reader:
    """A growing text buffer over a file with a cursor; ``need`` pulls chunks until data is there."""

    def __init__(self, f: IO[str], path: Path, chunk_chars: int):
        self.f, self.path, self.chunk_chars = f, path, chunk_chars
        self.buf, self.pos, self.eof = "", 0, False

    def fill(self) -> bool:
        """Read one more chunk (dropping what was consumed); False at end of file."""
        chunk = self.f.read(self.chunk_chars)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next non-whitespace character ("" at end of file), without consuming it."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf) or not self.fill():
                return self.buf[self.pos : self.pos + 1]

    def expect(self, chars: str) -> str:
        ch = self.peek()
        if not ch or ch not in chars:
            found = repr(ch) if ch else "end of file"
            raise ValueError(f"{self.path}: expected one of {chars!r} but found {found}; is it a JSON array/object file?")
        self.pos += 1
        return ch

    def value(self) -> Any:
        """Decode the next JSON value, reading more when it is cut by the buffer's end."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                if len(self.buf) - self.pos < MAX_ELEMENT_CHARS and self.fill():
                    continue
                raise ValueError(f"{self.path}: invalid JSON near character {err.pos} of the current chunk: {err.msg}") from err
            # A number cut by the buffer's end ("1." of "1.5e3") decodes as a shorter number.
            if _maybe_cut_number(value, self.buf, end) and not self.eof and self.fill():
                continue
            self.pos = end
            return value


def _maybe_cut_number(value: Any, buf: str, end: int) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not buf[end:].strip("0123456789.eE+-")


def _open(path: Path) -> IO[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the path of the WebShop data file")
    if path.suffix == ".gz":
        import gzip

        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_json_array(path: str | Path, chunk_chars: int = CHUNK_CHARS) -> Iterator[Any]:
    """Yield each element of the JSON array in ``path`` (optionally ``.gz``) in order."""
    path = Path(path)
    with _open(path) as f:
        reader = _Reader(f, path, chunk_chars)
        reader.expect("[")
        if reader.peek() == "]":
            return
        while True:
            yield reader.value()
            if reader.expect(",]") == "]":
                return


def iter_json_object(path: str | Path, chunk_chars: int = CHUNK_CHARS) -> Iterator[tuple[str, Any]]:
    """Yield ``(key, value)`` of the JSON object in ``path`` (optionally ``.gz``) in order."""
    path = Path(path)
    with _open(path) as f:
        reader = _Reader(f, path, chunk_chars)
        reader.expect("{")
        if reader.peek() == "}":
            return
        while True:
            key = reader.value()
            if not isinstance(key, str):
                raise ValueError(f"{path}: object keys must be strings, found {key!r}")
            reader.expect(":")
            yield key, reader.value()
            if reader.expect(",}") == "}":
                return
