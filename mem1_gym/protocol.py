"""The MEM1 protocol: the one source of truth for tags, prompts, hints, parsing and normalisation.

Every other part of mem1-gym (envs, the oracle, the agent, the evaluation) imports these names.
The original MEM1 code had three divergent copies of this logic (different hint wording in training
and inference, opposite search/answer precedence, three definitions of EM; reference/mem1.md §8, R1),
so nothing outside this module may re-implement a tag, a template or a normaliser.

A QA turn is::

    <think>internal state: everything worth remembering</think>
    <search>one keyword query</search>          -- or --          <answer>a1; a2; ...</answer>

and the environment answers a search with::

    \\n\\n<information>[HINT]You have 3 turns left.[/HINT]\\n\\nDoc 1(Title: "X") ...\\n</information>\\n\\n
"""

from __future__ import annotations

import enum
import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

# --------------------------------------------------------------------------------------------
# Tags and stop strings
# --------------------------------------------------------------------------------------------

THINK = "think"
SEARCH = "search"
ANSWER = "answer"
INFORMATION = "information"
# WebShop (DESIGN.md §4): persistent memory lives in <summary>, observations in <state>.
SUMMARY = "summary"
STATE = "state"


def open_tag(name: str) -> str:
    return f"<{name}>"


def close_tag(name: str) -> str:
    return f"</{name}>"


# Generation must stop at the end of an action block, in training and in evaluation alike
# (the original sampled to EOS in training only: reference/mem1.md §8, B6).
QA_STOP_STRINGS: tuple[str, ...] = (close_tag(SEARCH), close_tag(ANSWER))
QA_FINAL_TURN_STOP_STRINGS: tuple[str, ...] = (close_tag(ANSWER),)
ANSWER_SEPARATOR = ";"

# --------------------------------------------------------------------------------------------
# Prompt and hints
# --------------------------------------------------------------------------------------------

QA_INSTRUCTIONS = """\
You will answer several questions. You can search a knowledge base as often as your turn budget \
allows, but you do not keep a transcript: at every turn you see only these instructions, your \
previous turn and the latest search results.

Every turn, do two things, in this order:
1. Inside <think> </think>, rewrite your memory: the answers found so far, what is still missing and \
anything from the new search results that you will need later. Whatever you leave out of <think> \
is forgotten after this turn.
2. Then either search with one keyword query for one question inside <search> </search>, or, once \
every question is answered (or when you are told to answer now), give all answers in question order, \
separated by semicolons, inside <answer> </answer>, for example <answer> answer1; answer2 </answer>. \
Answers are short: a name, a date, a number, a place; no explanations.

Search results arrive inside <information> </information> together with the number of turns you \
have left. Never write <information> yourself, and never search for two questions at once.
"""


def format_question(question: str) -> str:
    """Strip a question and make it end with a question mark (as the MEM1 and Search-R1 data)."""
    question = question.strip()
    return question if question.endswith("?") else question + "?"


def qa_prompt(questions: Sequence[str], max_turns: int | None = None) -> str:
    """The task prompt of a QA episode with N questions (the first observation).

    It holds no turns-left hint: the prompt is re-read at every turn by a MEM1 context, so a count
    in it would go stale; the current count arrives in every observation instead.
    """
    budget = f"You have {max_turns} turns in total.\n" if max_turns else ""
    if len(questions) == 1:
        header = "Answer the following question:"
    else:
        header = f"Answer the following {len(questions)} questions:"
    lines = [f"Q{i}: {format_question(q)}" for i, q in enumerate(questions, start=1)]
    return QA_INSTRUCTIONS + budget + "\n" + header + "\n" + "\n".join(lines) + "\n"


def turns_left_hint(turns_left: int) -> str:
    """The remaining-turn hint carried by every observation (MEM1 training wording)."""
    if turns_left <= 0:
        return "[HINT]You have no turns left.[/HINT]"
    if turns_left == 1:
        return "[HINT]You have 1 turn left. You must answer the questions in the next turn.[/HINT]"
    return f"[HINT]You have {turns_left} turns left.[/HINT]"


