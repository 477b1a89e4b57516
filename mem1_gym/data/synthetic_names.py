"""Invented, pronounceable names for the synthetic encyclopedia, and near-namesakes for distractors.

Names are built from onset-vowel-coda syllables so they are not in any pretraining corpus (the
point of the embedded world: DESIGN.md §6), yet read like names. Every full name handed out is
unique within a world, because questions address entities by name. Near-namesakes ("Aldric Venn"
vs "Aldric Vennor", "Velmora Shipping Company" vs "Velmora Trading Company") share tokens with the
original, so a keyword search has to use every word of the query to find the right article.
"""

from __future__ import annotations

import random

_ONSETS = (
    "b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s",
    "sh", "st", "t", "th", "tr", "v", "w", "z",
)  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "a", "e", "i", "o", "ae", "ei", "ou")
# A closing consonant comes before a vowel-initial ending or at the end of a word, never inside,
# so names stay pronounceable (no "Mollousstistara").
_CODAS = ("l", "n", "r", "s", "th", "nd", "rn", "st", "m", "v", "x", "ld", "rd")
# Endings that make a stem read as a given name, a family name, a place or a country.
_GIVEN_ENDINGS = ("", "", "", "a", "el", "in", "ric", "ine", "ara", "en", "is", "o")
_SURNAME_ENDINGS = ("", "", "", "ard", "ell", "ov", "sen", "wick", "ley", "mont", "er", "wyn", "ach")
_PLACE_ENDINGS = ("", "", "a", "ia", "or", "en", "holm", "mere", "dale", "ovo", "ith", "ara", "ec")
_COUNTRY_ENDINGS = ("ia", "ia", "ora", "land", "istan", "ea", "or", "ia")
_WORD_ENDINGS = ("", "", "a", "is", "or", "ane", "ia")
# Suffixes that turn a family name into a near-namesake ("Venn" -> "Vennor").
_VARIANT_SUFFIXES = ("or", "er", "ish", "an", "ley", "s", "ard")
# Invented tokens must not collide with the keywords that hop queries use ("born", "founded"...),
# or BM25 would rank a person called "Born" above the passage that states a birth.
_BANNED = frozenset({
    "born", "founded", "married", "mentor", "studied", "capital", "city", "country", "river", "mount",
    "height", "ascent", "first", "directed", "written", "composed", "released", "headquarters", "located",
    "the", "and", "for", "was", "his", "her", "new", "port", "upper", "sons", "one", "ten", "sea", "son",
})  # fmt: skip
_MAX_TRIES = 200


class NameFactory:
    """Hands out invented names, each at most once (per category of use)."""

    def __init__(self, rng: random.Random):
        self._rng = rng
        self._used: set[str] = set()

    def _stem(self, syllables: int, endings: tuple[str, ...]) -> str:
        """One invented word, never a query keyword and at most 12 letters."""
        rng = self._rng
        while True:
            # A word may open on a vowel ("Aldric"), later syllables never do (no vowel pile-ups).
            word = "" if rng.random() < 0.2 else rng.choice(_ONSETS)
            word += rng.choice(_VOWELS)
            word += "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables - 1))
            ending = rng.choice(endings)
            if not ending or ending[0] in "aeiou" or rng.random() < 0.3:
                word += rng.choice(_CODAS)
            word = (word + ending).capitalize()
            if 3 <= len(word) <= 12 and word.lower() not in _BANNED:
                return word

    def claim(self, name: str) -> bool:
        """Reserve ``name``; False when it is already taken."""
        key = name.lower()
        if key in self._used:
            return False
        self._used.add(key)
        return True

    def _unique(self, make) -> str:
        for _ in range(_MAX_TRIES):
            name = make()
            if self.claim(name):
                return name
        raise RuntimeError("name space exhausted; lower WorldConfig.n_passages or widen the syllable tables")

    def given(self) -> str:
        """A given name (not reserved: many people share a given name, as in life)."""
        return self._stem(self._rng.choice((1, 2, 2)), _GIVEN_ENDINGS)

    def surname(self) -> str:
        return self._stem(self._rng.choice((1, 2, 2)), _SURNAME_ENDINGS)

    def person(self) -> str:
        return self._unique(lambda: f"{self.given()} {self.surname()}")

    def place(self) -> str:
        return self._unique(lambda: self._stem(self._rng.choice((2, 2, 3)), _PLACE_ENDINGS))

    def country(self) -> str:
        return self._unique(lambda: self._stem(self._rng.choice((1, 2)), _COUNTRY_ENDINGS))

    def word(self) -> str:
        """An invented word for brands and titles ("Velmora"), unique."""
        return self._unique(lambda: self._stem(self._rng.choice((2, 2, 3)), _WORD_ENDINGS))

    def fresh(self, make) -> str:
        """A unique name from a caller-supplied builder (titles, company names)."""
        return self._unique(make)

    def person_namesake(self, given: str, surname: str) -> str:
        """A distractor's full name: the same given name with a longer surname, or the same surname
        with another given name that starts with a different letter (so "A. Venn" stays unambiguous)."""
        rng = self._rng

        def make() -> str:
            if rng.random() < 0.5:
                return f"{given} {surname}{rng.choice(_VARIANT_SUFFIXES)}"
            other = self.given()
            while other[0] == given[0]:
                other = self.given()
            return f"{other} {surname}"

        return self._unique(make)

    def place_namesake(self, name: str) -> str:
        """A distractor place ("Tarsen" -> "Tarsenholm")."""
        rng = self._rng
        # One token, not "New Tarsen": a namesake sharing the token would tie with the original
        # under BM25 for every query about it, whatever the rest of the query says.
        forms = ("{n}holm", "{n}ford", "{n}wick", "{n}by", "{n}stad", "{n}mouth")
        return self._unique(lambda: rng.choice(forms).format(n=name))


def demonym(country: str) -> str:
    """An adjective for a country's people ("Valdoria" -> "Valdorian", "Kest" -> "Kestian")."""
    if country.endswith("ia") or country.endswith("ea"):
        return country + "n"
    if country.endswith("a"):
        return country + "n"
    if country.endswith("land"):
        return country[:-4] + "lish"
    if country.endswith("istan"):
        return country[:-5] + "i"
    return country + "ian"


def initial_alias(full_name: str) -> str:
    """ "Aldric Venn" -> "A. Venn" (the short form an answer may take)."""
    given, _, surname = full_name.partition(" ")
    return f"{given[0]}. {surname}"
