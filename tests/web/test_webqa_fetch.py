"""Opening pages: URL policy (no network for refused URLs), byte caps, deadlines, encodings, extraction."""

import socket
import time

import pytest
from webqa_fakeweb import Reply, html_reply

from mem1_gym.web.client import ClientConfig, WebClient, WebError
from mem1_gym.web.extract import extract_html, extract_text, strip_tags
from mem1_gym.web.fetch import UrlPolicy, fetch_page, origin

ARTICLE = """<!DOCTYPE html><html><head><title>Kest River - Wiki</title><style>p {color: red}</style>
<script>var tracking = "x";</script></head><body>
<header><nav><a href="/">Home</a> <a href="/about">About us</a></nav><div class="logo">WikiSite</div></header>
<div role="navigation">Jump to content</div>
<main><article><header><h1>Kest River</h1></header>
<p>The <b>Kest</b> is a river in <a href="/wiki/Tarsen">Tarsen</a>.</p>
<h2>Course</h2><p>It flows east&nbsp;for 120&#8239;km.</p><ul><li>Source: Mount Zacos</li></ul>
<noscript>Enable JavaScript</noscript><div hidden>secret</div><aside>Advert</aside>
</article></main><footer>Copyright 2025 WikiSite</footer></body></html>"""


def test_extraction_keeps_headings_and_paragraphs_and_drops_chrome():
    page = extract_html(ARTICLE, base_url="http://w.example/wiki/Kest")
    assert page.title == "Kest River - Wiki"
    assert page.text.split("\n") == [
        "# Kest River", "The Kest is a river in Tarsen.", "## Course", "It flows east for 120 km.",  # no-break spaces become spaces
        "Source: Mount Zacos",
    ]
    assert page.links == (("Tarsen", "http://w.example/wiki/Tarsen"),) and not page.cut
    for chrome in ("Home", "About us", "WikiSite", "tracking", "color", "Jump", "Enable", "secret", "Advert",
                   "Copyright"):
        assert chrome not in page.text


def test_extraction_budget_and_plain_text():
    page = extract_html("<p>" + "word " * 1000 + "</p>", max_chars=50)
    assert page.cut and len(page.text) <= 50 and page.text.endswith("word")
    plain = extract_text("  a  b \n\n c ", max_chars=100)
    assert plain.text == "a b\nc" and not plain.cut
    assert strip_tags("<strong>A</strong> &lt;b&gt;") == "A <b>"


@pytest.mark.parametrize(
    "markup",
    ["<div>" * 200_000, "</p>" * 200_000, "<a href=x>" * 100_000, "<" * 500_000, "<!--" + "x" * 500_000,
     "<script>" + "x" * 500_000, "<p>" + "\x00\ud800" * 10_000],
    ids=["deep", "stray-ends", "open-links", "lt-run", "open-comment", "open-script", "nul-surrogate"],
)
def test_hostile_markup_is_linear_and_never_raises(markup):
    started = time.perf_counter()
    page = extract_html(markup, max_chars=2000)
    assert len(page.text) <= 2000 and time.perf_counter() - started < 3.0


