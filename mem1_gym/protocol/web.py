"""The web QA protocol: the QA turn plus <open>url</open>; search results rendered as title / URL / snippet."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

from mem1_gym.protocol.qa import (
    ANSWER,
    MAX_QUERY_CHARS,
    QA_INSTRUCTIONS,
    SEARCH,
    UNCLOSED_THINK_ERROR,
    close_tag,
    first_action_block,
    first_block,
    first_think,
    format_doc,
    open_tag,
    qa_prompt,
    unclosed_think,
)

# The QA names above stay untouched: a web turn adds one action, so it has its own action type,
# parser, stop strings and prompt, built from the same pieces (first_block, information_block).

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
    block = first_action_block(text, (SEARCH, OPEN, ANSWER))
    if block is None:
        bare = _WEB_BARE_RE.match(text)
        if bare is None:
            think, why = first_think(text, len(text)), _why_invalid_web(text)
            return ParsedWebAction(WebActionType.INVALID, "", think, len(text), why)
        kind, content, end, think = bare.group(1), bare.group(2), len(text), None
    else:
        kind, start, content_start, content_end, end = block
        content = text[content_start:content_end]
        think = first_think(text, start)
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
    if unclosed_think(text):
        return UNCLOSED_THINK_ERROR
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
