"""``build-index`` and ``serve-retriever`` through argparse, and the thin scripts under indexes/."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from fixture_corpus import title_of, write_corpus
from mem1_gym.retrieval import default_index_dir, load_retriever
from mem1_gym.retrieval.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_build_index_writes_the_index_and_says_where(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "c.jsonl", n_docs=30)
    out = tmp_path / "idx"
    assert main(["build-index", "--backend", "bm25s", "--corpus", str(corpus), "--out", str(out), "--k1", "1.1"]) == 0
    assert "built bm25s index of 30 passages" in capsys.readouterr().out
    assert json.loads((out / "meta.json").read_text())["params"]["k1"] == 1.1
    assert load_retriever("bm25s", out).search([title_of(12)])[0][0].id == "12"


def test_build_index_defaults_to_the_cache_the_envs_use(tmp_path, cache):
    corpus = write_corpus(tmp_path / "c.jsonl", n_docs=30)
    assert main(["build-index", "--backend", "bm25s", "--corpus", str(corpus)]) == 0
    assert (default_index_dir(corpus, "bm25s") / "meta.json").is_file()


def test_cli_errors_are_one_line_with_the_remedy(tmp_path, capsys, cache):
    corpus = write_corpus(tmp_path / "c.jsonl", n_docs=30)
    assert main(["build-index", "--backend", "bm25s", "--corpus", str(corpus), "--encoder", "e5"]) == 2
    assert "bm25s has no option(s) encoder" in capsys.readouterr().err
    assert main(["serve-retriever", "--index", str(tmp_path / "none")]) == 2
    assert "say which index it is with --backend" in capsys.readouterr().err
    assert main(["serve-retriever", "--backend", "bm25s"]) == 2
    assert "give --index PATH, or --backend and --corpus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["build-index", "--backend", "elastic", "--corpus", str(corpus)])


def test_serve_script_serves_over_http(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl", n_docs=30)
    out = tmp_path / "idx"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    build = [sys.executable, str(REPO / "indexes" / "build.py"), "--backend", "bm25s", "--corpus", str(corpus)]
    subprocess.run([*build, "--out", str(out)], env=env, check=True, capture_output=True, timeout=60)
    port = _free_port()
    serve = [sys.executable, str(REPO / "indexes" / "serve.py"), "--index", str(out), "--port", str(port)]
    server = subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/health", timeout=1)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.1)
        body = {"queries": [title_of(5)], "topk": 1, "return_scores": True}
        result = requests.post(f"{url}/retrieve", json=body, timeout=5).json()["result"]
        assert result[0][0]["document"]["id"] == "5"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
