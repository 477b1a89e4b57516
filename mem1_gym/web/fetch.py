"""Open a page for ``<open>url</open>``: refuse what must not be fetched, stream the rest with caps, decode, extract.

* **Which URLs** (:class:`UrlPolicy`): http(s) only, no credentials in the URL. With the local
  mini-web only its own origin is allowed, checked before any network access. With a live
  provider only public hosts: names and addresses that are loopback, private, link-local or
  reserved are refused (after DNS resolution; every redirect hop is checked again). A name that
  re-resolves between the check and the connection (DNS rebinding) is not prevented.
* **How much**: at most ``max_bytes`` of the body are read, in pieces, and parsing stops as soon
  as the text budget is full, so a 10 MB page costs a bounded read, never 10 MB in memory.
  The whole download also stops after ``deadline`` seconds (a server that drips one byte at a time
  would otherwise hold the env for ``timeout`` per byte).
* **Encodings**: the charset of the Content-Type header, else a BOM or ``<meta charset>`` in the
  first bytes, else UTF-8 if the first bytes decode as UTF-8, else Windows-1252 (the HTML default);
  undecodable bytes become U+FFFD, never an error.
* **Broken answers** (a body that breaks off, bad chunking, bad gzip), raised while the body is
  streamed, are :class:`WebError` like every other failure (issue 21).
"""

from __future__ import annotations

import codecs
import ipaddress
import re
import socket
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urljoin, urlsplit

from mem1_gym.web.client import WebClient, WebError
from mem1_gym.web.extract import Extracted, PageExtractor, extract_text

MAX_REDIRECTS = 5
_READ_BYTES = 1 << 16
_SNIFF_BYTES = 4096
_ACCEPT = {"Accept": "text/html,application/xhtml+xml;q=0.9,text/plain;q=0.8"}
_TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs ``<open>`` may fetch."""

    origins: tuple[str, ...] = ()
    """Allowed ``scheme://host:port`` origins; empty: any public host."""
    allow_private: bool = False
    """Allow loopback, private and link-local hosts (only for an explicit local origin)."""

    def refusal(self, url: str) -> str:
        """Why ``url`` may not be fetched ("" if it may), decided without any network access."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as err:
            return f"not a valid URL ({err})"
        if parts.scheme not in ("http", "https"):
            return f"only http:// and https:// pages can be opened, not {parts.scheme or 'a relative'} URLs"
        if not parts.hostname:
            return "the URL has no host"
        if parts.username is not None or parts.password is not None:
            return "URLs with credentials are not opened"
        if self.origins:
            if origin(parts.scheme, parts.hostname, port) not in self.origins:
                return f"this environment only opens pages of {', '.join(self.origins)} (the local mini-web)"
            return ""
        if not self.allow_private and _is_private_name(parts.hostname):
            return "local and private network addresses are not opened"
        return ""

    def check_resolved(self, url: str) -> None:
        """Raise :class:`WebError` if a public-only policy meets a host that resolves to a private address."""
        if self.origins or self.allow_private:
            return
        host = urlsplit(url).hostname or ""
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as err:
            raise WebError(f"cannot resolve {host!r} ({err})") from err
        if any(not ipaddress.ip_address(info[4][0].split("%")[0]).is_global for info in infos):
            raise WebError(f"refused to open {url}: {host} resolves to a local or private address")


def origin(scheme: str, host: str, port: int | None) -> str:
    """``scheme://host:port`` with the default port spelled out, as :attr:`UrlPolicy.origins` holds them."""
    port = port or (443 if scheme == "https" else 80)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host.lower()}:{port}"


def _is_private_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False  # a name: checked after resolution (UrlPolicy.check_resolved)


@dataclass(frozen=True)
class Page:
    """An opened page."""

    url: str  # after redirects
    title: str
    text: str
    links: tuple[tuple[str, str], ...]
    cut: bool  # text budget or byte cap reached before the end of the page
    bytes_read: int


def fetch_page(
    client: WebClient,
    url: str,
    policy: UrlPolicy,
    *,
    max_bytes: int = 1 << 20,
    max_chars: int = 4000,
    max_links: int = 10,
    deadline: float = 20.0,
    route: Callable[[str], str] | None = None,
) -> Page:
    """Fetch and extract ``url`` under ``policy``; :class:`WebError` says why it could not be opened.

    ``route`` maps an allowed URL to the one actually requested (the mini-web's stable public
    URLs to its loopback port); the page keeps the URL the agent saw.
    """
    for _ in range(MAX_REDIRECTS + 1):
        why = policy.refusal(url)
        if why:
            raise WebError(f"refused to open {url}: {why}")
        policy.check_resolved(url)
        response = client.stream("GET", route(url) if route else url, what="page", allow_redirects=False,
                                 headers=_ACCEPT)
        if not response.is_redirect:
            break
        response.close()
        url = urljoin(url, response.headers.get("Location", ""))
    else:
        raise WebError(f"more than {MAX_REDIRECTS} redirects")
    with response, client.mapped("page"):
        if response.status_code != 200:
            raise WebError(f"HTTP {response.status_code} {response.reason or ''}".strip())
        kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind not in _TEXT_TYPES:
            raise WebError(f"not a text page ({kind}); open an HTML page instead")
        extracted, n_bytes, capped = _read(response, url, kind, max_bytes, max_chars, max_links, deadline)
    return Page(url, extracted.title, extracted.text, extracted.links, extracted.cut or capped, n_bytes)


def _read(response, url, kind, max_bytes, max_chars, max_links, deadline) -> tuple[Extracted, int, bool]:
    """Stream the body into the extractor; stop at the byte cap, a full text budget or the deadline."""
    stop_at = time.monotonic() + deadline
    raw, n_bytes, decoder, pieces, capped = response.raw, 0, None, [], False
    parser = None if kind == "text/plain" else PageExtractor(url, max_chars, max_links)
    while True:
        if n_bytes >= max_bytes or time.monotonic() >= stop_at or (parser is not None and parser.full):
            capped = True
            break
        # read1 returns what one socket read gives, so the deadline is checked between small reads.
        chunk = raw.read1(min(_READ_BYTES, max_bytes - n_bytes), decode_content=True)
        if not chunk:
            break
        n_bytes += len(chunk)
        if decoder is None:
            decoder = codecs.getincrementaldecoder(_encoding(response, chunk))(errors="replace")
        text = decoder.decode(chunk)
        if parser is not None:
            parser.feed(text)
        else:
            pieces.append(text)
    extracted = parser.result() if parser is not None else extract_text("".join(pieces), max_chars)
    return extracted, n_bytes, capped


def _encoding(response, first: bytes) -> str:
    declared = _lookup(response.headers.get("Content-Type", "").partition("charset=")[2].strip(" \"'"))
    if declared:
        return declared
    for bom, name in _BOMS:
        if first.startswith(bom):
            return name
    meta = _META_CHARSET.search(first[:_SNIFF_BYTES])
    if meta and _lookup(meta.group(1).decode("ascii", "replace")):
        return _lookup(meta.group(1).decode("ascii", "replace"))
    try:
        codecs.getincrementaldecoder("utf-8")().decode(first, final=False)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


def _lookup(label: str) -> str:
    """A Python codec for a charset label ("" if unknown); latin-1 means Windows-1252 on the web."""
    if not label:
        return ""
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return ""
    return "cp1252" if name in ("latin-1", "iso8859-1", "ascii") else name
