"""A fixed list of hostile requests (issue 21) against each of our servers over real HTTP.

Each must get a 4xx (405 for a method a route does not take, 413 for a body over the server's cap)
whose body shows no traceback, exception name or source path, over a connection the server answers
rather than drops, within a few seconds; and afterwards the server must still give a normal request
the same answer it gave before.
"""

import json
import re

import pytest
import requests
from reliability_http import CLIENT_TIMEOUT, assert_refused, exchange

# Python's json parser recurses once per level, so ~1,000 levels raise RecursionError. 20,000 levels
# are 40 KB: under every body cap, so the parser (not the cap) has to cope.
DEEP = b"[" * 20_000 + b"]" * 20_000


def post(url: str, path: str, payload) -> requests.Response:
    return requests.post(url + path, json=payload, timeout=CLIENT_TIMEOUT)


# ---------------------------------------------------------------------------- retrieval server

NORMAL_RETRIEVE = {"queries": ["river flows through", "born in"], "topk": 3, "return_scores": True}
RETRIEVAL_HOSTILE = {  # name: (body, header overrides, the statuses it may get; () = any 4xx)
    "topk Infinity": (b'{"queries": ["river"], "topk": Infinity}', {}, ()),
    "topk abc": (b'{"queries": ["river"], "topk": "abc"}', {}, ()),
    "topk -1": (b'{"queries": ["river"], "topk": -1}', {}, ()),
    "topk 1e9": (b'{"queries": ["river"], "topk": 1e9}', {}, ()),
    "deep JSON": (b'{"queries": ' + DEEP + b"}", {}, ()),
    "invalid JSON": (b'{"queries": ["river"', {}, ()),
    "Content-Length abc": (b'{"queries": ["river"]}', {"Content-Length": "abc"}, (400,)),
    # Last: a server that searches these before refusing them is busy long after the client gave up.
    "1 MB query": (json.dumps({"queries": ["river " * 175_000]}).encode(), {}, ()),
    "100k queries": (json.dumps({"queries": ["river"] * 100_000}).encode(), {}, ()),
}


@pytest.fixture(scope="module")
def retrieval_baseline(retrieval_url):
    answer = post(retrieval_url, "/retrieve", NORMAL_RETRIEVE)
    assert answer.status_code == 200 and all(answer.json()["result"])
    return answer.json()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(RETRIEVAL_HOSTILE))
def test_retrieval_server(retrieval_url, retrieval_baseline, case):
    body, headers, statuses = RETRIEVAL_HOSTILE[case]
    assert_refused(exchange(retrieval_url, "POST", "/retrieve", body, headers), *statuses)
    assert post(retrieval_url, "/retrieve", NORMAL_RETRIEVE).json() == retrieval_baseline


@pytest.mark.timeout(30)
def test_retrieval_server_body_over_its_cap(retrieval_url, retrieval_baseline):
    cap = requests.get(f"{retrieval_url}/health", timeout=CLIENT_TIMEOUT).json()["limits"]["max_body_bytes"]
    body = b'{"queries": ["river"]' + b" " * cap + b"}"  # a small request padded past the cap (8 MiB)
    assert_refused(exchange(retrieval_url, "POST", "/retrieve", body), 413)
    assert post(retrieval_url, "/retrieve", NORMAL_RETRIEVE).json() == retrieval_baseline


# ---------------------------------------------------------------------------- mini-web

NORMAL_SEARCH = {"q": "river flows through", "num": 3}
MINIWEB_HOSTILE = {
    "1 MB body": (b'{"q": "river"' + b" " * 1_000_000 + b"}", {}, (413,)),
    "20 KB query": (json.dumps({"q": "year " * 4_000}).encode(), {}, ()),
    "num Infinity": (b'{"q": "river", "num": Infinity}', {}, ()),
    "num 1e400": (b'{"q": "river", "num": 1e400}', {}, ()),
    "deep JSON": (b'{"q": "river", "num": ' + DEEP + b"}", {}, ()),
    "Content-Length abc": (b'{"q": "river"}', {"Content-Length": "abc"}, (400,)),
}


@pytest.fixture(scope="module")
def miniweb_baseline(miniweb_url):
    answer = post(miniweb_url, "/search", NORMAL_SEARCH)
    assert answer.status_code == 200 and answer.json()["organic"]
    return answer.json()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(MINIWEB_HOSTILE))
def test_miniweb(miniweb_url, miniweb_baseline, case):
    body, headers, statuses = MINIWEB_HOSTILE[case]
    assert_refused(exchange(miniweb_url, "POST", "/search", body, headers), *statuses)
    assert post(miniweb_url, "/search", NORMAL_SEARCH).json() == miniweb_baseline


