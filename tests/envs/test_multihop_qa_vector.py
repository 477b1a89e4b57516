"""MultiHopQAVectorEnv: the same steps as a SyncVectorEnv of single envs, with one search call per step."""

import doctest

import gymnasium as gym
import numpy as np
import pytest

import mem1_gym  # noqa: F401
from mem1_gym.envs import multihop_qa_vector
from mem1_gym.envs.multihop_qa_vector import MultiHopQAVectorEnv
from mem1_gym.retrieval.base import RetrievalError, Retriever

# Four envs, max_turns=3: env 3 answers at once and autoresets, env 1 answers on step 2, envs 0 and 2
# run out of turns on step 3; the steps after each end are autoresets (their action is ignored).
ACTIONS = [
    ["search[river]", "junk", "<think>s</think><search>founded by</search>", "<answer>a; b</answer>"],
    ["search[born]", "<answer>x</answer>", "search[capital]", "search[ignored: autoreset]"],
    ["<search>lake</search>", "search[ignored: autoreset]", "bad turn", "search[castle]"],
    ["search[ignored]", "search[mason]", "search[ignored]", "<answer>q; r</answer>"],
    ["search[village]", "search[]", "search[quarry]", "search[ignored]"],
]


class CountingRetriever(Retriever):
    """Records the queries of every call, then searches the wrapped retriever."""

    def __init__(self, inner: Retriever):
        self.inner, self.calls = inner, []

    def search(self, queries, k=3):
        self.calls.append(list(queries))
        return self.inner.search(queries, k)


class FailingRetriever(Retriever):
    def search(self, queries, k=3):
        raise RetrievalError("index server at http://127.0.0.1:9/retrieve is down; start it with mem1-gym serve-retriever")


@pytest.fixture(scope="module")
def bm25():
    from mem1_gym.data.synthetic import WorldConfig, ensure_world
    from mem1_gym.retrieval import make_retriever

    return make_retriever("bm25s", corpus_path=ensure_world(WorldConfig()).corpus_path)


def make(mode: str, **kwargs) -> gym.vector.VectorEnv:
    return gym.make_vec("MEM1-MultiHopQA-2", num_envs=4, vectorization_mode=mode, max_turns=3, **kwargs)


def rollout(envs, actions=ACTIONS) -> list:
    out = [envs.reset(seed=5)]
    out += [envs.step(step_actions) for step_actions in actions]
    masked = np.array([True, False, True, False])
    out.append(envs.reset(seed=[1, 2, 3, 4], options={"reset_mask": masked}))
    envs.close()
    return out


def assert_same(got: list, expected: list) -> None:
    """Identical observations, arrays, and infos (same keys in the same order, same dtypes and values)."""
    assert len(got) == len(expected)
    for step, (a, b) in enumerate(zip(got, expected)):
        assert a[0] == b[0] and isinstance(a[0], tuple), step
        for x, y in zip(a[1:-1], b[1:-1]):
            assert x.dtype == y.dtype and x.tolist() == y.tolist(), step
        assert list(a[-1]) == list(b[-1]), step
        for key in a[-1]:
            assert a[-1][key].dtype == b[-1][key].dtype and a[-1][key].tolist() == b[-1][key].tolist(), (step, key)


def test_vector_entry_point_is_registered():
    envs = gym.make_vec("MEM1-MultiHopQA-4", num_envs=8, vectorization_mode="vector_entry_point")
    assert isinstance(envs, MultiHopQAVectorEnv) and envs.num_envs == 8
    assert envs.metadata["autoreset_mode"] is gym.vector.AutoresetMode.NEXT_STEP
    assert envs.observation_space == gym.vector.utils.batch_space(envs.single_observation_space, 8)
    assert len({id(env.retriever) for env in envs.envs}) == 1
    envs.close()


def test_same_steps_as_sync_vector_env():
    sync = rollout(make("sync"))
    batched = rollout(make("vector_entry_point"))
    assert_same(batched, sync)
    # the scenario covers what it claims: answers, truncations, invalid turns and autoresets
    assert sync[1][2].tolist() == [False, False, False, True] and sync[3][3].tolist() == [True, False, True, False]
    assert sync[2][1].tolist() == [0.0, 0.0, 0.0, 0.0] and sync[2][4]["action_type"][3] == ""


def test_one_search_call_per_step_with_every_query(bm25):
    counting = CountingRetriever(bm25)
    batched = rollout(make("vector_entry_point", retriever=counting))
    assert counting.calls == [
        ["river", "founded by"],
        ["born", "capital"],
        ["lake", "castle"],
        ["mason"],
        ["village", "quarry"],
    ]
    assert_same(batched, rollout(make("sync", retriever=bm25)))


def test_steps_without_a_search_do_not_call_the_retriever(bm25):
    counting = CountingRetriever(bm25)
    envs = make("vector_entry_point", retriever=counting)
    envs.reset(seed=0)
    envs.step(["junk", "<answer>a</answer>", "", "answer[b]"])
    assert counting.calls == []
    envs.close()


def test_retrieval_errors_follow_on_retrieval_error():
    actions = [["search[x]", "junk", "search[y]", "<answer>a</answer>"]]
    batched = rollout(make("vector_entry_point", retriever=FailingRetriever()), actions)
    assert_same(batched, rollout(make("sync", retriever=FailingRetriever()), actions))
    obs, _, _, _, infos = batched[1]
    assert "search failed" in obs[0] and "search failed" in obs[2]
    assert [("is down" in e) for e in infos["error"]] == [True, False, True, False]

    envs = make("vector_entry_point", retriever=FailingRetriever(), on_retrieval_error="raise")
    envs.reset(seed=0)
    with pytest.raises(RetrievalError, match="is down"):
        envs.step(actions[0])
    envs.close()


def test_one_request_per_step_over_http(bm25):
    from mem1_gym.retrieval.server import start_server

    counting = CountingRetriever(bm25)
    with start_server(counting) as server:
        batched = rollout(make("vector_entry_point", retriever=server.url + "/retrieve"))
    assert len(counting.calls) == len(ACTIONS)
    assert_same(batched, rollout(make("sync", retriever=bm25)))


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        MultiHopQAVectorEnv(num_envs=0, n_questions=1)
    envs = make("vector_entry_point")
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="one action per env"):
        envs.step(["search[x]"])
    with pytest.raises(ValueError, match="one per env"):
        envs.reset(seed=[1, 2])
    envs.close()


def test_docstring_example_runs():
    result = doctest.testmod(multihop_qa_vector, raise_on_error=False)
    assert result.attempted >= 4 and result.failed == 0
