"""Cache manifests (issue 21): damaged caches are detected on load and rebuilt, or reported with the fix.

Every test runs in a private ``MEM1_GYM_CACHE``. A damaged cache is loaded as a new process would
load it: the per-process memory of folders that already passed is cleared first.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import gymnasium as gym
import pytest

import mem1_gym.webshop.shop as shop_module
from mem1_gym.data import manifest
from mem1_gym.data.manifest import MANIFEST_FILE, CacheError, ensure_built, find_problem, verify, write_manifest
from mem1_gym.data.synthetic import WorldConfig, ensure_world, write_world
from mem1_gym.envs.qa_common import QAConfig, load_tasks
from mem1_gym.retrieval import RetrievalError, build_index, default_index_dir, load_retriever, make_retriever
from mem1_gym.webshop.generate import GOALS_FILE, GeneratorConfig, ensure_generated, generate
from mem1_gym.webshop.goals import goals_by_split, load_goals
from mem1_gym.webshop.shop import Shop, ShopConfig

TINY = WorldConfig(n_passages=600, seed=3)
SMALL_SHOP = {"n_products": 60, "seed": 5}


@pytest.fixture(autouse=True)
def cache(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("MEM1_GYM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(shop_module, "_SHOPS", {})  # shops are cached per config, not per cache dir
    return tmp_path / "cache"


def _new_process() -> None:
    """Forget which folders passed their check, as a fresh process would."""
    manifest._VERIFIED.clear()
    shop_module._SHOPS.clear()


def _drop_lines(path: Path, keep) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(line for i, line in enumerate(lines) if keep(i, len(lines))), encoding="utf-8")


def _scramble(path: Path, offset: int, n: int = 512) -> None:
    """Overwrite ``n`` bytes at ``offset`` with different ones; the size stays."""
    data = bytearray(path.read_bytes())
    data[offset : offset + n] = bytes((b + 1) % 256 for b in data[offset : offset + n])
    path.write_bytes(bytes(data))


# ---- (a) the synthetic world ----------------------------------------------------------------------


def test_dropped_test_lines_are_regenerated_and_give_the_same_tasks():
    config = QAConfig(world=TINY, split="test", n_questions=2)
    before, _ = load_tasks(config)
    test_file = ensure_world(TINY).qa_paths["test"]
    original = test_file.read_bytes()
    _drop_lines(test_file, lambda i, n: i % 10 != 3)
    _new_process()
    with pytest.warns(RuntimeWarning, match=r"synthetic world at .* \(test\.jsonl has [\d,]+ lines .* when built\)"):
        after, _ = load_tasks(config)
    assert after == before
    assert test_file.read_bytes() == original


# ---- (b), (d) the generated shop ------------------------------------------------------------------


def test_dropped_goal_lines_are_regenerated_and_give_the_same_goals():
    directory = ensure_generated(GeneratorConfig(**SMALL_SHOP))
    before = load_goals(directory / GOALS_FILE)
    _drop_lines(directory / GOALS_FILE, lambda i, n: i % 7 != 0)
    _new_process()
    with pytest.warns(RuntimeWarning, match=r"generated WebShop at .* \(goals\.jsonl has [\d,]+ lines"):
        shop = Shop(ShopConfig(**SMALL_SHOP))
    assert [g for split in ("train", "validation", "test") for g in shop.goals[split]] == before
    shop.close()


def test_a_goals_file_cut_short_no_longer_breaks_reset():
    # The test goals are the file's last lines: cutting them used to end in "ValueError: high <= 0".
    with gym.make("MEM1-WebShop-Text", split="test", **SMALL_SHOP) as env:
        first, _ = env.reset(seed=11)
    goals_file = ensure_generated(GeneratorConfig(**SMALL_SHOP)) / GOALS_FILE
    n_test = sum(g.id.startswith("test-") for g in load_goals(goals_file))
    _drop_lines(goals_file, lambda i, n: i < n - n_test)
    _new_process()
    with pytest.warns(RuntimeWarning, match="goals.jsonl has"):
        env = gym.make("MEM1-WebShop-Text", split="test", **SMALL_SHOP)
    with env:
        assert env.reset(seed=11)[0] == first


def test_a_split_without_goals_is_an_error_naming_the_file(tmp_path):
    directory = ensure_generated(GeneratorConfig(**SMALL_SHOP))
    train_only = [g for g in load_goals(directory / GOALS_FILE) if g.id.startswith("train-")]
    with pytest.raises(ValueError, match=rf"{tmp_path}/x/goals.jsonl has no validation or test goals .* delete"):
        goals_by_split(train_only, tmp_path / "x" / GOALS_FILE)


# ---- (c) built indexes ----------------------------------------------------------------------------


def test_a_scrambled_cached_index_file_is_rebuilt():
    corpus = ensure_world(TINY).corpus_path
    query = json.loads(corpus.read_text(encoding="utf-8").splitlines()[42])["contents"].splitlines()[0]
    expected = [d.id for d in make_retriever("bm25s", corpus_path=corpus).search([query], 5)[0]]
    postings = default_index_dir(corpus, "bm25s") / "indices.csc.index.npy"  # passage ids, int32
    _scramble(postings, 128, n=postings.stat().st_size - 128)  # all but the .npy header
    _new_process()
    with pytest.warns(RuntimeWarning, match=r"bm25s index at .* \(indices\.csc\.index\.npy changed since it was built"):
        retriever = make_retriever("bm25s", corpus_path=corpus)
    assert [d.id for d in retriever.search([query], 5)[0]] == expected


def test_a_scrambled_index_at_a_chosen_path_names_the_file_and_the_command(tmp_path):
    corpus = ensure_world(TINY).corpus_path
    index_dir = build_index("bm25s", corpus, tmp_path / "idx")
    _scramble(index_dir / "data.csc.index.npy", 1000)
    _new_process()
    with pytest.raises(RetrievalError, match=r"data\.csc\.index\.npy changed since it was built.*mem1-gym build-index"):
        load_retriever("bm25s", index_dir)


# ---- the manifest itself --------------------------------------------------------------------------


def test_small_files_are_hashed_whole_and_large_ones_by_samples(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest, "FULL_HASH_LIMIT", 2**20)
    (tmp_path / "small.jsonl").write_text('{"a": 1}\n' * 1000)
    (tmp_path / "large.bin").write_bytes(bytes(range(256)) * (3 * 2**12))  # 3 MiB
    write_manifest(tmp_path)
    files = json.loads((tmp_path / MANIFEST_FILE).read_text())["files"]
    assert files["small.jsonl"]["lines"] == 1000 and "sha256" in files["small.jsonl"]
    assert "sample_sha256" in files["large.bin"] and "sha256" not in files["large.bin"]
    assert find_problem(tmp_path) is None
    size = (tmp_path / "large.bin").stat().st_size
    for offset in (0, size * 5 // manifest.SAMPLE_CHUNKS + 100, size - 600):  # header, a sample, footer
        original = (tmp_path / "large.bin").read_bytes()
        _scramble(tmp_path / "large.bin", offset, n=100)
        _new_process()
        with pytest.raises(CacheError, match=r"large\.bin changed since it was built .*; delete .* rebuilt automatically"):
            verify(tmp_path)
        (tmp_path / "large.bin").write_bytes(original)
    _scramble(tmp_path / "small.jsonl", 4321, n=1)  # one byte anywhere in a fully hashed file
    _new_process()
    assert find_problem(tmp_path) == "small.jsonl changed since it was built (same size, different sha256)"


def test_parallel_callers_of_a_damaged_cache_rebuild_it_once(tmp_path):
    builds = []

    def build(folder: Path) -> None:
        builds.append(folder)
        (folder / "data.jsonl").write_text("{}\n" * 100)

    target = tmp_path / "cache-folder"
    ensure_built(target, build, "test cache")
    _drop_lines(target / "data.jsonl", lambda i, n: i < 50)
    _new_process()
    seen = []

    def load() -> None:
        folder = ensure_built(target, build, "test cache")
        seen.append((folder / "data.jsonl").read_text().count("\n"))

    with pytest.warns(RuntimeWarning, match=r"data\.jsonl has 50 lines"):
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(builds) == 2 and seen == [100] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache-folder.lock", "cache-folder"]


# ---- (e) caches written before manifests ----------------------------------------------------------


@pytest.mark.parametrize("old", ["complete", "partial"])
def test_a_world_without_a_manifest_is_regenerated(cache, old):
    reference = write_world(TINY, cache.parent / "reference")
    final = cache / TINY.key()
    if old == "complete":  # what mem1-gym wrote before manifests
        write_world(TINY, final)
    else:
        final.mkdir(parents=True)
        (final / "corpus.jsonl").write_text("partial")
    with pytest.warns(RuntimeWarning, match=rf"synthetic world at {final} .*no {MANIFEST_FILE}"):
        files = ensure_world(TINY)
    assert (final / MANIFEST_FILE).is_file()
    for name in ("corpus.jsonl", "train.jsonl", "validation.jsonl", "test.jsonl"):
        assert (files.root / name).read_bytes() == (reference.root / name).read_bytes()


def test_a_shop_without_a_manifest_is_regenerated():
    config = GeneratorConfig(**SMALL_SHOP)
    config.directory.mkdir(parents=True)
    generate(config, config.directory)  # what mem1-gym wrote before manifests
    with pytest.warns(RuntimeWarning, match=f"generated WebShop at .*no {MANIFEST_FILE}"):
        assert ensure_generated(config) == config.directory
    assert find_problem(config.directory) is None


def test_an_index_without_a_manifest_is_adopted_then_checked(tmp_path):
    corpus = ensure_world(TINY).corpus_path
    index_dir = build_index("bm25s", corpus, tmp_path / "idx")
    (index_dir / MANIFEST_FILE).unlink(missing_ok=True)  # as built before manifests
    load_retriever("bm25s", index_dir)  # meta.json's size checks pass: the manifest is written
    assert find_problem(index_dir) is None
    _scramble(index_dir / "vocab.index.json", 200, n=50)
    _new_process()
    with pytest.raises(RetrievalError, match=r"vocab\.index\.json changed since it was built"):
        load_retriever("bm25s", index_dir)