@pytest.mark.timeout(30)
def test_miniweb_links_never_point_at_a_host_header(miniweb_url, miniweb_baseline):
    # Results link to the host the request named: a forged Host must not make the mini-web hand
    # out links to another site (refusing the request is as good).
    answer = exchange(miniweb_url, "POST", "/search", json.dumps(NORMAL_SEARCH).encode(), {"Host": "evil.example"})
    if answer.status != 200:
        assert_refused(answer)
    assert "evil.example" not in answer.text, answer.text[:300]
    assert post(miniweb_url, "/search", NORMAL_SEARCH).json() == miniweb_baseline


# ---------------------------------------------------------------------------- shop site

# name: (method, path with ASIN for a product of the catalogue, the statuses it may get; () = any 4xx)
SHOP_HOSTILE = {
    "/fixed_²": ("GET", "/fixed_%C2%B2", ()),  # "²".isdigit() is True, but int("²") raises
    "/fixed_<5000 digits>": ("GET", "/fixed_" + "9" * 5_000, ()),  # past int()'s 4,300-digit limit
    "deep options list": ("GET", "/fixed_0/item/ASIN?options=" + "[" * 5_000 + "]" * 5_000, ()),
    "deep options object": ("GET", "/fixed_0/item/ASIN?options=" + '{"color":' * 2_000 + "1" + "}" * 2_000, ()),
    "PUT": ("PUT", "/fixed_0", (405,)),
    "DELETE": ("DELETE", "/", (405,)),
    "PATCH": ("PATCH", "/fixed_0/results?q=tea", (405,)),
}


@pytest.fixture(scope="module")
def asin() -> str:
    from mem1_gym.webshop.shop import ShopConfig, get_shop

    return next(iter(get_shop(ShopConfig()).catalog)).asin


def shop_page(url: str, path: str) -> str:
    answer = requests.get(url + path, timeout=CLIENT_TIMEOUT)
    assert answer.status_code == 200
    return re.sub(r'data-nonce="\d+"', "", answer.text)  # a counter that changes with every page


def shop_pages(url: str, asin: str) -> tuple[str, str]:
    """A results page and an item page of one session."""
    return shop_page(url, "/fixed_0/results?q=tea"), shop_page(url, f"/fixed_0/item/{asin}")


@pytest.fixture(scope="module")
def shop_baseline(shop_url, asin):
    return shop_pages(shop_url, asin)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(SHOP_HOSTILE))
def test_shop_site(shop_url, shop_baseline, asin, case):
    method, path, statuses = SHOP_HOSTILE[case]
    assert_refused(exchange(shop_url, method, path.replace("ASIN", asin)), *statuses)
    assert shop_pages(shop_url, asin) == shop_baseline


# ---------------------------------------------------------------------------- agent model server

NORMAL_COMPLETION = {"prompt": "Q: where was Aldric Venn born?", "max_tokens": 4, "temperature": 0}
AGENT_HOSTILE = {
    "max_tokens string": ({"max_tokens": "many"}, ()),
    "max_tokens list": ({"max_tokens": [8]}, ()),
    "max_tokens 0": ({"max_tokens": 0}, ()),
    "temperature string": ({"temperature": "hot"}, ()),
    "temperature object": ({"temperature": {"value": 1}}, ()),
    "top_p string": ({"top_p": "all"}, ()),
    "top_p list": ({"top_p": [0.5]}, ()),
    "n string": ({"n": "two"}, ()),
    "n list": ({"n": [1]}, ()),
    # Last: a server that tokenizes it before checking its size stalls for minutes (it did).
    "10 MB prompt": ({"prompt": "x " * 5_000_000}, (413,)),
}


@pytest.fixture(scope="module")
def agent_baseline(agent_url):
    answer = post(agent_url, "/v1/completions", NORMAL_COMPLETION)
    assert answer.status_code == 200, answer.text
    return answer.json()["choices"][0]["text"]


@pytest.mark.timeout(60)  # the first one waits for the server to be up
@pytest.mark.parametrize("case", list(AGENT_HOSTILE))
def test_agent_server(agent_url, agent_baseline, case):
    change, statuses = AGENT_HOSTILE[case]
    body = json.dumps({"prompt": "hello", "max_tokens": 4, **change}).encode()
    assert_refused(exchange(agent_url, "POST", "/v1/completions", body), *statuses)
    assert post(agent_url, "/v1/completions", NORMAL_COMPLETION).json()["choices"][0]["text"] == agent_baseline