class HasTitleText(Protocol):
    title: str
    text: str


def format_doc(rank: int, title: str, text: str) -> str:
    """One retrieved passage exactly as Search-R1/MEM1 render it (title keeps its quotes)."""
    return f"Doc {rank}(Title: {title}) {text}"


def render_docs(docs: Iterable[HasTitleText]) -> str:
    return "\n".join(format_doc(i, d.title, d.text) for i, d in enumerate(docs, start=1))


def information_block(hint: str, body: str) -> str:
    """The exact text the QA env injects after a turn (the whole observation of a step)."""
    return f"\n\n{open_tag(INFORMATION)}{hint}\n\n{body.strip()}\n{close_tag(INFORMATION)}\n\n"


INVALID_ACTION_MESSAGE = (
    "Your previous turn had no valid action. End every turn with exactly one action: "
    "<search>one keyword query</search> to search, or <answer>answer1; answer2; ...</answer> "
    "with one answer per question, in order, separated by semicolons."
)
EMPTY_RESULTS_MESSAGE = "No documents matched the query."

# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


class ActionType(enum.IntEnum):
    INVALID = 0
    SEARCH = 1
    ANSWER = 2


@dataclass(frozen=True)
class ParsedAction:
    """What the parser understood of one agent turn."""

    type: ActionType
    content: str  # the query, or the raw answer text; "" when invalid
    think: str | None  # content of the first <think> block before the action, if any
    end: int  # characters of the input consumed (through the action's closing tag)
    error: str  # why the action is invalid; "" when valid

    @property
    def valid(self) -> bool:
        return self.type is not ActionType.INVALID


MAX_QUERY_CHARS = 1000
_BARE_RE = re.compile(r"\A\s*(search|answer)\[(.*)\]\s*\Z", re.DOTALL)


def parse_action(text: str) -> ParsedAction:
    """Parse a full model turn or a bare action.

    * A full turn: the first complete ``<search>…</search>`` or ``<answer>…</answer>`` block
      is the action; text after its closing tag is ignored, as generation stops there
      (``QA_STOP_STRINGS``). The first ``<think>`` block before it is returned as the internal state.
    * A bare action: ``search[query]`` or ``answer[a1; a2]`` (the whole string), or an action block
      with no think.
    Never raises, and runs in linear time on any input (a regex with ``.*?`` is quadratic on a
    megabyte of unclosed tags): anything else is ``ActionType.INVALID`` with ``error`` saying why.
    """
    if not isinstance(text, str):
        return ParsedAction(ActionType.INVALID, "", None, 0, f"action must be a str, got {type(text).__name__}")
    block = _first_block(text, (SEARCH, ANSWER))
    if block is None:
        bare = _BARE_RE.match(text)
        if bare is None:
            return ParsedAction(ActionType.INVALID, "", _first_think(text, len(text)), len(text), _why_invalid(text))
        kind, content, end, think = bare.group(1), bare.group(2), len(text), None
    else:
        kind, start, content_start, content_end, end = block
        content = text[content_start:content_end]
        think = _first_think(text, start)
    content = content.strip()
    if kind == SEARCH:
        if not content:
            return ParsedAction(ActionType.INVALID, "", think, end, "empty search query")
        return ParsedAction(ActionType.SEARCH, content[:MAX_QUERY_CHARS], think, end, "")
    return ParsedAction(ActionType.ANSWER, content, think, end, "")


def _first_block(text: str, tags: Sequence[str], limit: int | None = None) -> tuple[str, int, int, int, int] | None:
    """The earliest ``<tag>…</tag>`` among ``tags`` that is closed: (tag, start, content start, content end, end).

    An opening tag at ``p`` has a match iff its closing tag occurs after ``p``, so one ``rfind``
    per tag decides every candidate in O(1) and the whole scan stays linear.
    """
    limit = len(text) if limit is None else limit
    best = None
    for tag in tags:
        opening, closing = open_tag(tag), close_tag(tag)
        last_close = text.rfind(closing, 0, limit)
        start = text.find(opening, 0, limit)
        if start == -1 or last_close < start + len(opening):
            continue
        if best is None or start < best[1]:
            content_start = start + len(opening)
            content_end = text.find(closing, content_start, limit)
            best = (tag, start, content_start, content_end, content_end + len(closing))
    return best


