"""The page model: a page is a list of nodes, rendered as HTML for the browser or as text for agents.

Both envs observe the same thing because both read the same nodes: the text env joins the nodes'
text directly, the browser env reads the text nodes of the HTML rendered from them (one DOM text
node per model node, in order). ``parse_html`` re-derives text and clickables from HTML with the
standard library parser, the original's per-step way (the benchmark's baseline, and a parity check).

Clickable labels (reference/webshop.md §6.2): a button's or product link's lower-cased text, an option's
value. The original keyed these in a dict, so two options with the same value in different groups
(or an option named like a button) collided and the last won. Here a label that would collide is
qualified for options as ``"<group>: <value>"``, and a duplicate button keeps its first occurrence.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser

from mem1_gym.protocol import PAGE_SEPARATOR

# Characters that either Python's str.split() or JavaScript's trim() treat as white space, plus the
# other control characters: collapsed to one space so that both sides see the same strings.
_SPACE_RE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b\ufeff\ud800-\udfff]+")
CLICKABLE_KINDS = ("button", "product", "option")


def clean_text(text: str) -> str:
    """Display form of any text: control characters and runs of white space become one space."""
    return _SPACE_RE.sub(" ", text).strip(" ")


@dataclass(frozen=True)
class Node:
    """One visible element: its text and, for clickables, where it leads."""

    kind: str  # "title", "heading", "text", "button", "product", "option", "search", "reward"
    text: str
    href: str = ""  # target of a button, product link or option
    group: str = ""  # option group (the radio's name)
    checked: bool = False
    data: str = ""  # the reward node's breakdown as JSON (an attribute, so never part of the text)


@dataclass(frozen=True)
class Page:
    """A rendered page: its nodes, the search form's target if it has one, and the purchase result."""

    name: str  # search, results, item, description, features, reviews, attributes, done; not_found, invalid, expired, error
    url: str
    nodes: tuple[Node, ...]
    search_url: str = ""  # GET target of the search form ("" when the page has no search bar)
    reward_info: dict | None = field(default=None)  # the done page's reward breakdown
    status: int = 200  # the HTTP status the server answers with

    @property
    def text(self) -> str:
        """WebShop's "text" observation: every visible text joined by " [SEP] "."""
        return PAGE_SEPARATOR.join(node.text for node in self.nodes if node.text)

    def raw_clickables(self) -> list[tuple[str, str, str]]:
        """(kind, text, group) of every clickable in page order, as the DOM lists them."""
        return [(n.kind, n.text, n.group) for n in self.nodes if n.kind in CLICKABLE_KINDS]

    def clickable_targets(self) -> dict[str, Node]:
        """Label -> node for every clickable (labels as :func:`label_clickables` makes them)."""
        nodes = [n for n in self.nodes if n.kind in CLICKABLE_KINDS]
        labels = label_clickables(self.raw_clickables())
        return {label: node for label, node in zip(labels, nodes, strict=True) if label is not None}


def label_clickables(raw: Sequence[tuple[str, str, str]]) -> list[str | None]:
    """Labels of raw clickables (kind, text, group); None marks a duplicate button that is dropped.

    An option whose value is shared with another clickable on the page is labelled
    ``"<group>: <value>"``; any other repeated label keeps its first occurrence only.
    """
    bases = [text.lower() for _, text, _ in raw]
    counts: dict[str, int] = {}
    for base in bases:
        counts[base] = counts.get(base, 0) + 1
    labels: list[str | None] = []
    seen: set[str] = set()
    for (kind, _, group), base in zip(raw, bases):
        label = f"{group}: {base}" if kind == "option" and counts[base] > 1 else base
        labels.append(None if label in seen or not label else label)
        seen.add(label)
    return labels


def available_clickables(raw: Sequence[tuple[str, str, str]]) -> list[str]:
    return [label for label in label_clickables(raw) if label is not None]


# ------------------------------------------------------------------------------------ HTML

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:860px;margin:2em auto;color:#222}
a.btn{display:inline-block;margin:.2em;padding:.3em .8em;border:1px solid #888;border-radius:4px;
text-decoration:none;color:#222;background:#f4f4f4}
a.product-link{font-weight:bold} label.option{margin-right:1em} h1{color:#c45500}
#search_input{width:70%;padding:.4em}
"""
_TAGS = {"title": "h1", "heading": "h4", "text": "p"}


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _node_html(node: Node, search_url: str) -> str:
    text = html.escape(node.text, quote=False)
    if node.kind in _TAGS:
        tag = _TAGS[node.kind]
        return f"<{tag}>{text}</{tag}>"
    if node.kind == "button":
        return f'<a class="btn" href="{_attr(node.href)}">{text}</a>'
    if node.kind == "product":
        return f'<p><a class="product-link" href="{_attr(node.href)}">{text}</a></p>'
    if node.kind == "option":
        checked = " checked" if node.checked else ""
        return (
            f'<label class="option"><input type="radio" name="{_attr(node.group)}" value="{_attr(node.text)}" '
            f'data-url="{_attr(node.href)}" onclick="window.location.href=this.dataset.url"{checked}>{text}</label>'
        )
    if node.kind == "search":
        return (
            f'<form id="search-form" method="get" action="{_attr(search_url)}">'
            f'<input id="search_input" name="q" type="text" autocomplete="off">'
            f'<input type="hidden" name="page" value="1"><button type="submit">{text}</button></form>'
        )
    if node.kind == "reward":
        return f'<pre id="reward" data-info="{_attr(node.data)}">{text}</pre>'
    raise ValueError(f"unknown node kind {node.kind!r}")


def render_html(page: Page, nonce: int = 0) -> str:
    """The HTML the server sends; ``nonce`` lets the browser env see that a new page arrived."""
    body = "\n".join(_node_html(node, page.search_url) for node in page.nodes)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>WebShop</title>'
        f"<style>{_STYLE}</style></head>\n"
        f'<body data-page="{page.name}" data-nonce="{nonce}">\n{body}\n</body></html>\n'
    )


class _Parser(HTMLParser):
    """Visible text nodes, clickables and the search form, the way the browser env reads the DOM."""

    _SKIP = frozenset({"style", "script", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.raw_clickables: list[tuple[str, str, str]] = []
        self.has_search = False
        self._skip = 0
        self._open_link: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "a":
            classes = a.get("class", "").split()
            self._open_link = "button" if "btn" in classes else "product" if "product-link" in classes else None
        elif tag == "input" and a.get("type") == "radio":
            self.raw_clickables.append(("option", a.get("value", ""), a.get("name", "")))
        elif tag == "input" and a.get("id") == "search_input":
            self.has_search = True

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip -= 1
        elif tag == "a":
            self._open_link = None

    def handle_data(self, data: str) -> None:
        text = data.strip()
        if self._skip or not text:
            return
        self.texts.append(text)
        if self._open_link:
            self.raw_clickables.append((self._open_link, text, ""))


def parse_html(page_html: str) -> tuple[str, list[tuple[str, str, str]], bool]:
    """(text observation, raw clickables, has search bar) of an HTML page: the original-style path."""
    parser = _Parser()
    parser.feed(page_html)
    parser.close()
    return PAGE_SEPARATOR.join(parser.texts), parser.raw_clickables, parser.has_search
