"""Metrics against hand-computed values."""

from __future__ import annotations

import pytest
from mem1_agent.metrics import summarize, trajectory_metrics, turn_dependency
from mem1_agent.records import (
    FinishReason,
    Segment,
    SegmentKind,
    SegmentRef,
    Trajectory,
    Turn,
)

P = SegmentRef(SegmentKind.PROMPT, 0)


def seg(kind, turn, n):
    return Segment(kind, turn, tuple(range(n)), "x" * n)


def turn(index, context_tokens, prompt_tokens, n_state, n_action, valid, *, done=False):
    return Turn(
        index=index, context=(P,), context_tokens=context_tokens, prompt_tokens=prompt_tokens, turns_left=6 - index,
        state=seg(SegmentKind.STATE, index, n_state), action=seg(SegmentKind.ACTION, index, n_action),
        observation=seg(SegmentKind.OBSERVATION, index, 0 if done else 5), logprobs=None, ids_as_sampled=False,
        finish=FinishReason.SCRIPTED, reward=0.0, terminated=done, truncated=False, valid_action=valid,
        action_type="answer" if done else "search", gen_seconds=0.5, env_seconds=0.25,
    )


def trajectory(em, f1, turns, wall=2.0):
    return Trajectory(env_id="E", task_id=f"t{len(turns)}", task_index=0, seed=0, policy="p", context_strategy="mem1",
                      tokenizer="tok", prompt=seg(SegmentKind.PROMPT, 0, 10), turns=turns, em=em, f1=f1,
                      answered=True, wall_seconds=wall)


def test_turn_dependency_is_the_attention_cost():
    # n_p context tokens, n_o generated: sum over generated tokens j of (n_p + j), j = 0..n_o-1,
    # plus the n_o/2 of the half-open count: (2*n_p + n_o) * n_o / 2.
    assert turn_dependency(10, 4) == (2 * 10 + 4) * 4 / 2 == 48
    assert turn_dependency(0, 0) == 0


def test_trajectory_metrics_by_hand():
    # turn 0: prompt only (10 tokens), generates 1 + 3 = 4; turn 1: reads 20 (10 of them prompt),
    # generates 2 + 4 = 6 and answers.
    traj = trajectory((1.0, 0.0), (1.0, 0.5), [turn(0, 10, 10, 1, 3, True), turn(1, 20, 10, 2, 4, False, done=True)])
    m = trajectory_metrics(traj)
    assert m.em_sum == 1.0 and m.f1_sum == 1.5 and m.n_objectives == 2
    assert m.peak_tokens == max(10 + 4, 20 + 6) == 26
    assert m.peak_tokens_no_prompt == max(0 + 4, 10 + 6) == 16
    assert m.dependency == (2 * 10 + 4) * 4 / 2 + (2 * 20 + 6) * 6 / 2 == 48 + 138
    assert m.dependency_no_prompt == (0 + 4) * 4 / 2 + (2 * 10 + 6) * 6 / 2 == 8 + 78
    assert m.turns == 2 and m.valid_action_rate == 0.5
    assert m.gen_seconds == 1.0 and m.env_seconds == 0.5 and m.wall_seconds == 2.0
    assert m.context_tokens == (10, 20)


def test_summary_averages_every_trajectory_including_failures():
    good = trajectory((1.0, 1.0), (1.0, 1.0), [turn(0, 10, 10, 1, 3, True, done=True)], wall=1.0)
    bad = trajectory((0.0, 0.0), (0.0, 0.5), [turn(0, 10, 10, 1, 3, False), turn(1, 30, 10, 0, 8, False)], wall=3.0)
    s = summarize([trajectory_metrics(good), trajectory_metrics(bad)])
    assert s.n == 2
    assert s.em_sum == 1.0 and s.f1_sum == pytest.approx(1.25)
    assert s.em_mean == 0.5 and s.f1_mean == pytest.approx(0.625)
    assert s.em_per_objective == (0.5, 0.5) and s.f1_per_objective == (0.5, 0.75)
    assert s.peak_tokens == (14 + 38) / 2 and s.peak_tokens_max == 38
    assert s.peak_tokens_no_prompt == (4 + 28) / 2
    assert s.dependency == (48 + (48 + (60 + 8) * 8 / 2)) / 2
    assert s.valid_action_rate == pytest.approx(1 / 3)  # pooled over the 3 turns
    assert s.turns == 1.5 and s.wall_seconds == 2.0
    assert s.evidence is None and s.evidence_text == "n/a"  # the records carry no evidence
    with pytest.raises(ValueError, match="at least one episode"):
        summarize([])


def test_evidence_recall_averages_questions_then_the_trajectories_that_report_it():
    a = trajectory((0.0, 0.0), (0.0, 0.0), [turn(0, 10, 10, 1, 3, True, done=True)])
    b = trajectory((1.0, 0.0), (1.0, 0.0), [turn(0, 10, 10, 1, 3, True, done=True)])
    c = trajectory((0.0, 0.0), (0.0, 0.0), [turn(0, 10, 10, 1, 3, True, done=True)])
    a.evidence, b.evidence = (0.5, 0.0), (1.0, 1.0)  # c: an env that does not report evidence
    s = summarize([trajectory_metrics(t) for t in (a, b, c)])
    assert s.evidence == pytest.approx((0.25 + 1.0) / 2) and s.evidence_text == "62.5%"