def _first_think(text: str, before: int) -> str | None:
    block = _first_block(text, (THINK,), limit=before)
    return text[block[2] : block[3]].strip() if block else None


def _why_invalid(text: str) -> str:
    if not text.strip():
        return "empty action"
    for tag in (SEARCH, ANSWER):
        if open_tag(tag) in text and close_tag(tag) not in text:
            return f"unclosed <{tag}> tag"
    return "no <search>...</search> or <answer>...</answer> block"


def split_answers(answer_text: str) -> list[str]:
    """Split an answer block into positional answers (``"a; b"`` -> ``["a", "b"]``)."""
    return [part.strip() for part in answer_text.split(ANSWER_SEPARATOR)]


def format_turn(think: str, action: ActionType, content: str) -> str:
    """Write a well-formed turn (used by the oracle and tests)."""
    tag = SEARCH if action is ActionType.SEARCH else ANSWER
    return f"{open_tag(THINK)}{think}{close_tag(THINK)}\n{open_tag(tag)}{content}{close_tag(tag)}"


def join_answers(answers: Sequence[str]) -> str:
    return f"{ANSWER_SEPARATOR} ".join(answers)


# --------------------------------------------------------------------------------------------
# Answer normalisation (SQuAD style, Unicode-safe)
# --------------------------------------------------------------------------------------------

_ASCII_PUNCT = frozenset(string.punctuation)
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation plus Unicode: NFKC, lowercase, drop punctuation and articles, collapse spaces.

    Punctuation is deleted (not replaced by a space), as in SQuAD and Search-R1's training EM, so
    "U.S." == "US". NFKC folds compatibility forms (no-break spaces U+00A0/U+202F become plain spaces, full-width
    digits become ASCII, decomposed ``o`` + combining diaeresis becomes ``ö``); diacritics are
    kept, so "Röntgen" and "Rontgen" are different answers. Punctuation is every ASCII
    punctuation mark and every Unicode ``P*`` character (dashes, curly quotes).
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join("" if _is_punct(ch) else ch for ch in text)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


# ============================================================================================
# WebShop (DESIGN.md §4 and §9): <think>, <summary>, <answer>search[...]|click[...]</answer>;
# observations arrive in <state> with the page text and the actions available on the page.
# ============================================================================================

WEBSHOP_STOP_STRINGS: tuple[str, ...] = (close_tag(ANSWER),)
PAGE_SEPARATOR = " [SEP] "  # joins the visible text nodes of a page, as WebShop's "text" mode
SEARCH_PLACEHOLDER = "search[<keywords>]"

WEBSHOP_INSTRUCTIONS = """\
You are shopping on a web site for one product that matches the instruction below. You do not keep \
a transcript: at every turn you see only these instructions, your previous turn and the current page.

Every turn, do three things, in this order:
1. Inside <think> </think>, reason about the current page.
2. Inside <summary> </summary>, rewrite your memory: what you searched, the products you saw and \
what still has to match (attributes, options, price). Whatever you leave out of <summary> is \
forgotten after this turn.
3. Inside <answer> </answer>, give exactly one action from the available actions: \
search[keywords] where the page has a search bar, or click[label] with a label exactly as listed, \
for example <answer>click[buy now]</answer>.

Pages arrive inside <state> </state> together with the number of turns you have left and the \
available actions. Select every option the instruction asks for (size, colour, ...) on the product \
page before you click buy now; buying ends the episode.
"""


def webshop_prompt(instruction: str, max_turns: int | None = None) -> str:
    """The task prompt of a WebShop episode (the start of the first observation).

    Like :func:`qa_prompt` it holds no turns-left hint: the current count arrives in every state.
    """
    budget = f"You have {max_turns} turns in total.\n" if max_turns else ""
    return WEBSHOP_INSTRUCTIONS + budget + f"\nInstruction: {instruction}\n"


