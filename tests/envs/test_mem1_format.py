"""prompt_format="mem1": the exact text MEM1's released checkpoint was trained on (issue 23, item 2).

Expected strings are written out by hand from reference/mem1.md §1.3 and §4.4: the observation is
``"\\n\\n<information>{hint}\\n\\n{docs.strip()}</information>\\n\\n"`` and the hint at one turn left
says "the question"; the prompt is the one stored in MEM1's parquet.
"""

import json

import gymnasium as gym
import pytest

import mem1_gym  # noqa: F401
from mem1_gym import protocol
from mem1_gym.retrieval.base import Doc, Retriever
from mem1_gym.web.providers import SearchProvider, SearchResult

QUESTIONS = ["When was Orvane Castle built", "Where was Tella Quorr born?"]
STORED_PROMPT = ("A prompt as MEM1's data builder stored it.\n"
                 "Answer the following questions: When was Orvane Castle built?; Where was Tella Quorr born?\n")
DOCS = ('Doc 1(Title: "Orvane Castle") Orvane Castle was built in 1321 by Tella Quorr.\n'
        'Doc 2(Title: "Pell Ash") Pell Ash is a village.')


class FixedRetriever(Retriever):
    """Two passages for every query; the last one ends with spaces, which MEM1 strips."""

    def search(self, queries, k=3):
        return [[Doc("7", '"Orvane Castle"', "Orvane Castle was built in 1321 by Tella Quorr."),
                 Doc("9", '"Pell Ash"', "Pell Ash is a village.  ")] for _ in queries]


class FixedProvider(SearchProvider):
    """A web search provider without HTTP: two results for every query."""

    name, live = "fixed", False

    def __init__(self):  # no client: nothing is fetched
        pass

    def search(self, query, k):
        return [SearchResult("Page A", "http://a.test/", "snippet a", 1),
                SearchResult("Page B", "http://b.test/", "snippet b", 2)]

    def close(self):
        pass


