"""The action menus :class:`~mem1_gym.wrappers.actions.DiscreteActions` offers for each env family.

**WebShop** (``MEM1-WebShop``, ``MEM1-WebShop-Text``), read from ``info["available_actions"]``:

=================  ==========================================================================
slots              action
=================  ==========================================================================
``search:*`` (3)   search the instruction's keywords (the oracle's query: no price clause, no
                   options), the instruction without its price clause, and its keywords
                   without filler words; only where the page has a search bar
``button:*`` (8)   back to search, next >, < prev, buy now, description, features, reviews,
                   attributes, each where the page shows it
``product:i`` (10) the i-th product link of a results page, in the search engine's order
``option:i`` (8)   the options of the product page, ranked: those named in the instruction's
                   "with ...: ..." part first, then page order; an option already clicked on
                   this product is masked (clicking it again changes nothing)
=================  ==========================================================================

The option ranking reads the instruction, as an agent would; it never reads the goal.

**QA** (``MEM1-MultiHopQA-N``, ``MEM1-WebQA-N``): there is no list of legal actions, so the menu
is built from entity-like spans (runs of capitalised words, sentence-initial filler dropped):

* ``question:i.j`` (2 per question): search the j-th span of question i ("Evotrola Porcelain
  Corporation");
* ``found:j`` (4): search the j-th span of the last results that is not already in a question:
  result titles first, then spans of the passages by frequency (the bridge entity of a two-hop
  question, "Cerabedale");
* ``answer:j`` (2): answer every question at once, question i with the j-th most frequent span
  seen in the results of the searches made *for* question i (a search inherits the question of the
  span it searched), or "unknown". This is a crude extractive guess, not a reader: it lets a
  discrete policy finish an episode and collect EM, nothing more. Learning QA well needs a model
  that reads the passages (the MEM1 agent), which is why the SB3 example trains on WebShop.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from mem1_gym.wrappers.actions import CandidateSet

# --------------------------------------------------------------------------- WebShop

WEBSHOP_BUTTONS = ("back to search", "next >", "< prev", "buy now", "description", "features", "reviews", "attributes")
_INSTRUCTION_RE = re.compile(r"^Instruction: (?!\[SEP\])(.+)$", re.MULTILINE)
_PRICE_RE = re.compile(r",? and price lower than [0-9.]+ dollars$")
_ASIN_RE = re.compile(r"[a-z0-9]{10}")
_FILLER = frozenset(
    ["i", "i'm", "im", "am", "is", "are", "looking", "for", "a", "an", "the", "need", "want", "would", "like", "to", "that", "with", "and", "of", "in", "it", "its", "be"]
)


def instruction_queries(instruction: str) -> list[str]:
    """Three search queries derived from a WebShop instruction (see the module docstring)."""
    no_price = _PRICE_RE.sub("", instruction.strip())
    keywords = no_price.split(" with ")[0].strip()
    content = " ".join(word for word in keywords.replace(",", " ").split() if word not in _FILLER)
    return [keywords, no_price, content or keywords]


class WebShopCandidates(CandidateSet):
    """29 slots: 3 searches, 8 buttons, 10 products, 8 options (module docstring)."""

    def __init__(self, n_products: int = 10, n_options: int = 8) -> None:
        self.n_products = n_products
        self.n_options = n_options
        self._queries: list[str] = []
        self._wanted = ""  # the instruction's "with name: value, ..." part, for ranking options
        self._selected: set[str] = set()

    @property
    def slot_names(self) -> list[str]:
        return (
            ["search:keywords", "search:instruction", "search:content"]
            + [f"button:{name}" for name in WEBSHOP_BUTTONS]
            + [f"product:{i + 1}" for i in range(self.n_products)]
            + [f"option:{i + 1}" for i in range(self.n_options)]
        )

    def reset(self, obs: str, info: dict[str, Any]) -> list[str | None]:
        match = _INSTRUCTION_RE.search(obs)
        if match is None:
            raise ValueError("no 'Instruction: ...' line in the reset observation; is this a MEM1-WebShop env?")
        instruction = match.group(1).strip()
        self._queries = instruction_queries(instruction)
        self._wanted = _PRICE_RE.sub("", instruction).partition(" with ")[2]
        self._selected = set()
        return self._slots(info)

    def update(self, action: str, obs: str, info: dict[str, Any]) -> list[str | None]:
        label = action[len("click[") : -1] if action.startswith("click[") else ""
        if info.get("valid_action") and label:
            if info.get("page") == "item" and label not in WEBSHOP_BUTTONS and not _ASIN_RE.fullmatch(label):
                self._selected.add(label)
            elif _ASIN_RE.fullmatch(label):
                self._selected = set()  # a new product: its options start unselected
        return self._slots(info)

    def _slots(self, info: dict[str, Any]) -> list[str | None]:
        available = info.get("available_actions", [])
        searchable = any(a.startswith("search[") for a in available)
        labels = [a[len("click[") : -1] for a in available if a.startswith("click[")]
        buttons = [label if label in labels else None for label in WEBSHOP_BUTTONS]
        products = [label for label in labels if _ASIN_RE.fullmatch(label)]
        options = [label for label in labels if label not in WEBSHOP_BUTTONS and label not in products]
        # Options the instruction names first: "option:1" then means "the best match not yet clicked".
        ranked = sorted(
            (label for label in options if label not in self._selected),
            key=lambda label: not re.search(rf"(?<![\w]){re.escape(label.split(': ')[-1])}(?![\w])", self._wanted),
        )
        return (
            [f"search[{q}]" if searchable else None for q in self._queries]
            + [f"click[{label}]" if label else None for label in buttons]
            + _padded([f"click[{label}]" for label in products], self.n_products)
            + _padded([f"click[{label}]" for label in ranked], self.n_options)
        )


# --------------------------------------------------------------------------- QA

_QUESTION_RE = re.compile(r"^Q\d+: (.+)$", re.MULTILINE)
_TITLE_RE = re.compile(r'Doc \d+\(Title: "?([^"\n]+?)"?\)')
_SPAN_RE = re.compile(r"[A-Z][\w'\-]*(?:\s+(?:of\s+|the\s+|de\s+|von\s+|van\s+)?[A-Z][\w'\-]*)*")
_SENTENCE_START_RE = re.compile(r"(?:^|[.!?:;\n(]\s*)$")
_HINT_RE = re.compile(r"\[HINT\].*?\[/HINT\]", re.DOTALL)
_NOT_ENTITIES = frozenset(
    ["A", "An", "The", "In", "On", "At", "It", "Its", "His", "Her", "Their", "This", "That", "These", "After", "Before", "During", "Who", "What", "Which", "Where", "When", "How", "Why", "Doc", "Title", "URL", "Q", "HINT", "Shares", "Early", "Annual", "About", "Most", "Some", "Many"]
)
UNKNOWN = "unknown"


def entity_spans(text: str) -> list[str]:
    """Runs of capitalised words in ``text``, in order, without sentence-initial filler words.

    >>> entity_spans("In 1936 the firm opened an office in Sedeindorford. After Vawick retired, Eigix College grew.")
    ['Sedeindorford', 'Vawick', 'Eigix College']
    """
    spans = []
    for match in _SPAN_RE.finditer(text):
        words = match.group(0).split()
        if words[0] in _NOT_ENTITIES:
            words = words[1:]
        elif len(words) == 1 and _SENTENCE_START_RE.search(text[: match.start()]):
            continue  # one capitalised word opening a sentence is usually just a sentence opener
        if words and words[0] not in _NOT_ENTITIES:
            spans.append(" ".join(words))
    return spans


class QACandidates(CandidateSet):
    """Search and answer slots built from entity-like spans (module docstring)."""

    def __init__(self, n_questions: int, spans_per_question: int = 2, n_found: int = 4, n_answers: int = 2) -> None:
        if n_questions < 1:
            raise ValueError(f"n_questions must be >= 1, got {n_questions}")
        self.n_questions = n_questions
        self.spans_per_question = spans_per_question
        self.n_found = n_found
        self.n_answers = n_answers
        self._question_spans: list[list[str]] = []
        self._found: list[str] = []
        self._owner: dict[str, int] = {}  # span -> the question whose search it belongs to
        self._seen: list[Counter] = []  # per question: spans in the results of its searches

    @property
    def slot_names(self) -> list[str]:
        return (
            [f"question:{i + 1}.{j + 1}" for i in range(self.n_questions) for j in range(self.spans_per_question)]
            + [f"found:{j + 1}" for j in range(self.n_found)]
            + [f"answer:{j + 1}" for j in range(self.n_answers)]
        )

    def reset(self, obs: str, info: dict[str, Any]) -> list[str | None]:
        questions = _QUESTION_RE.findall(obs)[: self.n_questions]
        self._question_spans = [_unique(entity_spans(q))[: self.spans_per_question] for q in questions]
        self._question_spans += [[] for _ in range(self.n_questions - len(self._question_spans))]
        self._owner = {span: i for i, spans in enumerate(self._question_spans) for span in spans}
        self._seen = [Counter() for _ in range(self.n_questions)]
        self._found = []
        return self._slots()

    def update(self, action: str, obs: str, info: dict[str, Any]) -> list[str | None]:
        query = action[len("search[") : -1] if action.startswith("search[") else ""
        owner = self._owner.get(query, 0)
        known = {span for spans in self._question_spans for span in spans} | {query}
        obs = _HINT_RE.sub("", obs)  # the turns-left hint is ours, not the documents'
        titles = [t.strip() for t in _TITLE_RE.findall(obs)]
        counts = Counter(span for span in entity_spans(_TITLE_RE.sub("", obs)) if span not in known)
        if query:
            self._seen[owner].update(counts)
        ranked = _unique([t for t in titles if t not in known] + [span for span, _ in counts.most_common()])
        self._found = ranked[: self.n_found]
        for span in self._found:
            self._owner.setdefault(span, owner)
        return self._slots()

    def _slots(self) -> list[str | None]:
        questions = [
            f"search[{span}]" if span else None
            for spans in self._question_spans
            for span in _padded(spans, self.spans_per_question)
        ]
        found = [f"search[{span}]" if span else None for span in _padded(self._found, self.n_found)]
        answers = []
        for j in range(self.n_answers):
            guesses = [_nth_most_common(seen, j) for seen in self._seen]
            # An answer slot with no guess at all would only ever answer "unknown" N times.
            answers.append(None if all(g == UNKNOWN for g in guesses) and j > 0 else "answer[" + "; ".join(guesses) + "]")
        return questions + found + answers


def _nth_most_common(counter: Counter, n: int) -> str:
    common = counter.most_common(n + 1)
    return common[n][0] if len(common) > n else UNKNOWN


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _padded(items: list, size: int) -> list:
    return list(items[:size]) + [None] * (size - len(items[:size]))