def render_available_actions(has_search_bar: bool, clickables: Sequence[str]) -> str:
    """The action list of a state, one action per line, in page order (search first)."""
    actions = ([SEARCH_PLACEHOLDER] if has_search_bar else []) + [f"click[{label}]" for label in clickables]
    return "Available actions:\n" + "\n".join(actions) if actions else "Available actions: none"


def state_block(hint: str, page_text: str, actions: str, message: str = "") -> str:
    """The exact text the WebShop envs inject after a turn: ``message`` explains a rejected action."""
    body = "\n".join(part for part in (hint, message, page_text, actions) if part)
    return f"\n\n{open_tag(STATE)}\n{body}\n{close_tag(STATE)}\n\n"


WEBSHOP_INVALID_ACTION_MESSAGE = (
    "Your previous turn had no valid action. End every turn with exactly one action inside "
    "<answer> </answer>: search[keywords] on a page with a search bar, or click[label] with a label "
    "from the available actions."
)


def unavailable_action_message(action: str, why: str) -> str:
    """Why a well-formed action could not be taken on the current page (the page did not change)."""
    return f"{action} is not available here ({why}); the page did not change. Pick one of the available actions."


class ShopActionType(enum.IntEnum):
    INVALID = 0
    SEARCH = 1
    CLICK = 2


@dataclass(frozen=True)
class ShopAction:
    """What the parser understood of one WebShop turn."""

    type: ShopActionType
    argument: str  # the keywords or the clicked label, stripped (case kept); "" when invalid
    think: str | None  # content of the first <think> block before the action, if any
    summary: str | None  # content of the first <summary> block before the action, if any
    end: int  # characters of the input consumed (through </answer>)
    error: str  # why the action is invalid; "" when valid

    @property
    def valid(self) -> bool:
        return self.type is not ShopActionType.INVALID

    @property
    def text(self) -> str:
        """The action in WebShop's syntax, e.g. ``click[buy now]``."""
        return f"{self.type.name.lower()}[{self.argument}]" if self.valid else ""


_SHOP_ACTION_RE = re.compile(r"\A\s*(search|click)\[(.*)\]\s*\Z", re.DOTALL | re.IGNORECASE)


def parse_shop_action(text: str) -> ShopAction:
    """Parse a full WebShop turn or a bare ``search[...]`` / ``click[...]``.

    The first complete ``<answer>…</answer>`` block holds the action (text after it is ignored, as
    generation stops there: ``WEBSHOP_STOP_STRINGS``); without one, the whole string must be a bare
    action. Never raises and runs in linear time, like :func:`parse_action`.
    """
    if not isinstance(text, str):
        return ShopAction(ShopActionType.INVALID, "", None, None, 0, f"action must be a str, got {type(text).__name__}")
    block = _first_block(text, (ANSWER,))
    if block is None:
        content, end, before = text, len(text), len(text)
    else:
        _, before, content_start, content_end, end = block
        content = text[content_start:content_end]
    think, summary = _first_think(text, before), _first_summary(text, before)

    def invalid(why: str) -> ShopAction:
        return ShopAction(ShopActionType.INVALID, "", think, summary, end, why)

    match = _SHOP_ACTION_RE.match(content)
    if match is None:
        if block is None:
            return invalid(_why_invalid_shop(text))
        return invalid("the answer must be search[keywords] or click[label]")
    kind, argument = match.group(1).lower(), match.group(2).strip()
    if not argument:
        return invalid(f"empty {kind}[] argument")
    kind_type = ShopActionType.SEARCH if kind == "search" else ShopActionType.CLICK
    return ShopAction(kind_type, argument[:MAX_QUERY_CHARS], think, summary, end, "")


def _first_summary(text: str, before: int) -> str | None:
    block = _first_block(text, (SUMMARY,), limit=before)
    return text[block[2] : block[3]].strip() if block else None


