"""MEM1-MultiHopQA behaviour: episodes, rewards, info, bad input, real-format data, vector envs."""

import doctest
import json
import time

import gymnasium as gym
import pytest

import mem1_gym  # noqa: F401
from mem1_gym.envs import multihop_qa
from mem1_gym.oracle import ScriptedOracle
from mem1_gym.retrieval.base import RetrievalError, Retriever

FINAL_KEYS = {"em", "f1", "em_sum", "f1_sum", "n_correct", "success", "answered", "n_answers", "answer_count_mismatch"}
STEP_KEYS = {"turn", "turns_left", "max_turns", "task_id", "task_index", "n_questions", "action_type", "valid_action",
             "error", "query", "has_think", "consumed_chars", "doc_ids", "injected"}


def play_oracle(env, **reset_kwargs):
    obs, info = env.reset(**reset_kwargs)
    oracle = ScriptedOracle()
    oracle.reset(env.unwrapped.task)
    total, transcript = 0.0, [obs]
    while True:
        action = oracle.act(obs, info["turns_left"])
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        transcript += [action, obs]
        if terminated or truncated:
            return total, terminated, info, transcript


@pytest.mark.parametrize("n", [1, 2, 16])
def test_oracle_solves_synthetic_tasks(n):
    env = gym.make(f"MEM1-MultiHopQA-{n}", split="validation")
    for index in range(3):
        total, terminated, info, transcript = play_oracle(env, options={"task_index": index})
        assert terminated and info["success"] and total == float(n) == info["em_sum"]
        assert info["f1"] == [1.0] * n
        # every search observation carries the hint and Search-R1-rendered passages
        assert all("[HINT]" in t and "Doc 1(Title: " in t for t in transcript[2:-1:2])
    env.close()


def test_info_is_flat_and_documented():
    env = gym.make("MEM1-MultiHopQA-2")
    obs, info = env.reset(seed=1)
    assert STEP_KEYS <= set(info) and info["injected"] == obs
    obs, _, _, _, info = env.step("<think>s</think><search>founded</search> trailing junk")
    assert set(info) == STEP_KEYS and info["injected"] == obs
    assert info["query"] == "founded" and info["has_think"] and len(info["doc_ids"]) == 3
    assert info["consumed_chars"] == len("<think>s</think><search>founded</search>")
    _, _, terminated, _, info = env.step("<answer>a; b</answer>")
    assert terminated and set(info) == STEP_KEYS | FINAL_KEYS | {"evidence"}
    assert all(not isinstance(v, dict) for v in info.values())
    env.close()


def test_turn_budget_truncates_with_zero_reward():
    env = gym.make("MEM1-MultiHopQA-2", max_turns=3)
    env.reset(seed=0)
    hints = []
    for turn in range(1, 4):
        obs, reward, terminated, truncated, info = env.step("<search>river</search>")
        hints.append(obs.split("[HINT]")[1].split("[/HINT]")[0])
        assert reward == 0.0 and not terminated and truncated == (turn == 3)
    assert hints == ["You have 2 turns left.", "You have 1 turn left. You must answer the questions in the next turn.",
                     "You have no turns left."]
    assert info["answered"] is False and info["em"] == [0.0, 0.0] and info["n_correct"] == 0
    with pytest.raises(gym.error.ResetNeeded):
        env.step("<search>again</search>")
    env.close()


def test_evidence_is_the_recall_of_each_questions_supporting_passages():
    env = gym.make("MEM1-MultiHopQA-2", split="validation")
    # the oracle retrieves every supporting passage
    *_, info, _ = play_oracle(env, options={"task_index": 5})
    assert info["evidence"] == [1.0, 1.0]
    # answering at once retrieved nothing; truncation reports it too
    env.reset(options={"task_index": 5})
    assert env.step("<answer>a; b</answer>")[4]["evidence"] == [0.0, 0.0]
    # one search for the first hop of Q1 only: Q1 gets 1 / (its hops), Q2 nothing
    index = next(i for i, t in enumerate(env.unwrapped.tasks) if len(t.items[0].hops) == 2)
    env.reset(options={"task_index": index})
    first_hop = env.unwrapped.task.items[0].hops[0]
    obs, _, _, _, info = env.step(f"<search>{first_hop.query}</search>")
    assert first_hop.doc_id in info["doc_ids"] and "evidence" not in info  # only on the last step
    steps = [env.step("<search>zzzz qqqq</search>") for _ in range(env.unwrapped.max_turns - 1)]
    assert steps[-1][3] and steps[-1][4]["evidence"][0] == 0.5
    retrieved = {d for step in steps for d in step[4]["doc_ids"]} | set(info["doc_ids"])
    second = env.unwrapped.task.items[1].hops
    assert steps[-1][4]["evidence"][1] == sum(h.doc_id in retrieved for h in second) / len(second)
    env.close()


