"""Index building, caching, checking and the errors that say how to rebuild."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixture_corpus import title_of, write_corpus
from mem1_gym.retrieval import (
    BACKENDS,
    RetrievalError,
    build_index,
    default_index_dir,
    load_retriever,
    make_retriever,
)
from mem1_gym.retrieval.http import HttpRetriever

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "small.jsonl", n_docs=40)


def _rebuild_hint(backend: str, corpus: Path, index_dir: Path) -> str:
    return f"mem1-gym build-index --backend {backend} --corpus {corpus} --out {index_dir}"


def test_index_is_built_once_then_reused_from_the_cache(small_corpus, cache):
    first = make_retriever("bm25s", corpus_path=small_corpus)
    index_dir = default_index_dir(small_corpus, "bm25s")
    assert index_dir.is_relative_to(cache / "indexes")
    meta_stat = (index_dir / "meta.json").stat()
    second = make_retriever("bm25s", corpus_path=small_corpus)
    assert (index_dir / "meta.json").stat().st_ino == meta_stat.st_ino  # not rebuilt
    assert second.search([title_of(7)])[0][0].id == first.search([title_of(7)])[0][0].id == "7"
    assert not [p for p in index_dir.parent.iterdir() if ".building-" in p.name or ".old-" in p.name]


def test_cache_key_follows_the_corpus_file(small_corpus, cache):
    before = default_index_dir(small_corpus, "bm25s")
    assert before == default_index_dir(small_corpus, "bm25s")
    assert before != default_index_dir(small_corpus, "pyserini")
    with open(small_corpus, "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "new", "contents": '"New"\nnew passage'}) + "\n")
    assert default_index_dir(small_corpus, "bm25s") != before


def test_meta_json_records_backend_corpus_and_params(small_corpus, tmp_path):
    out = build_index("bm25s", small_corpus, tmp_path / "idx", k1=1.2)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["backend"] == "bm25s"
    assert meta["corpus"]["path"] == str(small_corpus.resolve()) and meta["corpus"]["n_docs"] == 40
    assert meta["params"]["k1"] == 1.2 and meta["params"]["b"] == 0.4
    assert set(meta["files"]) >= {"vocab.index.json"}


def test_missing_index_without_build_names_path_and_command(small_corpus, tmp_path):
    index_dir = tmp_path / "nowhere"
    with pytest.raises(RetrievalError) as err:
        make_retriever("bm25s", corpus_path=small_corpus, index_dir=index_dir, build=False)
    assert str(index_dir) in str(err.value)
    assert _rebuild_hint("bm25s", small_corpus, index_dir) in str(err.value)


@pytest.mark.parametrize("damage", ["garbage_meta", "meta_without_fields", "no_meta", "truncated_file"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_damaged_index_names_path_and_rebuild_command(request, backend, damage, corpus_path, index_root, tmp_path):
    request.getfixturevalue(f"{backend.replace('-', '_')}_retriever")  # the session index exists
    index_dir = tmp_path / backend
    shutil.copytree(index_root / backend, index_dir)
    meta_file = index_dir / "meta.json"
    if damage == "garbage_meta":
        meta_file.write_text("{not json")
    elif damage == "meta_without_fields":
        meta_file.write_text(json.dumps({"backend": backend}))
    elif damage == "no_meta":
        meta_file.unlink()
        for segments in index_dir.glob("segments_*"):  # else it is a foreign Lucene index (accepted)
            segments.unlink()
    else:
        biggest = max((p for p in index_dir.iterdir() if p.is_file() and p.name != "meta.json"), key=lambda p: p.stat().st_size)
        biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    with pytest.raises(RetrievalError) as err:
        make_retriever(backend, corpus_path=corpus_path, index_dir=index_dir)
    assert str(index_dir) in str(err.value)
    assert _rebuild_hint(backend, corpus_path, index_dir) in str(err.value)


def test_changed_corpus_is_refused_even_with_build(small_corpus, tmp_path):
    index_dir = build_index("bm25s", small_corpus, tmp_path / "idx")
    with open(small_corpus, "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "new", "contents": '"New"\nnew passage'}) + "\n")
    with pytest.raises(RetrievalError, match="changed") as err:
        make_retriever("bm25s", corpus_path=small_corpus, index_dir=index_dir, build=True)
    assert _rebuild_hint("bm25s", small_corpus.resolve(), index_dir) in str(err.value)


def test_rebuild_replaces_the_index_in_place(small_corpus, tmp_path):
    index_dir = build_index("bm25s", small_corpus, tmp_path / "idx")
    write_corpus(small_corpus, n_docs=60)
    assert build_index("bm25s", small_corpus, index_dir) == index_dir
    assert json.loads((index_dir / "meta.json").read_text())["corpus"]["n_docs"] == 60
    assert load_retriever("bm25s", index_dir).search([title_of(55)])[0][0].id == "55"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.lock", "idx", "small.jsonl"]


def test_wrong_backend_and_changed_build_options_are_refused(small_corpus, tmp_path):
    index_dir = build_index("bm25s", small_corpus, tmp_path / "idx")
    with pytest.raises(RetrievalError, match="is a bm25s index, not faiss-flat"):
        load_retriever("faiss-flat", index_dir)
    with pytest.raises(RetrievalError, match="built with k1=0.9") as err:
        make_retriever("bm25s", corpus_path=small_corpus, index_dir=index_dir, k1=1.5)
    assert "--k1 1.5" in str(err.value)


def test_unknown_backend_and_option_errors_list_the_choices(small_corpus, tmp_path):
    with pytest.raises(ValueError, match="faiss-hnsw"):
        make_retriever("elastic", corpus_path=small_corpus)
    with pytest.raises(ValueError, match="no option\\(s\\) encoder; its options: k1, b"):
        build_index("bm25s", small_corpus, tmp_path / "idx", encoder="x")
    with pytest.raises(ValueError, match="corpus_path"):
        make_retriever("bm25s")


def test_spec_can_be_a_retriever_or_a_url(bm25s_retriever):
    assert make_retriever(bm25s_retriever) is bm25s_retriever
    with make_retriever("http://127.0.0.1:9/retrieve", timeout=0.5) as http:
        assert isinstance(http, HttpRetriever) and http.config.timeout == 0.5


def test_foreign_indexes_open_without_meta(corpus_path, index_root, tmp_path, faiss_flat_retriever, pyserini_retriever):
    # Search-R1 ships a bare FAISS file (e5_Flat.index) and a bare Lucene directory.
    faiss_file = tmp_path / "e5_Flat.index"
    shutil.copy(index_root / "faiss-flat" / "index.faiss", faiss_file)
    with load_retriever("faiss-flat", faiss_file, corpus_path) as dense:
        assert dense.search([title_of(9)])[0][0].id == "9"
    lucene_dir = tmp_path / "bm25"
    shutil.copytree(index_root / "pyserini", lucene_dir)
    (lucene_dir / "meta.json").unlink()
    with load_retriever("pyserini", lucene_dir) as lucene:
        assert lucene.search([title_of(9)])[0][0].id == "9"


_RACE_SCRIPT = """
import sys
from mem1_gym.retrieval import make_retriever
from pathlib import Path
r = make_retriever("bm25s", corpus_path=sys.argv[1], index_dir=sys.argv[2])
print(r.search([sys.argv[3]])[0][0].id, (Path(sys.argv[2]) / "meta.json").stat().st_ino)
"""


def test_four_processes_racing_for_one_index_build_it_once(small_corpus, tmp_path):
    index_dir = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", _RACE_SCRIPT, str(small_corpus), str(index_dir), title_of(3)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(args, env=env, **pipes) for _ in range(4)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    hits, inodes = zip(*(out.split() for out, _ in outputs))
    assert hits == ("3",) * 4
    assert len(set(inodes)) == 1  # one build: a second one would have swapped in a new meta.json
    meta = json.loads((index_dir / "meta.json").read_text())
    assert meta["corpus"]["n_docs"] == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == [".shared.lock", "shared", "small.jsonl"]
