"""The paper_ metrics: what MEM1's released eval.py computes, pinned rule by rule on hand-made records
(issue 23, item 3). Expected values are worked out by hand from reference/mem1.md §6.2; tokens are
counted as characters (``len``) so every count can be checked by eye."""

from __future__ import annotations

import json

import pytest
from mem1_agent.mem1_eval import normalize, paper_metrics, paper_score, rollout_match
from mem1_agent.metrics import summarize, trajectory_metrics
from mem1_agent.records import FinishReason, Segment, SegmentKind, SegmentRef, Trajectory, Turn
from mem1_agent.report import markdown_table

from mem1_gym.protocol import normalize_answer
from mem1_gym.scoring import score_answer_text


def seg(kind, index, text):
    return Segment(kind, index, tuple(range(len(text))), text)


def turn(index, state, action, observation, action_type):
    return Turn(
        index=index, context=(SegmentRef(SegmentKind.PROMPT, 0),), context_tokens=0, prompt_tokens=0,
        turns_left=6 - index, state=seg(SegmentKind.STATE, index, state), action=seg(SegmentKind.ACTION, index, action),
        observation=seg(SegmentKind.OBSERVATION, index, observation), logprobs=None, ids_as_sampled=False,
        finish=FinishReason.SCRIPTED, reward=0.0, terminated=action_type == "answer", truncated=False,
        valid_action=True, action_type=action_type, gen_seconds=0.0, env_seconds=0.0,
    )


def trajectory(turns, context="mem1", em=(1.0,)):
    return Trajectory(env_id="E", task_id="t", task_index=0, seed=0, policy="p", context_strategy=context,
                      tokenizer="chars", prompt=seg(SegmentKind.PROMPT, 0, "THE PROMPT IS NEVER COUNTED"),
                      turns=turns, em=em, f1=em, answered=True)


# Three turns, lengths in characters:
#   t0 = "<think>ab</think>" 17, r0 = t0 + "<search>q</search>" = 35, i0 = "OBS" 3
#   t1 = "<think>c</think>" 16,  r1 = t1 + "<search>q</search>" = 34, i1 = "OBSERV" 6
#   t2 = "<think>d</think>" 16,  r2 = t2 + "<answer>x</answer>" = 34, i2 = "" (answered)
THREE_TURNS = [
    turn(0, "<think>ab</think>", "<search>q</search>", "OBS", "search"),
    turn(1, "<think>c</think>", "<search>q</search>", "OBSERV", "search"),
    turn(2, "<think>d</think>", "<answer>x</answer>", "", "answer"),
]


def score(answer_text, golds):
    """(paper EM, paper F1, our EM count, our F1 sum) of one answer block."""
    solution = f"<think>s</think><answer>{answer_text}</answer>"
    ours = score_answer_text(answer_text, golds)
    return paper_score(solution, golds, "em"), paper_score(solution, golds, "f1"), ours.em_sum, ours.f1_sum


def test_normalisation_keeps_articles_and_turns_punctuation_into_spaces():
    assert normalize("  The U.S.-born  Actor! ") == "the u s born actor"
    assert normalize_answer("  The U.S.-born  Actor! ") == "usborn actor"  # ours: deleted, articles dropped
    assert score("The Beatles", [["Beatles"]])[::2] == (0.0, 1.0)  # article kept: no match for the paper
    assert score("U.S.", [["US"]])[::2] == (0.0, 1.0)  # "u s" != "us"
    assert score("Jay-Z", [["jay z"]])[::2] == (1.0, 0.0)  # "jay z" == "jay z"; ours "jayz" != "jay z"


def test_f1_is_over_token_sets():
    # sets {new, york} vs {new, york, city}: P = 1, R = 2/3, F1 = 0.8; as multisets (ours) P = 2/4, R = 2/3, F1 = 4/7
    _, paper_f1, _, our_f1 = score("New York New York", [["New York City"]])
    assert paper_f1 == pytest.approx(0.8) and our_f1 == pytest.approx(4 / 7)
    assert score("Paris", [["London", "Paris France"]])[1] == pytest.approx(2 / 3)  # best alias: P = 1, R = 1/2


def test_answer_count_mismatch_scores_zero():
    golds = [["Paris"], ["Rome"]]
    assert score("Paris", golds) == (0.0, 0.0, 1.0, 1.0)  # ours: the missing second answer alone scores 0
    assert score("Paris; Rome; Oslo", golds)[:3] == (0.0, 0.0, 2.0)  # ours: the extra answer is ignored
    assert score("Paris; Rome", golds)[:2] == (2.0, 2.0)


def test_last_answer_block_with_balanced_tags():
    golds = [["x"]]
    assert paper_score("<answer>y</answer> then <answer>X.</answer>", golds, "em") == 1.0  # the last block counts
    assert paper_score("<answer>x</answer> and a stray <answer>", golds, "em") == 0.0  # unbalanced tags: 0
    assert paper_score("no answer at all", golds, "em") == 0.0


