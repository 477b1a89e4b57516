"""The scripted oracle: full EM on synthetic tasks, the protocol's turn format, budgets, determinism.

Observations are simulated here (the gold passage of the hop just searched, or nothing), so these
tests do not depend on the env or on a retriever.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mem1_gym.data.tasks import Composition, Hop, QAItem, Task, compose
from mem1_gym.oracle import UNKNOWN, ScriptedOracle, oracle_turns_needed
from mem1_gym.protocol import (
    ActionType,
    information_block,
    parse_action,
    qa_prompt,
    split_answers,
    turns_left_hint,
)
from mem1_gym.scoring import score_answer_text


def play(task: Task, docs: dict[str, str], max_turns: int, show_gold: bool = True) -> list[str]:
    """Run the oracle for at most ``max_turns`` turns; the observation after a search is the gold
    passage of the hop whose query was searched (or an empty result when ``show_gold`` is False)."""
    by_query = {hop.query: hop.doc_id for item in task.items for hop in item.hops}
    oracle = ScriptedOracle()
    oracle.reset(task)
    observation, turns = qa_prompt(task.questions), []
    for turn in range(max_turns):
        turns_left = max_turns - turn
        action = parse_action(oracle.act(observation, turns_left))
        turns.append(action)
        if action.type is ActionType.ANSWER:
            break
        body = docs.get(by_query.get(action.content), "") if show_gold else "No documents matched the query."
        observation = information_block(turns_left_hint(turns_left - 1), body)
    return turns


@pytest.fixture(scope="module")
def docs(small_world):
    return dict(small_world.corpus)


@pytest.mark.parametrize("n", [1, 3, 16])
def test_oracle_scores_full_em_on_every_synthetic_task(small_world, docs, n):
    tasks = compose(small_world.questions["test"], Composition(n=n, seed=n))
    assert tasks
    for task in tasks:
        turns = play(task, docs, max_turns=oracle_turns_needed(task))
        assert all(t.valid and t.think for t in turns)
        assert [t.type for t in turns] == [ActionType.SEARCH] * (len(turns) - 1) + [ActionType.ANSWER]
        assert len(turns) == oracle_turns_needed(task)
        score = score_answer_text(turns[-1].content, task.golds)
        assert score.em_sum == n and not score.count_mismatch, (task.questions, turns[-1].content)


def test_oracle_walks_hops_in_order_and_keeps_a_state(small_world, docs):
    task = Task("t", tuple(i for i in small_world.questions["validation"] if i.kind == "bridge")[:2])
    turns = play(task, docs, max_turns=10)
    assert [t.content for t in turns[:-1]] == [h.query for item in task.items for h in item.hops]
    first, second = task.items[0].hops
    assert turns[1].think.startswith(f"Q1: [{first.query}] = {first.answer} (confirmed); [{second.query}] next.")
    assert turns[1].think.endswith("Q2: pending.")
    # once resolved, a question keeps only its answer: the hop trail is dropped from memory
    assert turns[-1].think.startswith(f"Q1: {task.items[0].answers[0]}. Q2: {task.items[1].answers[0]}.")
    assert "[" not in turns[-1].think


def test_state_records_results_that_lack_the_answer(small_world, docs):
    task = Task("t", (small_world.questions["test"][0],))
    turns = play(task, docs, max_turns=10, show_gold=False)
    assert turns[-1].think.endswith("(unconfirmed).")  # the search did not show the answer
    # Privileged: it still answers correctly once every hop has been searched.
    assert score_answer_text(turns[-1].content, task.golds).em_sum == 1


def test_short_budget_answers_on_the_last_turn(small_world, docs):
    task = compose(small_world.questions["test"], Composition(n=4, seed=1))[0]
    turns = play(task, docs, max_turns=3)
    assert [t.type for t in turns] == [ActionType.SEARCH, ActionType.SEARCH, ActionType.ANSWER]
    answers = split_answers(turns[-1].content)
    assert len(answers) == 4 and answers[-1] == UNKNOWN  # Q4 was never reached
    assert turns[-1].think.startswith("Q1: ") and turns[-1].think.endswith("pending.")  # Q4 never reached


def test_items_without_hops_search_the_question_then_answer():
    items = (QAItem("a", "who wrote hamlet", ("Shakespeare",)), QAItem("b", "capital of france?", ("Paris", "paris")))
    task = Task("real", items)
    turns = play(task, {}, max_turns=oracle_turns_needed(task))
    assert [t.content for t in turns] == ["who wrote hamlet", "capital of france?", "Shakespeare; Paris"]
    assert oracle_turns_needed(task) == 3


def test_answers_never_break_the_separator():
    task = Task("real", (QAItem("a", "who sang it?", ("Simon; Garfunkel",)), QAItem("b", "q2?", ("x; y", "xy"))))
    answer = play(task, {}, max_turns=oracle_turns_needed(task))[-1]
    assert answer.content == "Simon, Garfunkel; xy"
    assert score_answer_text(answer.content, task.golds).em_sum == 2


def test_turns_needed_counts_hops_plus_the_answer():
    hop = Hop("x", "y", "0")
    task = Task("t", (QAItem("a", "q", ("y",), hops=(hop, hop)), QAItem("b", "q", ("y",), hops=(hop,))))
    assert oracle_turns_needed(task) == 4


def test_oracle_is_deterministic_and_resets(small_world, docs):
    task = compose(small_world.questions["train"], Composition(n=3, seed=5))[0]
    first = [t.content for t in play(task, docs, max_turns=20)]
    assert first == [t.content for t in play(task, docs, max_turns=20)]
    oracle = ScriptedOracle()
    oracle.reset(task)
    oracle.act("", 9)
    oracle.reset(task)  # a new episode starts from scratch
    assert parse_action(oracle.act("", 9)).content == first[0]


def test_act_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="reset"):
        ScriptedOracle().act("obs", 3)


@settings(max_examples=40, deadline=None)
@given(budget=st.integers(min_value=1, max_value=12), n=st.integers(min_value=1, max_value=5), seed=st.integers(0, 50))
def test_any_budget_ends_with_one_answer_per_question(small_world, budget, n, seed):
    task = compose(small_world.questions["validation"], Composition(n=n, seed=seed))[0]
    turns = play(task, {}, max_turns=budget)
    assert turns[-1].type is ActionType.ANSWER and len(turns) == min(budget, oracle_turns_needed(task))
    assert len(split_answers(turns[-1].content)) == n
