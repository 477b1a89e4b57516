"""Hostile requests to the mini-web get a clean 4xx and a message (issue 21), and links never follow the Host header."""

import socket

import pytest
import requests

from mem1_gym.cli import build_parser
from mem1_gym.retrieval.base import Corpus
from mem1_gym.retrieval.bm25 import BM25Retriever
from mem1_gym.web.miniweb import MiniWebConfig, MiniWebSite
from mem1_gym.web.server import MiniWebServer

DOCS = [
    ("kest", '"Kest River"\nThe Kest River flows east through Tarsen. It is 120 km long.'),
    ("tarsen", '"Tarsen"\nTarsen is a city on the Kest River. Aldric Venn was born in Tarsen.'),
    ("venn", '"Aldric Venn"\nAldric Venn was a shipbuilder. He founded Velmora Shipping in 1801.'),
]


def _serve(config: MiniWebConfig = MiniWebConfig()):
    corpus = Corpus([d for d, _ in DOCS], [c for _, c in DOCS])
    return MiniWebServer(MiniWebSite(corpus, BM25Retriever.from_corpus(corpus), config))


@pytest.fixture(scope="module")
def server():
    with _serve() as running:  # the shipped limits
        yield running


def search(server, body: bytes, **kwargs) -> requests.Response:
    return requests.post(server.url + "/search", data=body, timeout=5, **kwargs)


def assert_still_serving(server) -> None:
    organic = search(server, b'{"q": "Aldric Venn shipbuilder", "num": 1}').json()["organic"]
    assert [r["link"] for r in organic] == ["http://miniweb.test/wiki/venn"]


@pytest.mark.parametrize("num", [b"Infinity", b"-Infinity", b"1e400", b"NaN", b'"10"', b"true", b"2.5", b"0", b"101"])
def test_num_must_be_an_integer_from_1_to_100(server, num):
    response = search(server, b'{"q": "Tarsen", "num": ' + num + b"}")
    assert response.status_code == 422
    assert response.json() == {"message": "num must be an integer from 1 to 100"}
    assert_still_serving(server)


@pytest.mark.parametrize("num", ["ten", "0", "101", "1e3", "99999999999999999999", "9" * 5000, "²"])
def test_num_in_a_get_request_must_be_an_integer_from_1_to_100(server, num):
    response = requests.get(server.url + "/search", params={"q": "Tarsen", "num": num}, timeout=5)
    assert response.status_code == 422 and "num must be an integer" in response.json()["message"]
    assert_still_serving(server)


def _raw(server, request: bytes) -> bytes:
    """The whole answer to a request sent as bytes (each answer here closes the connection)."""
    with socket.create_connection((server.host, server.port), timeout=5) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
        return answer


@pytest.mark.parametrize(
    "length, status",
    [(b"abc", b"400"), (b"-5", b"400"), (b"1.5", b"400"), (b"0", b"400"), (b"9" * 5000, b"413"), (b"0" * 5000, b"400"),
     (b"65537", b"413"), (None, b"411")],
)
def test_a_bad_content_length_is_a_4xx_with_a_message(server, length, status, capsys):
    header = b"" if length is None else b"Content-Length: " + length + b"\r\n"
    answer = _raw(server, b"POST /search HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")  # the body is never sent
    assert answer.startswith(b"HTTP/1.1 " + status) and b'{"message": ' in answer
    assert "Traceback" not in capsys.readouterr().err
    assert_still_serving(server)


@pytest.mark.parametrize("body", [b"[" * 50_000, b'{"q": ' * 10_000, b"\xff\xfe\x00"])
def test_a_body_that_cannot_be_parsed_is_a_400_without_a_traceback(server, body, capsys):
    response = search(server, body)
    assert response.status_code == 400 and "send JSON" in response.json()["message"]
    assert "Traceback" not in capsys.readouterr().err
    assert_still_serving(server)


def test_a_query_over_max_query_chars_is_a_422_and_a_repeated_word_is_cheap(server):
    response = search(server, b'{"q": "' + b"year " * 4000 + b'"}')  # the 20 KB query of issue 21
    assert response.status_code == 422
    assert response.json() == {"message": "the query has 20000 characters; the limit is 2048"}
    repeated = search(server, b'{"q": "' + b"Tarsen " * 292 + b'"}').json()["organic"]  # 2,044 characters
    once = search(server, b'{"q": "Tarsen"}').json()["organic"]
    assert [r["link"] for r in repeated] == [r["link"] for r in once]
    assert search(server, b'{"q": ["Tarsen"]}').status_code == 422


def test_result_links_use_the_public_url_never_the_host_header(server):
    body = b'{"q": "Kest River", "num": 2}'
    for host in ("evil.example", "miniweb.test:1234", "x\" onmouseover=\"alert(1)"):
        organic = search(server, body, headers={"Host": host}).json()["organic"]
        assert organic and all(r["link"].startswith("http://miniweb.test/wiki/") for r in organic)
    with _serve(MiniWebConfig(public_url="http://127.0.0.1:8030", max_results=1)) as running:
        organic = search(running, b'{"q": "Kest River", "num": 1}').json()["organic"]
        assert organic[0]["link"] == "http://127.0.0.1:8030/wiki/kest"
        assert search(running, b'{"q": "Kest River", "num": 2}').status_code == 422  # max_results
    with pytest.raises(ValueError, match="public_url"):
        MiniWebConfig(public_url="http://miniweb.test/some/path")
    with pytest.raises(ValueError, match="max_query_chars"):
        MiniWebConfig(max_query_chars=0)


def test_serve_miniweb_flags_set_the_limits():
    args = build_parser().parse_args(["serve-miniweb", "--public-url", "http://localhost:8030", "--max-body-bytes",
                                      "1000", "--max-query-chars", "300", "--max-results", "20"])
    assert (args.public_url, args.max_body_bytes, args.max_query_chars, args.max_results) == (
        "http://localhost:8030", 1000, 300, 20)
    defaults = build_parser().parse_args(["serve-miniweb"])
    assert (defaults.public_url, defaults.max_body_bytes, defaults.max_query_chars, defaults.max_results) == (
        "http://miniweb.test", 65536, 2048, 100)
