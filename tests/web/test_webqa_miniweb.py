"""The mini-web over HTTP: stable page URLs, links between pages, Serper-shaped search, bad requests, the CLI."""

import pytest
import requests

from mem1_gym.cli import build_parser
from mem1_gym.retrieval.base import Corpus
from mem1_gym.retrieval.bm25 import BM25Retriever
from mem1_gym.web.extract import extract_html
from mem1_gym.web.miniweb import MiniWebConfig, MiniWebSite, page_path, snippet
from mem1_gym.web.server import MiniWebServer

DOCS = [
    ("kest-1", '"Kest River"\nThe Kest River flows east through Tarsen. It is 120 km long.'),
    ("kest-2", '"Kest River"\nThe river freezes in winter. Its source is on Mount Zacos.'),
    ("tarsen", '"Tarsen"\nTarsen is a city on the Kest River. Aldric Venn was born in Tarsen.'),
    ("a/b c?", '"Mount Zacos"\nMount Zacos is the highest mountain of the region.'),
    ("venn", '"Aldric Venn"\nAldric Venn was a shipbuilder. He founded Velmora Shipping in 1801.'),
]


@pytest.fixture(scope="module")
def server():
    corpus = Corpus([d for d, _ in DOCS], [c for _, c in DOCS])
    site = MiniWebSite(corpus, BM25Retriever.from_corpus(corpus), MiniWebConfig(snippet_chars=60))
    with MiniWebServer(site) as running:
        yield running
    site.close()


def get(server, path, **kwargs):
    return requests.get(server.url + path, timeout=5, **kwargs)


def test_every_passage_is_a_page_at_a_stable_url(server):
    for doc_id, contents in DOCS:
        response = get(server, page_path(doc_id))
        assert response.status_code == 200 and response.headers["Content-Type"] == "text/html; charset=utf-8"
        page = extract_html(response.text, base_url=server.url + page_path(doc_id))
        assert contents.split("\n", 1)[1] in page.text and page.text.startswith("# " + contents.split('"')[1])
    assert page_path("a/b c?") == "/wiki/a%2Fb%20c%3F"
    assert get(server, "/wiki/nope").status_code == 404


def test_pages_link_to_their_article_and_to_mentioned_pages(server):
    page = extract_html(get(server, "/wiki/kest-1").text, base_url=server.url + "/wiki/kest-1")
    links = dict(page.links)
    assert links["Kest River (part 2)"] == server.url + "/wiki/kest-2"  # the other section of the article
    assert links["Tarsen"] == server.url + "/wiki/tarsen"  # mentioned in the text
    assert "Kest River" not in links  # no link to itself
    tarsen = dict(extract_html(get(server, "/wiki/tarsen").text, base_url=server.url).links)
    assert set(tarsen) == {"Kest River", "Aldric Venn"}  # longest match: "Aldric Venn", not a part of it


def test_search_speaks_serpers_shape_over_get_and_post(server):
    by_get = get(server, "/search", params={"q": "Aldric Venn born", "num": 2}).json()
    by_post = requests.post(server.url + "/search", json={"q": "Aldric Venn born", "num": 2}, timeout=5).json()
    assert by_get == by_post and by_get["searchParameters"]["q"] == "Aldric Venn born"
    organic = by_get["organic"]
    assert [r["position"] for r in organic] == [1, 2] and set(organic[0]) == {"title", "link", "snippet", "position"}
    assert organic[0]["title"] in ("Tarsen", "Aldric Venn")
    assert all(r["link"].startswith("http://miniweb.test/wiki/") for r in organic)  # the public URL
    assert all(len(r["snippet"]) <= 60 + 4 for r in organic)


def test_snippets_prefer_the_sentences_that_match_the_query():
    text = "Tarsen is a city. Aldric Venn was born in Tarsen in 1770. The harbour is old."
    assert snippet(text, "Aldric Venn birth", 200) == "Aldric Venn was born in Tarsen in 1770."
    assert snippet(text, "harbour", 200) == "The harbour is old."
    assert snippet(text, "zzz", 20) == "Tarsen is a city."  # nothing matches: the start of the passage
    assert snippet("one two three four five six", "x", 12) == "one two ..."


@pytest.mark.parametrize(
    "method, path, payload, status",
    [
        ("get", "/search", None, 400),  # no q
        ("get", "/search?q=x&num=ten", None, 422),
        ("post", "/search", b"not json", 400),
        ("post", "/search", b'{"num": 3}', 400),
        ("post", "/search", b"x" * 70_000, 413),
        ("post", "/wiki/kest-1", b"{}", 404),
        ("get", "/nowhere", None, 404),
    ],
)
def test_bad_requests_get_a_status_and_a_message(server, method, path, payload, status):
    response = getattr(requests, method)(server.url + path, data=payload, timeout=5)
    assert response.status_code == status
    assert get(server, "/health").json() == {"status": "ok", "pages": len(DOCS)}  # still serving


def test_home_page_explains_the_api(server):
    assert "POST /search" in get(server, "/").text


def test_serve_miniweb_command_is_registered():
    args = build_parser().parse_args(["serve-miniweb", "--port", "0", "--snippet-chars", "100"])
    assert args.port == 0 and args.snippet_chars == 100 and args.backend == "bm25s" and args.corpus is None


def test_config_checks():
    with pytest.raises(ValueError, match="snippet_chars"):
        MiniWebConfig(snippet_chars=5)
    with pytest.raises(ValueError, match="see_also"):
        MiniWebConfig(see_also=-1)
