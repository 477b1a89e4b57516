"""The WebShop protocol: <think>, <summary> (the persistent memory) and <answer>search[...]|click[...]</answer>;
observations arrive in <state> with the page text and the actions available on the page."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Sequence

from mem1_gym.protocol.base import (
    ANSWER,
    MAX_QUERY_CHARS,
    STATE,
    SUMMARY,
    THINK,
    EnvProtocol,
    TurnGrammar,
    close_tag,
    open_tag,
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


_SHOP_KINDS = {"search": ShopActionType.SEARCH, "click": ShopActionType.CLICK}


def _check_shop(kind: str, argument: str) -> tuple[str, str]:
    """Keywords and labels must not be empty; both are capped at ``MAX_QUERY_CHARS``."""
    return (argument[:MAX_QUERY_CHARS], "") if argument else ("", f"empty {kind}[] argument")


SHOP_GRAMMAR = TurnGrammar(kinds=("search", "click"), check=_check_shop, envelope=ANSWER,
                           memory_tags=(THINK, SUMMARY), ignore_case=True, placeholders=("keywords", "label"))
WEBSHOP_PROTOCOL = EnvProtocol(
    family="webshop", grammar=SHOP_GRAMMAR, stop_strings=WEBSHOP_STOP_STRINGS,
    final_turn_stop_strings=WEBSHOP_STOP_STRINGS, score_keys=("reward", "success"), task_index_key="goal_index",
)
"""The protocol of ``MEM1-WebShop`` and ``MEM1-WebShop-Text`` (each env binds it to its split's goal ids)."""


def parse_shop_action(text: str) -> ShopAction:
    """Parse a full WebShop turn or a bare ``search[...]`` / ``click[...]``.

    The first complete ``<answer>…</answer>`` block outside ``<think>`` holds the action (text after
    it is ignored, as generation stops there: ``WEBSHOP_STOP_STRINGS``); without one, the whole
    string must be a bare action. One parser for every family (:meth:`TurnGrammar.parse`): never
    raises and runs in linear time, like :func:`parse_action`.
    """
    turn = SHOP_GRAMMAR.parse(text)
    kind = _SHOP_KINDS[turn.kind] if turn.valid else ShopActionType.INVALID
    return ShopAction(kind, turn.argument, turn.think, turn.memory.get(SUMMARY), turn.end, turn.error)


def format_shop_turn(think: str, summary: str, action: str) -> str:
    """Write a well-formed WebShop turn (used by the oracle and tests)."""
    return (
        f"{open_tag(THINK)}{think}{close_tag(THINK)}\n{open_tag(SUMMARY)}{summary}{close_tag(SUMMARY)}\n"
        f"{open_tag(ANSWER)}{action}{close_tag(ANSWER)}"
    )
