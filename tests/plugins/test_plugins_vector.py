"""Every family runs in Gymnasium's vector envs; async workers return the same text as one env."""

from __future__ import annotations

import shutil
import time

import gymnasium as gym
import pytest

import mem1_gym  # noqa: F401


def _first_actions(env_id: str) -> list[str]:
    return ["search[deodorant]"] * 4 if "WebShop" in env_id else ["search[river]"] * 4


@pytest.mark.parametrize("env_id", ["MEM1-MultiHopQA-2", "MEM1-WebQA-1", "MEM1-WebShop-Text"])
def test_async_vector_env_matches_single_envs(env_id):
    seeds = [0, 1, 2, 3]
    single = gym.make(env_id)
    expected = [single.reset(seed=s)[0] for s in seeds]
    after_step = []
    for s, action in zip(seeds, _first_actions(env_id)):
        single.reset(seed=s)
        after_step.append(single.step(action)[0])
    single.close()

    # shared_memory=False: with Text spaces the default shared memory returns stale strings (SETUP-NOTES).
    envs = gym.make_vec(env_id, num_envs=4, vectorization_mode="async", vector_kwargs={"shared_memory": False})
    try:
        obs, infos = envs.reset(seed=seeds)
        assert list(obs) == expected
        obs, _, terminated, _, infos = envs.step(_first_actions(env_id))
        assert list(obs) == after_step
        assert infos["valid_action"].all() and not terminated.any()
    finally:
        envs.close()


def test_sync_vector_env_of_the_sb3_wrapped_env():
    from mem1_gym.wrappers import wrap_for_sb3

    envs = gym.vector.SyncVectorEnv([lambda: wrap_for_sb3(gym.make("MEM1-WebShop-Text"))] * 2)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 2048)
    envs.close()


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs Debian chromium + chromium-driver")
def test_browser_env_in_two_async_workers():
    start = time.perf_counter()
    envs = gym.make_vec("MEM1-WebShop", num_envs=2, vectorization_mode="async", vector_kwargs={"shared_memory": False})
    try:
        obs, infos = envs.reset(seed=[0, 1])
        obs, _, _, _, infos = envs.step(["search[deodorant]", "search[bed frame]"])
        assert list(infos["page"]) == ["results", "results"]
        assert "Deodorant" in obs[0] and obs[0] != obs[1]
    finally:
        envs.close()
    assert time.perf_counter() - start < 60


def test_async_workers_share_one_retrieval_server():
    """The docs/retrieval.md recipe: one `mem1-gym serve-retriever`, many env workers with retriever=URL."""
    import subprocess
    import sys

    import requests
    from plugins_server import free_port

    from mem1_gym.data.synthetic import WorldConfig, ensure_world

    port = free_port()
    corpus = str(ensure_world(WorldConfig()).corpus_path)
    cmd = [sys.executable, "-m", "mem1_gym", "serve-retriever", "--backend", "bm25s", "--corpus", corpus, "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/retrieve"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.post(url, json={"queries": ["x"], "topk": 1}, timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        single = gym.make("MEM1-MultiHopQA-4")
        expected = []
        for seed in range(4):
            single.reset(seed=seed)
            expected.append(single.step("search[river]")[0])
        envs = gym.make_vec("MEM1-MultiHopQA-4", num_envs=4, vectorization_mode="async",
                            vector_kwargs={"shared_memory": False}, retriever=url)
        try:
            envs.reset(seed=[0, 1, 2, 3])
            obs, _, _, _, infos = envs.step(["search[river]"] * 4)
            assert list(infos["error"]) == [""] * 4 and list(obs) == expected
        finally:
            envs.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