def test_evidence_bonus_rewards_the_supporting_passages_found():
    plain = gym.make("MEM1-MultiHopQA-2", split="validation", reward="f1")
    shaped = gym.make("MEM1-MultiHopQA-2", split="validation", reward="f1", reward_scale=0.5, evidence_bonus=0.25)
    for env in (plain, shaped):
        env.reset(options={"task_index": 5})
        hop = env.unwrapped.task.items[0].hops[0]
        assert env.step(f"<search>{hop.query}</search>")[1] == 0.0  # only the last step is rewarded
    (_, r_plain, _, _, info), (_, r_shaped, *_) = (env.step("<answer>x; y</answer>") for env in (plain, shaped))
    assert info["evidence"][0] > 0 and info["evidence"][1] == 0
    assert r_shaped == pytest.approx(0.5 * (r_plain + 0.25 * sum(info["evidence"])))
    with pytest.raises(ValueError, match="evidence_bonus"):
        gym.make("MEM1-MultiHopQA-2", evidence_bonus=-1)
    for env in (plain, shaped):
        env.close()


def test_default_budgets_follow_the_paper():
    assert [gym.make(f"MEM1-MultiHopQA-{n}").unwrapped.max_turns for n in (1, 4, 8, 16)] == [6, 6, 20, 36]


def test_rewards_f1_scale_and_penalty():
    env = gym.make("MEM1-MultiHopQA-2", reward="f1", reward_scale=0.5, invalid_action_penalty=0.25)
    env.reset(seed=0, options={"task_index": 0})
    golds = env.unwrapped.task.golds
    _, reward, *_ = env.step("no action here")
    assert reward == -0.25
    _, reward, terminated, _, info = env.step(f"<answer>{golds[0][0]}; wrong</answer>")
    assert terminated and info["em"] == [1.0, 0.0] and reward == pytest.approx(0.5 * (1.0 + info["f1"][1]))
    env.close()


def test_missing_answers_score_zero():
    env = gym.make("MEM1-MultiHopQA-3")
    env.reset(seed=0)
    golds = env.unwrapped.task.golds
    _, reward, _, _, info = env.step(f"<answer>{golds[0][0]}</answer>")
    assert reward == 1.0 and info["em"] == [1.0, 0.0, 0.0] and info["answer_count_mismatch"] and info["n_answers"] == 1
    env.close()


def test_task_index_addresses_every_task_once():
    env = gym.make("MEM1-MultiHopQA-8", split="test")
    tasks = env.unwrapped.tasks
    ids = {env.reset(options={"task_index": i})[1]["task_id"] for i in range(len(tasks))}
    assert len(ids) == len(tasks)
    question_ids = [item.id for task in tasks for item in task.items]
    assert len(question_ids) == len(set(question_ids))  # no question is used twice
    with pytest.raises(ValueError, match="task_index must be in"):
        env.reset(options={"task_index": len(tasks)})
    env.close()


def test_splits_are_disjoint():
    questions = {}
    for split in ("train", "validation", "test"):
        env = gym.make("MEM1-MultiHopQA-1", split=split)
        questions[split] = {t.items[0].question for t in env.unwrapped.tasks}
        env.close()
    assert not questions["train"] & questions["validation"]
    assert not questions["train"] & questions["test"]
    assert not questions["validation"] & questions["test"]


class FailingRetriever(Retriever):
    def search(self, queries, k=3):
        raise RetrievalError("index server at http://127.0.0.1:9/retrieve is down; start it with mem1-gym serve-retriever")


