"""Main text of an HTML page: headings and paragraphs kept, navigation, scripts and styles dropped.

Built on the standard library's incremental ``html.parser`` (no lxml: the offline default must
work with the core install), so a page is parsed as it streams in and parsing stops once the
text budget is full. Work and memory are linear in the input: the open-element stack is capped
and an end tag is matched against the top few entries only, so a page of a million unclosed or
mismatched tags costs one pass, not a quadratic search.

>>> page = extract_html('<html><head><title>Kest</title><script>x()</script></head><body>'
...                     '<nav><a href="/">Home</a></nav><h1>Kest River</h1><p>It flows <b>east</b>.</p>'
...                     '<p><a href="/wiki/2">Tarsen</a></p></body></html>', base_url="http://w/wiki/1")
>>> page.title, page.text, page.links
('Kest', '# Kest River\\nIt flows east.\\nTarsen', (('Tarsen', 'http://w/wiki/2'),))
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

# Elements whose text is never page content.
_SKIP = frozenset(
    {"script", "style", "noscript", "template", "svg", "math", "nav", "aside", "form", "iframe", "object",
     "button", "select", "textarea", "canvas", "dialog", "head"}
)
# Site chrome: skipped at page level, kept inside an article (HTML5 puts the article's h1 in its <header>).
_CHROME = frozenset({"header", "footer"})
_CONTENT = frozenset({"article", "main"})
_CHROME_ROLES = frozenset({"navigation", "banner", "contentinfo", "search", "complementary", "menu", "menubar"})
_BLOCK = frozenset(
    {"p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "blockquote",
     "pre", "figcaption", "h1", "h2", "h3", "h4", "h5", "h6", "br", "hr", "header", "footer", "td", "th", "caption"}
)
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
)
FEED_CHARS = 1 << 16  # parse in 64 K pieces, so that a full budget stops the work early
_MAX_STACK = 512  # deeper nesting is not a real page; further elements are not tracked
_MAX_LABEL = 200  # characters of a link's text kept
_MATCH_WINDOW = 16  # an end tag closes one of the 16 innermost open elements, or is ignored
_SPACES = re.compile(r"\s+")
_TAG = re.compile(r"<[^<>]*>")


@dataclass(frozen=True)
class Extracted:
    """The readable part of a page."""

    title: str
    text: str  # blocks on their own lines, headings marked "# ", whitespace collapsed
    links: tuple[tuple[str, str], ...]  # (anchor text, absolute http(s) URL), page order, no duplicates
    cut: bool  # the text budget ran out before the page did


class PageExtractor(HTMLParser):
    """Feed HTML in pieces (:meth:`feed`), stop early once :attr:`full`, then :meth:`result`.

    Past the text budget, parsing goes on only to collect links (pages list theirs after the text).
    """

    def __init__(self, base_url: str = "", max_chars: int = 20_000, max_links: int = 50):
        super().__init__(convert_charrefs=True)
        self.base_url, self.max_chars, self.max_links = base_url, max_chars, max_links
        self._stack: list[tuple[str, bool]] = []  # (tag, hides its content)
        self._hidden = 0  # open elements that hide their content
        self._in_content = 0  # open <article>/<main> elements
        self._lines: list[str] = []
        self._line: list[str] = []
        self._chars = 0
        self._title: list[str] | None = None  # collecting while inside <title>
        self._title_text = ""
        self._link: tuple[str, list[str]] | None = None  # (href, anchor text) while inside <a>
        self._links: dict[str, str] = {}
        self._text_full = False
        self.full = False  # text budget and link list both full: nothing more to read

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self._title_text:
            self._title = []
        if tag in _VOID:
            if tag in ("br", "hr"):
                self._break()
            return
        hides = tag in _SKIP or (tag in _CHROME and not self._in_content) or _is_chrome(attrs)
        if len(self._stack) < _MAX_STACK:
            self._stack.append((tag, hides))
            self._hidden += hides
            self._in_content += tag in _CONTENT
        if tag in _BLOCK:
            self._break()
        if tag in _HEADINGS and not self._hidden:
            self._line.append("#" * _HEADINGS[tag] + " ")
        if tag == "a" and not self._hidden:
            self._link = (dict(attrs).get("href") or "", [])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title is not None:
            self._title_text, self._title = _collapse("".join(self._title)), None
        if tag == "a" and self._link is not None:
            self._add_link(*self._link)
            self._link = None
        window = self._stack[-_MATCH_WINDOW:]
        for depth in range(len(window) - 1, -1, -1):
            if window[depth][0] == tag:
                for closed, hides in self._stack[len(self._stack) - len(window) + depth :]:
                    self._hidden -= hides
                    self._in_content -= closed in _CONTENT
                del self._stack[len(self._stack) - len(window) + depth :]
                break
        if tag in _BLOCK:
            self._break()

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)
            return
        if self._hidden:
            return
        if self._link is not None and len(self._links) < self.max_links:
            self._link[1].append(data)
        if self._text_full:
            return
        self._line.append(data)
        self._chars += len(data) if not data.isspace() else 1
        if self._chars > self.max_chars:
            self._text_full = True
        self.full = self._text_full and len(self._links) >= self.max_links

    def result(self) -> Extracted:
        """The text so far (call after the last :meth:`feed`; :meth:`close` is not needed)."""
        self._break()
        text = "\n".join(self._lines)
        cut = len(text) > self.max_chars
        if cut:
            text = _cut(text, self.max_chars)
        title = self._title_text or _collapse("".join(self._title or []))
        return Extracted(title, text, tuple((label, url) for url, label in self._links.items()), cut or self._text_full)

    def _break(self) -> None:
        line = _collapse("".join(self._line))
        self._line = []
        if line and line.strip("# "):
            self._lines.append(line)

    def _add_link(self, href: str, label_parts: list[str]) -> None:
        label = _collapse("".join(label_parts))
        if not label or len(self._links) >= self.max_links or href.startswith("#"):
            return
        url = urljoin(self.base_url, href.strip()).split("#", 1)[0]
        if urlsplit(url).scheme in ("http", "https") and url not in self._links:
            self._links[url] = label[:_MAX_LABEL]
            self.full = self._text_full and len(self._links) >= self.max_links


def _is_chrome(attrs: list[tuple[str, str | None]]) -> bool:
    """Elements that announce themselves as navigation, or as hidden, are not content."""
    values = dict(attrs)
    return (
        (values.get("role") or "").lower() in _CHROME_ROLES
        or "hidden" in values
        or (values.get("aria-hidden") or "").lower() == "true"
    )


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _cut(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at a word boundary when one is near."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    space = max(head.rfind(" "), head.rfind("\n"))
    return head[:space] if space > max_chars * 0.8 else head


def extract_html(markup: str, base_url: str = "", max_chars: int = 20_000, max_links: int = 50) -> Extracted:
    """Extract an HTML string, in pieces, stopping once the text budget is full (as a stream is)."""
    parser = PageExtractor(base_url, max_chars, max_links)
    for start in range(0, len(markup), FEED_CHARS):
        parser.feed(markup[start : start + FEED_CHARS])
        if parser.full:
            break
    return parser.result()


def extract_text(text: str, max_chars: int = 20_000) -> Extracted:
    """A ``text/plain`` page: whitespace collapsed per line, cut to the budget."""
    lines = [line for line in (_collapse(raw) for raw in text.splitlines()) if line]
    joined = "\n".join(lines)
    return Extracted("", _cut(joined, max_chars), (), len(joined) > max_chars)


def strip_tags(fragment: str) -> str:
    """Plain text of a short HTML fragment (search snippets carry ``<strong>`` highlights)."""
    return _collapse(html.unescape(_TAG.sub("", fragment)))