@pytest.fixture
def data_dir(tmp_path):
    """MEM1's parquet (schema of reference/mem1.md §3.2) and a FlashRAG file holding the same two questions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = {
        "data_source": "hotpotqa",
        "prompt": [{"role": "user", "content": STORED_PROMPT}],
        "ability": "fact-reasoning",
        "reward_model": {"style": "rule", "ground_truth": {"target": [["1321"], ["Pell Ash"]]}},
        "extra_info": {"split": "test", "indices": [0, 1]},
    }
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "mem1.parquet")
    with open(tmp_path / "test.jsonl", "w") as f:
        for i, (question, answer) in enumerate(zip(QUESTIONS, ["1321", "Pell Ash"])):
            f.write(json.dumps({"id": f"q{i}", "question": question, "golden_answers": [answer]}) + "\n")
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"id": "7", "contents": '"Orvane Castle"\nbuilt 1321'}) + "\n")
    return tmp_path


def make_env(data_dir, qa_file, **kwargs):
    return gym.make("MEM1-MultiHopQA-2", split="test", qa_path={"test": str(data_dir / qa_file)},
                    corpus_path=str(data_dir / "corpus.jsonl"), retriever=FixedRetriever(), **kwargs)


def test_mem1_format_shows_the_prompt_stored_in_mem1s_parquet(data_dir):
    env = make_env(data_dir, "mem1.parquet", prompt_format="mem1")
    obs, info = env.reset(seed=0)
    assert obs == STORED_PROMPT and info["injected"] == STORED_PROMPT
    assert env.unwrapped.task.prompt == STORED_PROMPT  # formats.load_mem1_parquet keeps it
    env.close()
    default = make_env(data_dir, "mem1.parquet")
    obs, _ = default.reset(seed=0)
    assert obs.startswith(protocol.QA_INSTRUCTIONS) and obs.endswith(
        "Answer the following 2 questions:\nQ1: When was Orvane Castle built?\nQ2: Where was Tella Quorr born?\n")
    default.close()


def test_mem1_format_without_a_stored_prompt_uses_mem1s_layout(data_dir):
    env = make_env(data_dir, "test.jsonl", prompt_format="mem1")
    obs, _ = env.reset(seed=0)
    assert obs == protocol.MEM1_INSTRUCTIONS + (
        "Answer the following questions: When was Orvane Castle built?; Where was Tella Quorr born?\n")
    env.close()


def test_mem1_observations_byte_for_byte(data_dir):
    env = make_env(data_dir, "mem1.parquet", prompt_format="mem1", max_turns=3)
    env.reset(seed=0)
    turn = "<think>nothing yet</think><search>Orvane Castle</search>"
    first, second, last = (env.step(turn) for _ in range(3))
    assert first[0] == "\n\n<information>[HINT]You have 2 turns left.[/HINT]\n\n" + DOCS + "</information>\n\n"
    assert second[0] == ("\n\n<information>[HINT]You have 1 turn left. You must answer the question in the next "
                         "turn.[/HINT]\n\n" + DOCS + "</information>\n\n")
    assert last[0] == "\n\n<information>\n\n" + DOCS + "</information>\n\n"  # MEM1's last step has no hint
    assert last[3] and last[4]["injected"] == last[0]
    env.close()


def test_default_observation_is_unchanged(data_dir):
    env = make_env(data_dir, "mem1.parquet", max_turns=3)
    env.reset(seed=0)
    obs = env.step("<think>nothing yet</think><search>Orvane Castle</search>")[0]
    assert obs == "\n\n<information>[HINT]You have 2 turns left.[/HINT]\n\n" + DOCS + "\n</information>\n\n"
    obs = env.step("<search>Orvane Castle</search>")[0]
    assert "You must answer the questions in the next turn." in obs
    env.close()


def test_mem1_invalid_turn_keeps_our_message_in_mem1s_block(data_dir):
    env = make_env(data_dir, "mem1.parquet", prompt_format="mem1")
    env.reset(seed=0)
    obs, _, terminated, _, info = env.step("no action")
    assert not terminated and not info["valid_action"]
    assert obs == (f"\n\n<information>[HINT]You have 5 turns left.[/HINT]\n\n{protocol.INVALID_ACTION_MESSAGE} "
                   f"({info['error']})</information>\n\n")
    env.close()


def test_hint_wording_of_each_format():
    assert protocol.mem1_turns_left_hint(3) == "[HINT]You have 3 turns left.[/HINT]"
    assert protocol.mem1_turns_left_hint(1) == (
        "[HINT]You have 1 turn left. You must answer the question in the next turn.[/HINT]")
    assert protocol.mem1_turns_left_hint(0) == ""
    assert protocol.turns_left_hint(1) == (
        "[HINT]You have 1 turn left. You must answer the questions in the next turn.[/HINT]")


def test_mem1_web_results_are_passages_without_urls():
    env = gym.make("MEM1-WebQA-2", search_provider=FixedProvider(), prompt_format="mem1")
    obs, _ = env.reset(seed=0)
    assert obs.startswith(protocol.MEM1_INSTRUCTIONS + "Answer the following questions: ")
    obs, _, _, _, info = env.step("<think>start</think><search>anything</search>")
    assert obs == ('\n\n<information>[HINT]You have 5 turns left.[/HINT]\n\n'
                   'Doc 1(Title: "Page A") snippet a\nDoc 2(Title: "Page B") snippet b</information>\n\n')
    assert info["result_urls"] == ["http://a.test/", "http://b.test/"]
    env.close()


@pytest.mark.parametrize("env_id, kwargs, message", [
    ("MEM1-MultiHopQA-2", {"prompt_format": "MEM1"}, "prompt_format must be one of"),
    ("MEM1-WebQA-2", {"prompt_format": "mem1", "allow_open": True}, "no <open> action"),
])
def test_bad_prompt_format_is_a_clear_error(env_id, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make(env_id, **kwargs)
