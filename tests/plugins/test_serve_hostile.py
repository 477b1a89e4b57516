"""The model server under hostile requests (issue 21): clean 4xx answers, limits, a free event loop.

The app runs in process under a real uvicorn on a free loopback port, with a stub model that echoes
its prompt, so every case is fast and the tokenizer can be made to block on purpose.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests
from mem1_agent.policies.base import Generation, SamplingConfig
from mem1_agent.records import FinishReason
from mem1_agent.serve import ServeConfig, create_app
from mem1_agent.serve_api import RequestLimits

SLOW_PROMPT = "tokenize me slowly"


class _CharCodec:
    """One token per character; encoding SLOW_PROMPT waits until ``release`` is set."""

    use_chat_template = False

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def encode(self, text: str) -> tuple[int, ...]:
        if text == SLOW_PROMPT:
            self.entered.set()
            assert self.release.wait(30), "the test never released the tokenizer"
        return tuple(ord(c) for c in text)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(map(chr, ids))


class _EchoPolicy:
    """Generates the first ``max_new_tokens`` characters of its prompt."""

    window = None

    def __init__(self) -> None:
        self.codec = _CharCodec()
        self.sampling = SamplingConfig()

    def generate(self, requests):
        ids = [r.context_ids[: r.max_new_tokens] for r in requests]
        return [Generation(i, self.codec.decode(i), None, FinishReason.LENGTH, True) for i in ids]


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    """(base URL, policy) of an in-process server of the echo model with the shipped limits."""
    import uvicorn

    folder = tmp_path_factory.mktemp("stub")
    (folder / "config.json").write_text("{}")  # ServeConfig checks that a model folder is there
    policy = _EchoPolicy()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(ServeConfig(model=str(folder)), policy), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", policy
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _answers_normally(url: str) -> None:
    fine = requests.post(f"{url}/v1/completions", json={"prompt": "hello", "max_tokens": 2}, timeout=10)
    assert fine.status_code == 200 and fine.json()["choices"][0]["text"] == "he"


def test_wrong_types_and_ranges_get_422_with_the_reason(stub):
    url, _ = stub
    limits = RequestLimits()
    cases = [
        {"max_tokens": 0},  # used to generate 256 tokens silently
        {"max_tokens": "5"}, {"max_tokens": [5]}, {"max_tokens": True}, {"max_tokens": 2.5},
        {"max_completion_tokens": -1},
        {"temperature": "hot"}, {"temperature": -1}, {"temperature": float("nan")},
        {"top_p": [1]}, {"top_p": 0}, {"top_p": 2},
        {"n": "1"}, {"n": 0},
        {"stop": 5}, {"stop": ["x"] * (limits.max_stop_strings + 1)}, {"stop": "s" * (limits.max_stop_chars + 1)},
        {"prompt": 5}, {"prompt": "x" * (limits.max_prompt_chars + 1)},
    ]
    for case in cases:  # json.dumps writes NaN (as Python's json.loads reads it); requests' json= refuses to
        response = requests.post(f"{url}/v1/completions", data=json.dumps({"prompt": "hello", **case}), timeout=10)
        assert response.status_code == 422, str(case)[:80]
        message = response.json()["error"]["message"]
        assert next(iter(case)) in message or "prompt has" in message, message
    chat = requests.post(f"{url}/v1/chat/completions", json={"messages": "hi"}, timeout=10)
    assert chat.status_code == 422
    _answers_normally(url)


def test_malformed_and_oversized_bodies_get_400_and_413(stub):
    url, _ = stub
    post = lambda data: requests.post(f"{url}/v1/completions", data=data, timeout=30,
                                      headers={"content-type": "application/json"})
    assert post(b"[" * 100_000 + b"]" * 100_000).status_code == 400  # nested past the recursion limit
    assert post(b"not json").status_code == 400
    assert post(b'{"prompt": "a", "n": 2}').status_code == 400  # valid, but not something this server does
    too_big = post(b'{"prompt": "' + b"x" * RequestLimits().max_body_bytes + b'"}')
    assert too_big.status_code == 413 and "--max-body-bytes" in too_big.json()["error"]["message"]
    _answers_normally(url)


def test_a_slow_prompt_does_not_hold_up_other_requests(stub):
    """Tokenizing runs off the event loop: while the stub tokenizer blocks, other requests answer."""
    url, policy = stub
    slow: dict = {}
    thread = threading.Thread(target=lambda: slow.update(response=requests.post(
        f"{url}/v1/completions", json={"prompt": SLOW_PROMPT, "max_tokens": 4}, timeout=60)))
    thread.start()
    try:
        assert policy.codec.entered.wait(10)
        assert requests.get(f"{url}/v1/models", timeout=10).status_code == 200  # timed out when it blocked the loop
        assert requests.get(f"{url}/health", timeout=10).json() == {"status": "ok"}
    finally:
        policy.codec.release.set()
        thread.join(timeout=30)
    assert slow["response"].json()["choices"][0]["text"] == SLOW_PROMPT[:4]