@pytest.mark.parametrize(
    "url, why",
    [
        ("file:///etc/passwd", "only http"),
        ("ftp://example.org/x", "only http"),
        ("javascript:alert(1)", "only http"),
        ("http://", "no host"),
        ("http://user:pw@example.org/", "credentials"),
        ("http://example.org:99999/", "not a valid URL"),
        ("http://localhost:8080/", "local and private"),
        ("http://127.0.0.1/", "local and private"),
        ("http://[::1]/", "local and private"),
        ("http://169.254.169.254/latest/meta-data/", "local and private"),
        ("http://10.0.0.8/", "local and private"),
        ("http://printer.local/", "local and private"),
    ],
)
def test_public_policy_refuses_without_network(url, why, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a refused URL touched the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    client = WebClient(ClientConfig(timeout=0.5))
    with pytest.raises(WebError, match=why):
        fetch_page(client, url, UrlPolicy())


@pytest.mark.parametrize("url", ["https://example.org/", "http://93.184.215.14/a?b#c", "http://[2606:4700::1]/"])
def test_public_policy_allows_public_hosts(url):
    assert UrlPolicy().refusal(url) == ""


def test_local_origin_policy_allows_exactly_its_origin():
    policy = UrlPolicy(origins=(origin("http", "miniweb.test", None),))
    assert policy.refusal("http://miniweb.test/wiki/1") == "" == policy.refusal("http://MINIWEB.test:80/wiki/1")
    for url in ("http://miniweb.test:81/", "https://miniweb.test/", "http://example.org/", "http://127.0.0.1/"):
        assert "only opens pages of http://miniweb.test:80" in policy.refusal(url)


@pytest.fixture
def local():
    """A client and a policy that allow the loopback test server (as the mini-web's policy does)."""
    client = WebClient(ClientConfig(timeout=1.0, retries=0))
    yield client
    client.close()


def _open(fake_web, client, path, **kwargs):
    host, port = fake_web.url.removeprefix("http://").split(":")
    policy = UrlPolicy(origins=(origin("http", host, int(port)),), allow_private=True)
    return fetch_page(client, fake_web.url + path, policy, **kwargs)


def test_a_10_mb_page_is_read_only_up_to_the_byte_cap(fake_web, local):
    chunk = b"<p>" + b"filler text " * 5000 + b"</p>"
    fake_web.routes["/huge"] = lambda r: Reply(200, (chunk for _ in range(10_000_000 // len(chunk))),
                                              {"Content-Type": "text/html"})
    started = time.perf_counter()
    page = _open(fake_web, local, "/huge", max_bytes=200_000, max_chars=1_000_000)
    assert page.cut and page.bytes_read <= 200_000 and time.perf_counter() - started < 3.0
    page = _open(fake_web, local, "/huge", max_bytes=10_000_000, max_chars=500, max_links=0)
    assert page.cut and len(page.text) <= 500 and page.bytes_read < 1_000_000  # a full budget stops the read


def test_a_dripping_server_is_stopped_by_the_deadline(fake_web, local):
    fake_web.routes["/drip"] = lambda r: Reply(200, (b"<p>x</p>" for _ in range(1000)), {"Content-Type": "text/html"},
                                               chunk_delay=0.05)
    started = time.perf_counter()
    page = _open(fake_web, local, "/drip", deadline=0.5)
    assert page.cut and time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    "body, content_type, expected",
    [
        ("<p>Zürich – café</p>".encode("cp1252"), "text/html; charset=windows-1252", "Zürich – café"),
        ("<p>Zürich – café</p>".encode("cp1252"), "text/html", "Zürich – café"),  # not UTF-8: Windows-1252
        ('<meta charset="shift_jis"><p>東京</p>'.encode("shift_jis"), "text/html", "東京"),
        ("<p>Ångström</p>".encode("utf-16"), "text/html", "Ångström"),  # BOM
        (b"<p>ok \xff\xfe\xfd broken</p>", "text/html; charset=utf-8", "ok \ufffd\ufffd\ufffd broken"),
        ("<p>naïve</p>".encode(), "text/html; charset=no-such-codec", "naïve"),
        (b"plain  text\n\nlines", "text/plain", "plain text\nlines"),
    ],
)
def test_encodings(fake_web, local, body, content_type, expected):
    fake_web.routes["/enc"] = lambda r: Reply(200, body, {"Content-Type": content_type})
    assert _open(fake_web, local, "/enc").text == expected


def test_redirects_are_checked_at_every_hop(fake_web, local):
    fake_web.routes["/moved"] = lambda r: Reply(302, b"", {"Location": "/final"})
    fake_web.routes["/final"] = lambda r: html_reply("<p>arrived</p>")
    fake_web.routes["/away"] = lambda r: Reply(302, b"", {"Location": "file:///etc/passwd"})
    fake_web.routes["/loop"] = lambda r: Reply(302, b"", {"Location": "/loop"})
    page = _open(fake_web, local, "/moved")
    assert page.text == "arrived" and page.url == fake_web.url + "/final"
    with pytest.raises(WebError, match="only http"):
        _open(fake_web, local, "/away")
    with pytest.raises(WebError, match="redirects"):
        _open(fake_web, local, "/loop")


def test_non_text_pages_and_http_errors_are_refused(fake_web, local):
    fake_web.routes["/pdf"] = lambda r: Reply(200, b"%PDF-1.4", {"Content-Type": "application/pdf"})
    with pytest.raises(WebError, match="not a text page"):
        _open(fake_web, local, "/pdf")
    with pytest.raises(WebError, match="HTTP 404"):
        _open(fake_web, local, "/missing")
