"""A retrieval server killed mid-episode and restarted on the same port: the env reports the failed
search as an observation and carries on, and its searches work again once the server is back."""

import time

import gymnasium as gym
import pytest
from reliability_http import free_port, serve_retriever

import mem1_gym  # noqa: F401  (registers the ids)

TIMEOUT_S = 1.0  # the env's retrieval_timeout: a dead server must not cost more than a few of these
# A killed server refuses connections at once; even a client that waited out every attempt would be
# done in (retries + 1) x 2 x timeout plus backoffs, about 8 s with the default 2 retries.
HANG_S = 15.0


def search(env, query: str):
    started = time.monotonic()
    obs, reward, terminated, truncated, info = env.step(f"<think>look it up</think><search>{query}</search>")
    assert time.monotonic() - started < HANG_S, "the search hung on the retrieval server"
    assert not (terminated or truncated) and reward == 0.0 and info["valid_action"] is True
    return obs, info


@pytest.mark.timeout(60)
def test_search_fails_softly_while_the_server_is_down_and_works_after_a_restart(world_corpus, server_processes):
    port = free_port()
    server_processes.append(serve_retriever(world_corpus, port))
    env = gym.make("MEM1-MultiHopQA-2", retriever=f"http://127.0.0.1:{port}/retrieve", retrieval_timeout=TIMEOUT_S)
    try:
        env.reset(seed=0)
        query = env.unwrapped.task.questions[0]
        obs, info = search(env, query)
        assert info["error"] == "" and info["doc_ids"] and "Doc 1(Title:" in obs
        found = info["doc_ids"]

        server_processes[0].kill()  # SIGKILL: no goodbye, the port simply stops answering
        obs, info = search(env, query)
        assert info["error"] and info["doc_ids"] == [], info
        assert f"127.0.0.1:{port}" in info["error"] and info["error"] in obs  # the agent is told, and where
        assert "Doc 1(Title:" not in obs

        server_processes.append(serve_retriever(world_corpus, port))
        obs, info = search(env, query)
        assert info["error"] == "" and info["doc_ids"] == found and "Doc 1(Title:" in obs

        obs, reward, terminated, truncated, info = env.step("<answer>one; two</answer>")
        assert terminated and not truncated and obs == "" and len(info["em"]) == 2
    finally:
        env.close()