def test_rollout_match_is_the_substring_test_against_the_first_alias():
    assert rollout_match("Paris, France", [["Paris"]]) == 1  # the gold inside the answer
    assert rollout_match("", [["Paris"]]) == 1  # an empty answer is inside every gold
    assert rollout_match("x; Roma", [["x"], ["Rome", "Roma"]]) == 1  # only the first alias is tried
    assert rollout_match("Paris", [["Paris"], ["Rome"]]) == 0  # fewer answers than questions: 0 in all
    assert rollout_match(None, [["Paris"]]) == 0  # no answer reads as "None"


def test_peak_counts_the_internal_state_twice_and_never_the_prompt():
    m = paper_metrics(trajectory(THREE_TURNS), [["x"]], len)
    # windows t_{k-1} r_{k-1} i_{k-1} t_k r_k: 0+17+35 = 52; 55+16+34 = 105; 56+16+34 = 106; then t2 r2 i2 = 50
    assert m.peak_tokens == 106  # with the think once (r2 holds it) it would be 106 - 16 = 90
    assert m.em == m.f1 == 1.0 and m.rollout_match == 1
    full = paper_metrics(trajectory(THREE_TURNS, context="full"), [["x"]], len)
    assert full.peak_tokens == 17 + 35 + 3 + 16 + 34 + 6 + 16 + 34 == 161  # the whole t r i transcript


def test_dependency_by_hand():
    # each of t_k, r_k adds (c + l // 2) * l, c = context read before it (the prompt never counts)
    pruned = (0 + 8) * 17 + (17 + 17) * 35 + (55 + 8) * 16 + (71 + 17) * 34 + (56 + 8) * 16 + (72 + 17) * 34
    full = (0 + 8) * 17 + (17 + 17) * 35 + (55 + 8) * 16 + (71 + 17) * 34 + (111 + 8) * 16 + (127 + 17) * 34
    assert paper_metrics(trajectory(THREE_TURNS), [["x"]], len).dependency == pruned == 9376
    assert paper_metrics(trajectory(THREE_TURNS, context="full"), [["x"]], len).dependency == full == 12126


def test_a_failed_rollout_match_leaves_the_peak_out_of_the_mean():
    wrong = THREE_TURNS[:2] + [turn(2, "<think>d</think>", "<answer>y</answer>", "", "answer")]
    right_m, wrong_m = (paper_metrics(trajectory(t), [["x"]], len) for t in (THREE_TURNS, wrong))
    assert wrong_m.rollout_match == 0 and wrong_m.peak_tokens is None and wrong_m.dependency == 9376
    s = summarize([trajectory_metrics(trajectory(THREE_TURNS)), trajectory_metrics(trajectory(wrong, em=(0.0,)))],
                  [right_m, wrong_m])
    assert s.paper_em_sum == 0.5 and s.paper_peak_tokens == 106 and s.paper_peak_kept == 1
    assert s.paper_dependency == 9376 and s.em_sum == 0.5
    table = markdown_table([s])
    assert "| paper EM | paper F1 | paper peak (kept) | paper dependency |" in table and "| 106 (1/2) |" in table


def test_at_most_ten_turns_are_read():
    searches = [turn(k, "<think>s</think>", "<search>q</search>", "OBS", "search") for k in range(10)]
    late = trajectory(searches + [turn(10, "<think>s</think>", "<answer>x</answer>", "", "answer")], em=(1.0,))
    m = paper_metrics(late, [["x"]], len)
    assert m.em == 0.0 and m.f1 == 0.0  # the answer came at turn 11: never read (the env scored it 1)
    # every turn reads 16 + 34 + 3 before its own 16 + 34 (turn 0: nothing before); turn 10 adds nothing
    assert m.peak_tokens == 53 + 50
    per_turn = [(c + 8) * 16 + (c + 16 + 17) * 34 for c in [0] + [53] * 9]
    assert m.dependency == sum(per_turn)


def test_eval_reports_paper_values_next_to_ours(tmp_path):
    from mem1_agent.eval import EvalConfig, run_eval
    from mem1_agent.policies import make_policy
    from mem1_agent.report import summaries_of, write_reports

    policy = make_policy("oracle")
    config = EvalConfig(env_id="MEM1-MultiHopQA-2", episodes=2, split="validation", out=tmp_path)
    cells = run_eval(config, policy, progress=False)
    paths = write_reports(cells, config, policy.name, policy.codec.name)
    result = json.loads(paths["json"].read_text())["results"][0]
    assert result["em_sum"] == 2.0 and result["paper_em_sum"] == 2.0  # the oracle writes the gold alias
    assert result["paper_peak_kept"] == 2 and result["paper_peak_tokens"] > 0 and result["paper_dependency"] > 0
    assert "paper EM" in paths["markdown"].read_text()
    assert len(cells[0].paper_metrics()) == 2 == summaries_of(cells)[0].n
