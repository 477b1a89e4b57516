"""Config checks, e5 prefixes, and that importing the package stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mem1_gym.retrieval.bm25 import BM25Config
from mem1_gym.retrieval.dense import DenseConfig
from mem1_gym.retrieval.http import HttpRetriever
from mem1_gym.retrieval.lucene import LuceneConfig

REPO = Path(__file__).resolve().parents[2]


def test_e5_encoders_get_their_prefixes_and_others_none():
    assert DenseConfig(encoder="intfloat/e5-base-v2").prefixes() == ("query: ", "passage: ")
    assert DenseConfig(encoder="/models/E5-large").prefixes() == ("query: ", "passage: ")
    assert DenseConfig().prefixes() == ("", "")
    assert DenseConfig(encoder="e5-base", query_prefix="").prefixes() == ("", "passage: ")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: BM25Config(b=1.5), "b must be in \\[0, 1\\]"),
        (lambda: BM25Config(stemmer="porter"), "stemmer must be"),
        (lambda: LuceneConfig(threads=0), "threads must be >= 1"),
        (lambda: DenseConfig(kind="ivf"), "must be one of flat, hnsw, ivf-pq, hnsw-sq8, ivf-sq4, got 'ivf'"),
        (lambda: DenseConfig(ef_search=0), "ef_search must be >= 1"),
        (lambda: HttpRetriever("http://127.0.0.1:8013", timeout=0), "timeout must be > 0"),
        (lambda: HttpRetriever("127.0.0.1:8013"), "url must look like"),
    ],
)
def test_bad_settings_say_what_to_change(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_url_gets_the_retrieve_path_once():
    assert HttpRetriever("http://127.0.0.1:8013").url == "http://127.0.0.1:8013/retrieve"
    assert HttpRetriever("http://127.0.0.1:8013/").url == "http://127.0.0.1:8013/retrieve"
    assert HttpRetriever("http://h:1/retrieve/").url == "http://h:1/retrieve"


def test_importing_the_package_loads_no_heavy_library():
    heavy = ("torch", "faiss", "pyserini", "jnius", "transformers", "fastapi", "uvicorn", "bm25s", "requests")
    code = f"import sys, mem1_gym.retrieval; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
