"""The fixture corpus: 200 invented passages in the Search-R1 format, with distinct two-word titles.

Each passage also names another passage's first title word, so a title query has distractors.
"""

from __future__ import annotations

import json
from pathlib import Path

N_DOCS = 200
UNICODE_TITLE = "Émile Zoë Ångström"
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "be", "do", "fa", "gu", "hi", "jo", "pe", "sa")
_KINDS = ("river", "fortress", "guild", "observatory", "festival", "monastery", "harbour", "library")
_PLACES = ("the northern valleys", "the coastal plain", "the old capital", "the eastern marshes")


def _word(i: int, ending: str) -> str:
    """A unique invented word per i (< 4096): three syllables from i's base-16 digits."""
    digits = (i // 256 % 16, i // 16 % 16, i % 16)
    return ("".join(_SYLLABLES[d] for d in digits) + ending).capitalize()


def title_of(i: int) -> str:
    return UNICODE_TITLE if i == 0 else f"{_word(i, 'r')} {_word(i + 1000, 'n')}"


def contents_of(i: int) -> str:
    title = title_of(i)
    kind, place = _KINDS[i % len(_KINDS)], _PLACES[i % len(_PLACES)]
    neighbour = title_of((i + 1) % N_DOCS).split()[0]  # a distractor: another passage's first word
    text = (
        f"{title} is a {kind} in {place}, first recorded in {1200 + 3 * i}. "
        f"Travellers compare it with {neighbour}, though the two share little beyond the {kind} trade."
    )
    return f'"{title}"\n{text}'


def write_corpus(path: Path, n_docs: int = N_DOCS) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_docs):
            f.write(json.dumps({"id": str(i), "contents": contents_of(i)}, ensure_ascii=False) + "\n")
    return path
