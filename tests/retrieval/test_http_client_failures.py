"""A retrieval server whose answer breaks at the socket level (issue 21): ``MEM1-MultiHopQA`` with
``retriever=URL`` returns the failed-search observation and ``info["error"]``, and ``step`` never raises."""

import gymnasium as gym
import pytest
from brokenhttp import BrokenHttp, bad_chunk_size, bad_gzip, deep_json, oversize_json, truncated_chunked

import mem1_gym  # noqa: F401

HIT = {"result": [[{"document": {"id": "1", "contents": '"T"\nFILL'}, "score": 1.0}]]}  # a valid answer, once grown

BROKEN = {
    "truncated-chunked": (lambda: truncated_chunked(b'{"result": [[{"document": '), "the connection broke"),
    "bad-chunk-size": (bad_chunk_size, "the connection broke"),
    "bad-gzip": (bad_gzip, "could not be decompressed"),
    "deep-json": (deep_json, "nested more than 64 levels"),
    "oversize-chunked": (lambda: oversize_json(HIT, "FILL"), "larger than 33554432 bytes"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_env_step_on_a_broken_retrieval_answer_is_an_observation(case):
    reply, says = BROKEN[case]
    server = BrokenHttp(reply())
    env = gym.make("MEM1-MultiHopQA-1", retriever=server.url)
    try:
        env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step("<think>t</think><search>anything</search>")
    finally:
        env.close()
        server.stop()
    assert says in info["error"] and f"retrieval server at {server.url}/retrieve failed 1 attempt(s)" in info["error"]
    assert "The search failed" in obs and info["doc_ids"] == [] and info["valid_action"]
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert [(method, path) for method, path, _ in server.seen] == [("POST", "/retrieve")]  # broken bodies: no retry