def _why_invalid_shop(text: str) -> str:
    if not text.strip():
        return "empty action"
    if open_tag(ANSWER) in text:
        return "unclosed <answer> tag"
    return "no <answer>...</answer> block and no bare search[...] or click[...]"


def format_shop_turn(think: str, summary: str, action: str) -> str:
    """Write a well-formed WebShop turn (used by the oracle and tests)."""
    return (
        f"{open_tag(THINK)}{think}{close_tag(THINK)}\n{open_tag(SUMMARY)}{summary}{close_tag(SUMMARY)}\n"
        f"{open_tag(ANSWER)}{action}{close_tag(ANSWER)}"
    )


# --------------------------------------------------------------------------------------------
# Web QA (issue 6): <search> returns web results, <open>url</open> reads one page
# --------------------------------------------------------------------------------------------
# The QA names above stay untouched: a web turn adds one action, so it has its own action type,
# parser, stop strings and prompt, built from the same pieces (_first_block, information_block).

OPEN = "open"
WEB_STOP_STRINGS: tuple[str, ...] = (close_tag(SEARCH), close_tag(OPEN), close_tag(ANSWER))
MAX_URL_CHARS = 2048  # longer URLs are junk or an attack; browsers and CDNs cut near here too

_WEB_ACTION_LINE = (
    "search the web with one keyword query for one question inside <search> </search>, "
)
_WEB_OPEN_LINE = (
    "read one page of the results inside <open> </open>, for example <open>http://example.org/page</open>, "
)


def webqa_instructions(allow_open: bool) -> str:
    """The instructions of a web QA episode; ``allow_open`` adds the ``<open>`` action."""
    actions = _WEB_ACTION_LINE + (_WEB_OPEN_LINE if allow_open else "")
    results = "Search results (title, URL and snippet of each page)" + (" and page text" if allow_open else "")
    return (
        "You will answer several questions with a web search engine. You can use it as often as your turn "
        "budget allows, but you do not keep a transcript: at every turn you see only these instructions, "
        "your previous turn and the latest results.\n\n"
        "Every turn, do two things, in this order:\n"
        "1. Inside <think> </think>, rewrite your memory: the answers found so far, what is still missing and "
        "anything from the new results that you will need later. Whatever you leave out of <think> is "
        "forgotten after this turn.\n"
        f"2. Then either {actions}or, once every question is answered (or when you are told to answer now), "
        "give all answers in question order, separated by semicolons, inside <answer> </answer>, for example "
        "<answer> answer1; answer2 </answer>. Answers are short: a name, a date, a number, a place; no "
        "explanations.\n\n"
        f"{results} arrive inside <information> </information> together with the number of turns you have "
        "left. Never write <information> yourself, and never search for two questions at once.\n"
    )


def webqa_prompt(questions: Sequence[str], max_turns: int | None = None, allow_open: bool = False) -> str:
    """The task prompt of a web QA episode: :func:`qa_prompt` with the web instructions."""
    return webqa_instructions(allow_open) + qa_prompt(questions, max_turns)[len(QA_INSTRUCTIONS) :]


def web_invalid_action_message(allow_open: bool) -> str:
    """What an invalid web turn is told; it names ``<open>`` only when the env allows it."""
    opening = "<open>url</open> to read a page, " if allow_open else ""
    return (
        "Your previous turn had no valid action. End every turn with exactly one action: "
        f"<search>one keyword query</search> to search the web, {opening}or "
        "<answer>answer1; answer2; ...</answer> with one answer per question, in order, separated by semicolons."
    )


class WebActionType(enum.IntEnum):
    """The action of a web QA turn (values shared with :class:`ActionType` where the names are)."""

    INVALID = 0
    SEARCH = 1
    ANSWER = 2
    OPEN = 3


@dataclass(frozen=True)
class ParsedWebAction:
    """What :func:`parse_web_action` understood of one agent turn (fields as :class:`ParsedAction`)."""

    type: WebActionType
    content: str  # the query, the URL, or the raw answer text; "" when invalid
    think: str | None
    end: int
    error: str

    @property
    def valid(self) -> bool:
        return self.type is not WebActionType.INVALID


