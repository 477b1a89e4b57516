"""Fixtures of the reliability suite: one real server of each kind on 127.0.0.1, killed at the end."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_http import ServerProcess, free_port, serve_retriever


@pytest.fixture(scope="session")
def world_corpus() -> str:
    """The synthetic world's corpus (its BM25 index is built once and cached, for envs and servers alike)."""
    from mem1_gym.data.synthetic import ensure_world

    return str(ensure_world().corpus_path)


@pytest.fixture
def server_processes() -> Iterator[list[ServerProcess]]:
    """Server processes a test starts; every one is killed when the test ends, passed or not."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.kill()


@pytest.fixture(scope="module")
def retrieval_url(world_corpus: str) -> Iterator[str]:
    """``mem1-gym serve-retriever`` over the synthetic world, in a process of its own."""
    server = serve_retriever(world_corpus, free_port())
    yield server.url
    server.kill()


@pytest.fixture(scope="module")
def miniweb_url() -> str:
    """The mini-web every ``MEM1-WebQA`` env of this process uses."""
    from mem1_gym.web.server import shared_server

    return shared_server().url


@pytest.fixture(scope="module")
def shop_url() -> Iterator[str]:
    from mem1_gym.webshop.server import ShopServer
    from mem1_gym.webshop.shop import ShopConfig, get_shop
    from mem1_gym.webshop.site import Site

    server = ShopServer(Site(get_shop(ShopConfig())))  # a site of its own: no other test's sessions
    yield server.url
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _agent_server_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess | None]:
    """Start the agent server's process with the session's first test when some test will use it:
    importing torch and building the tiny model take 5 to 15 s here (with other work on the two
    cores), which then overlap the env fuzzing instead of adding to the suite's minute."""
    if not any("agent_url" in item.fixturenames for item in request.session.items):
        yield None
        return
    port = free_port()
    model = tmp_path_factory.mktemp("reliability") / "tiny"
    argv = [sys.executable, str(Path(__file__).with_name("serve_tiny_agent.py")), str(model), "--port", str(port)]
    server = ServerProcess(argv, f"http://127.0.0.1:{port}", "/v1/models")
    yield server
    server.kill()


@pytest.fixture(scope="module")
def agent_url(_agent_server_process: ServerProcess) -> str:
    """``mem1_agent.serve`` over a tiny model, once it answers."""
    _agent_server_process.wait_healthy()
    return _agent_server_process.url
