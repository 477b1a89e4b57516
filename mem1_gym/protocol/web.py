"""The web QA protocol: the QA turn plus <open>url</open>; search results rendered as title / URL / snippet."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

from mem1_gym.protocol.base import ANSWER, SEARCH, EnvProtocol, TurnGrammar, close_tag
from mem1_gym.protocol.qa import QA_FINAL_TURN_STOP_STRINGS, QA_INSTRUCTIONS, check_qa_argument, format_doc, qa_prompt

# The QA names above stay untouched: a web turn adds one action, so it has its own action type,
# grammar, stop strings and prompt, built from the same pieces (TurnGrammar, information_block).

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


_WEB_KINDS = {SEARCH: WebActionType.SEARCH, OPEN: WebActionType.OPEN, ANSWER: WebActionType.ANSWER}


def _check_web(kind: str, argument: str) -> tuple[str, str]:
    """The QA checks, plus a URL to open: one token of at most ``MAX_URL_CHARS``."""
    if kind != OPEN:
        return check_qa_argument(kind, argument)
    if not argument:
        return "", "empty URL in <open>"
    if len(argument) > MAX_URL_CHARS or any(c.isspace() for c in argument):
        return "", "malformed URL in <open> (spaces, or too long)"
    return argument, ""


WEB_GRAMMAR = TurnGrammar(kinds=(SEARCH, OPEN, ANSWER), check=_check_web)
WEBQA_PROTOCOL = EnvProtocol(
    family="webqa", grammar=WEB_GRAMMAR, stop_strings=WEB_STOP_STRINGS,
    final_turn_stop_strings=QA_FINAL_TURN_STOP_STRINGS, score_keys=("em", "f1"),
)
"""The protocol of ``MEM1-WebQA-N`` (each env binds it to its split's task ids)."""


def parse_web_action(text: str) -> ParsedWebAction:
    """Parse a web QA turn: the first complete ``<search>``, ``<open>`` or ``<answer>`` block, or a
    bare ``search[q]`` / ``open[url]`` / ``answer[a1; a2]``. Same rules and linear time as
    :func:`parse_action` (one parser: :meth:`TurnGrammar.parse`); never raises. Whether ``open``
    is allowed is the env's decision, not the parser's.
    """
    turn = WEB_GRAMMAR.parse(text)
    kind = _WEB_KINDS[turn.kind] if turn.valid else WebActionType.INVALID
    return ParsedWebAction(kind, turn.argument, turn.think, turn.end, turn.error)


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


def render_web_results_mem1(results: Iterable[HasTitleUrlSnippet]) -> str:
    """Results as MEM1's web search servers rendered them (``prompt_format="mem1"``): a result's contents
    were ``"title"\\nsnippet``, shown as a Search-R1 passage, quoted title, no URL (reference/mem1.md §4.5)."""
    return "\n".join(format_doc(i, f'"{r.title}"', r.snippet) for i, r in enumerate(results, start=1))


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
