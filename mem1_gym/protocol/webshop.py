"""The WebShop protocol: <think>, <summary> (the persistent memory) and <answer>search[...]|click[...]</answer>;
observations arrive in <state> with the page text and the actions available on the page."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Sequence

from mem1_gym.protocol.qa import (
    ANSWER,
    MAX_QUERY_CHARS,
    STATE,
    SUMMARY,
    THINK,
    UNCLOSED_THINK_ERROR,
    close_tag,
    first_action_block,
    first_block,
    first_think,
    open_tag,
    unclosed_think,
)

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
    block = first_action_block(text, (ANSWER,))
    if block is None:
        content, end, before = text, len(text), len(text)
    else:
        _, before, content_start, content_end, end = block
        content = text[content_start:content_end]
    think, summary = first_think(text, before), _first_summary(text, before)

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
    block = first_block(text, (SUMMARY,), limit=before)
    return text[block[2] : block[3]].strip() if block else None


def _why_invalid_shop(text: str) -> str:
    if not text.strip():
        return "empty action"
    if unclosed_think(text):
        return UNCLOSED_THINK_ERROR
    if open_tag(ANSWER) in text:
        return "unclosed <answer> tag"
    return "no <answer>...</answer> block and no bare search[...] or click[...]"


def format_shop_turn(think: str, summary: str, action: str) -> str:
    """Write a well-formed WebShop turn (used by the oracle and tests)."""
    return (
        f"{open_tag(THINK)}{think}{close_tag(THINK)}\n{open_tag(SUMMARY)}{summary}{close_tag(SUMMARY)}\n"
        f"{open_tag(ANSWER)}{action}{close_tag(ANSWER)}"
    )