_WEB_BARE_RE = re.compile(r"\A\s*(search|open|answer)\[(.*)\]\s*\Z", re.DOTALL)
_WEB_KINDS = {SEARCH: WebActionType.SEARCH, OPEN: WebActionType.OPEN, ANSWER: WebActionType.ANSWER}


def parse_web_action(text: str) -> ParsedWebAction:
    """Parse a web QA turn: the first complete ``<search>``, ``<open>`` or ``<answer>`` block, or a
    bare ``search[q]`` / ``open[url]`` / ``answer[a1; a2]``. Same rules and linear time as
    :func:`parse_action`; never raises. Whether ``open`` is allowed is the env's decision, not the parser's.
    """
    if not isinstance(text, str):
        return ParsedWebAction(WebActionType.INVALID, "", None, 0, f"action must be a str, got {type(text).__name__}")
    block = _first_block(text, (SEARCH, OPEN, ANSWER))
    if block is None:
        bare = _WEB_BARE_RE.match(text)
        if bare is None:
            think, why = _first_think(text, len(text)), _why_invalid_web(text)
            return ParsedWebAction(WebActionType.INVALID, "", think, len(text), why)
        kind, content, end, think = bare.group(1), bare.group(2), len(text), None
    else:
        kind, start, content_start, content_end, end = block
        content = text[content_start:content_end]
        think = _first_think(text, start)
    content = content.strip()
    action = _WEB_KINDS[kind]
    if action is WebActionType.SEARCH and not content:
        return ParsedWebAction(WebActionType.INVALID, "", think, end, "empty search query")
    if action is WebActionType.OPEN and not content:
        return ParsedWebAction(WebActionType.INVALID, "", think, end, "empty URL in <open>")
    if action is WebActionType.OPEN and (len(content) > MAX_URL_CHARS or any(c.isspace() for c in content)):
        return ParsedWebAction(WebActionType.INVALID, "", think, end, "malformed URL in <open> (spaces, or too long)")
    limit = MAX_QUERY_CHARS if action is WebActionType.SEARCH else len(content)
    return ParsedWebAction(action, content[:limit], think, end, "")


def _why_invalid_web(text: str) -> str:
    if not text.strip():
        return "empty action"
    for tag in (SEARCH, OPEN, ANSWER):
        if open_tag(tag) in text and close_tag(tag) not in text:
            return f"unclosed <{tag}> tag"
    return "no <search>...</search>, <open>...</open> or <answer>...</answer> block"


def format_web_result(rank: int, title: str, url: str, snippet: str) -> str:
    """One search result: Search-R1's ``Doc i(Title: …)`` head, then the URL to open and the snippet."""
    return f"Doc {rank}(Title: {title})\nURL: {url}\n{snippet}"


class HasTitleUrlSnippet(Protocol):
    title: str
    url: str
    snippet: str


def render_web_results(results: Iterable[HasTitleUrlSnippet]) -> str:
    """Results with ``title``, ``url`` and ``snippet`` attributes, best first, one blank line apart."""
    return "\n\n".join(format_web_result(i, r.title, r.url, r.snippet) for i, r in enumerate(results, start=1))


def render_page(url: str, title: str, text: str, links: Sequence[tuple[str, str]] = (), cut: bool = False) -> str:
    """The body of an ``<open>`` observation: where the page is, its title, its main text, its links."""
    parts = [f"Page: {url}", f"Title: {title}", "", text.strip() or "(no readable text on this page)"]
    if cut:
        parts.append("[... the rest of the page was cut]")
    if links:
        parts += ["", "Links on this page:"] + [f"- {label}: {href}" for label, href in links]
    return "\n".join(parts)


def search_failed_message(error: str) -> str:
    return f"The search failed: {error}. Try again or answer with what you know."


def open_failed_message(url: str, error: str) -> str:
    return f"The page {url} could not be opened: {error}. Open another result or search again."