def test_retrieval_failure_is_an_observation_or_an_error_by_config():
    env = gym.make("MEM1-MultiHopQA-1", retriever=FailingRetriever())
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("<search>x</search>")
    assert "search failed" in obs and "is down" in info["error"] and info["valid_action"] and not terminated
    env.close()
    env = gym.make("MEM1-MultiHopQA-1", retriever=FailingRetriever(), on_retrieval_error="raise")
    env.reset(seed=0)
    with pytest.raises(RetrievalError, match="is down"):
        env.step("<search>x</search>")


def test_dead_retrieval_server_never_hangs():
    env = gym.make("MEM1-MultiHopQA-1", retriever="http://127.0.0.1:9/retrieve", retrieval_timeout=1.0)
    env.reset(seed=0)
    started = time.monotonic()
    obs, *_, info = env.step("<search>x</search>")
    assert time.monotonic() - started < 30
    assert "127.0.0.1:9" in info["error"] and "search failed" in obs
    env.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "dev"}, "split must be one of"),
    ({"reward": "accuracy"}, "reward must be 'em' or 'f1'"),
    ({"max_turns": 0}, "max_turns must be >= 1"),
    ({"qa_path": "x.jsonl"}, "without corpus_path"),
    ({"corpus_path": "/nonexistent/corpus.jsonl", "qa_path": "/nonexistent/qa.jsonl"}, "/nonexistent/qa.jsonl"),
])
def test_bad_configuration_is_a_clear_error(kwargs, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        gym.make("MEM1-MultiHopQA-1", **kwargs)


def test_render_ansi_returns_the_last_observation():
    env = gym.make("MEM1-MultiHopQA-1", render_mode="ansi")
    obs, _ = env.reset(seed=0)
    assert env.render() == obs
    env.close()


def test_async_vector_env_of_four():
    envs = gym.vector.AsyncVectorEnv([lambda: gym.make("MEM1-MultiHopQA-2")] * 4, shared_memory=False)
    obs, info = envs.reset(seed=0)
    assert len(obs) == 4 and all(isinstance(o, str) and "Q2: " in o for o in obs)
    obs, reward, terminated, truncated, info = envs.step(["<search>founded</search>", "junk", "search[born]", "<answer>a</answer>"])
    assert list(info["valid_action"]) == [True, False, True, True]
    assert list(terminated) == [False, False, False, True] and reward.shape == (4,)
    envs.close()


def test_docstring_example_runs():
    result = doctest.testmod(multihop_qa, raise_on_error=False)
    assert result.attempted >= 5 and result.failed == 0


# ---------------------------------------------------------------------------- real formats


@pytest.fixture
def flashrag_dir(tmp_path):
    """A tiny Search-R1 corpus and FlashRAG QA files, written as the real files are."""
    facts = [("Orvane Castle", "Orvane Castle was built in 1321 by the mason Tella Quorr."),
             ("Brisk River", "The Brisk River flows through the town of Emmerholt into Lake Sarn."),
             ("Lake Sarn", "Lake Sarn is the deepest lake of the Varra valley, 212 metres deep."),
             ("Tella Quorr", "Tella Quorr was a mason born in the village of Pell Ash."),
             ("Pell Ash", "Pell Ash is a village known for its slate quarries.")]
    with open(tmp_path / "corpus.jsonl", "w") as f:
        for i, (title, text) in enumerate(facts * 4):
            f.write(json.dumps({"id": str(i), "contents": f'"{title}"\n{text}'}) + "\n")
    rows = {
        "train": [("When was Orvane Castle built?", ["1321"]), ("Which lake does the Brisk River flow into?", ["Lake Sarn", "Sarn"])],
        "dev": [("How deep is Lake Sarn?", ["212 metres", "212 m"]), ("Where was Tella Quorr born?", ["Pell Ash"])],
        "test": [("What is Pell Ash known for?", ["slate quarries", "slate"]), ("Who built Orvane Castle?", ["Tella Quorr"])],
    }
    for split, qa in rows.items():
        with open(tmp_path / f"{split}.jsonl", "w") as f:
            for j, (question, answers) in enumerate(qa):
                f.write(json.dumps({"id": f"{split}_{j}", "question": question, "golden_answers": answers}) + "\n")
    return tmp_path


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_flashrag_files_run_through_the_same_code_path(flashrag_dir, split):
    env = gym.make("MEM1-MultiHopQA-2", corpus_path=str(flashrag_dir / "corpus.jsonl"), qa_path=str(flashrag_dir),
                   split=split, index_dir=str(flashrag_dir / "index"))
    total, terminated, info, transcript = play_oracle(env, seed=0)
    assert terminated and total == 2.0 and len(env.unwrapped.tasks) == 1
    assert '(Title: "' in transcript[2]
    assert "evidence" not in info  # FlashRAG files list no supporting passages
    env.close()
    with pytest.raises(ValueError, match="supporting passages .* do not list"):
        gym.make("MEM1-MultiHopQA-2", corpus_path=str(flashrag_dir / "corpus.jsonl"), qa_path=str(flashrag_dir),
                 split=split, index_dir=str(flashrag_dir / "index"), evidence_bonus=0.5)


def test_flashrag_parquet_and_split_mapping(flashrag_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in open(flashrag_dir / "test.jsonl")]
    pq.write_table(pa.Table.from_pylist(rows), flashrag_dir / "test.parquet")
    env = gym.make("MEM1-MultiHopQA-1", corpus_path=str(flashrag_dir / "corpus.jsonl"),
                   qa_path={"test": str(flashrag_dir / "test.parquet")}, split="test",
                   index_dir=str(flashrag_dir / "index"))
    assert sorted(t.items[0].question for t in env.unwrapped.tasks) == sorted(r["question"] for r in rows)
    env.close()


def test_missing_corpus_names_the_path(flashrag_dir):
    with pytest.raises(FileNotFoundError, match="nowhere/corpus.jsonl"):
        gym.make("MEM1-MultiHopQA-1", corpus_path="/nowhere/corpus.jsonl", qa_path=str(flashrag_dir))


def test_mem1_multi_objective_parquet(flashrag_dir):
    """MEM1's own parquet: tasks are pre-composed rows whose prompt ends with the questions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    questions = ["When was Orvane Castle built", "Where was Tella Quorr born"]
    row = {
        "data_source": "hotpotqa",
        "prompt": [{"role": "user", "content": "You will answer several questions...\n"
                    "Answer the following questions: " + "; ".join(q + "?" for q in questions) + "\n"}],
        "ability": "fact-reasoning",
        "reward_model": {"style": "rule", "ground_truth": {"target": [["1321"], ["Pell Ash"]]}},
        "extra_info": {"split": "test", "indices": [0, 1]},
    }
    pq.write_table(pa.Table.from_pylist([row]), flashrag_dir / "mem1_test.parquet")
    env = gym.make("MEM1-MultiHopQA-2", corpus_path=str(flashrag_dir / "corpus.jsonl"), split="test",
                   qa_path={"test": str(flashrag_dir / "mem1_test.parquet")}, index_dir=str(flashrag_dir / "index"))
    assert [q.rstrip("?") for q in env.unwrapped.tasks[0].questions] == questions
    total, terminated, info, _ = play_oracle(env, seed=0)
    assert terminated and total == 2.0
    env.close()
    with pytest.raises(ValueError, match="MEM1-MultiHopQA-2"):
        gym.make("MEM1-MultiHopQA-4", corpus_path=str(flashrag_dir / "corpus.jsonl"), split="test",
                 qa_path={"test": str(flashrag_dir / "mem1_test.parquet")}, index_dir=str(flashrag_dir / "index"))


def test_env_over_the_retrieval_server_matches_in_process():
    """Many workers can share one index: the env through the Search-R1 HTTP format sees the same passages."""
    from mem1_gym.data.synthetic import WorldConfig, ensure_world
    from mem1_gym.retrieval import make_retriever
    from mem1_gym.retrieval.server import start_server

    retriever = make_retriever("bm25s", corpus_path=ensure_world(WorldConfig()).corpus_path)
    actions = ["<think>s</think><search>founded by</search>", "junk", "<search>capital river</search>", "<answer>a; b</answer>"]
    with start_server(retriever) as server:
        runs = []
        for spec in ("bm25s", server.url + "/retrieve"):
            env = gym.make("MEM1-MultiHopQA-2", retriever=spec)
            runs.append([env.reset(seed=3)] + [env.step(a) for a in actions])
            env.close()
    assert runs[0] == runs[1]
