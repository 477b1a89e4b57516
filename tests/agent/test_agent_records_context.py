"""Records round-trip, and each context strategy reads exactly the segments it promises."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest
from mem1_agent.context import FullContext, Mem1Context, TruncateContext, make_strategy
from mem1_agent.policies.oracle import OraclePolicy
from mem1_agent.records import (
    SegmentKind,
    SegmentRef,
    Trajectory,
    read_jsonl,
    split_generation,
    write_jsonl,
)
from mem1_agent.rollout import EpisodeSpec, RolloutConfig, rollout

import mem1_gym  # noqa: F401
from mem1_gym.protocol import QA_FINAL_TURN_STOP_STRINGS, QA_STOP_STRINGS

S, A, O = SegmentKind.STATE, SegmentKind.ACTION, SegmentKind.OBSERVATION
PROMPT = SegmentRef(SegmentKind.PROMPT, 0)


class RecordingOracle(OraclePolicy):
    """The oracle, keeping every request so the test sees what the policy was given."""

    def __init__(self, codec):
        super().__init__(codec)
        self.requests = []

    def generate(self, requests):
        self.requests += list(requests)
        return super().generate(requests)


def play(codec, strategy, n_envs=2, episodes=3, env_id="MEM1-MultiHopQA-2", **env_kwargs):
    envs = [gym.make(env_id, split="validation", **env_kwargs) for _ in range(n_envs)]
    policy = RecordingOracle(codec)
    specs = [EpisodeSpec(seed=k, task_index=k) for k in range(episodes)]
    trajectories = rollout(envs, policy, strategy, specs, RolloutConfig(env_id=env_id))
    for env in envs:
        env.close()
    return trajectories, policy


def test_mem1_context_is_prompt_plus_last_state_action_observation(codec):
    trajectories, policy = play(codec, Mem1Context())
    assert len(trajectories) == 3 and all(t.done and t.answered for t in trajectories)
    for traj in trajectories:
        assert traj.turns[0].context == (PROMPT,)
        for t, turn in enumerate(traj.turns[1:], start=1):
            assert turn.context == (PROMPT, SegmentRef(S, t - 1), SegmentRef(A, t - 1), SegmentRef(O, t - 1))
            prev = traj.turns[t - 1]
            expected = traj.prompt.token_ids + prev.state.token_ids + prev.action.token_ids + prev.observation.token_ids
            assert tuple(traj.context_ids(t)) == expected
            assert turn.context_tokens == len(expected) and turn.prompt_tokens == len(traj.prompt.token_ids)
            assert prev.state.text.startswith("<think>") and prev.state.text.endswith("</think>")
            assert prev.action.text.lstrip().startswith("<search>")
    # What the policy was handed is exactly what the records say it read.
    by_text = {(r.context_text, r.turns_left) for r in policy.requests}
    for traj in trajectories:
        for t, turn in enumerate(traj.turns):
            text = "".join(seg.text for seg in traj.context_segments(t))
            assert (text, turn.turns_left) in by_text
    ids_seen = {r.context_ids for r in policy.requests}
    assert all(tuple(traj.context_ids(t)) in ids_seen for traj in trajectories for t in range(len(traj.turns)))


def test_full_context_holds_everything_and_truncate_the_last_k(codec):
    (full, *_), _ = play(codec, FullContext(), n_envs=1, episodes=1)
    (trunc, *_), _ = play(codec, TruncateContext(2), n_envs=1, episodes=1)
    last = len(full.turns) - 1
    assert full.turns[last].context == (PROMPT,) + tuple(SegmentRef(k, t) for t in range(last) for k in (S, A, O))
    assert trunc.turns[last].context == (PROMPT,) + tuple(SegmentRef(k, t) for t in (last - 2, last - 1) for k in (S, A, O))
    text = "".join(s.text for s in full.context_segments(last))
    transcript = full.prompt.text + "".join(t.generated_text + t.observation.text for t in full.turns[:last])
    assert text == transcript
    # The oracle plays the same turns whatever it reads, so contexts are the only difference.
    assert [t.generated_ids for t in full.turns] == [t.generated_ids for t in trunc.turns]


def test_stop_strings_force_the_answer_on_the_last_turn(codec):
    # A budget of 3 turns is too short for the oracle: it must answer on the last one.
    (traj,), policy = play(codec, Mem1Context(), n_envs=1, episodes=1, env_id="MEM1-MultiHopQA-4", max_turns=3)
    assert [r.turns_left for r in policy.requests] == [3, 2, 1]
    assert traj.turns[-1].action_type == "answer" and traj.turns[-1].terminated
    for request in policy.requests:
        expected = QA_FINAL_TURN_STOP_STRINGS if request.turns_left <= 1 else QA_STOP_STRINGS
        assert request.stop == expected


def test_records_round_trip_jsonl(codec, tmp_path):
    trajectories, _ = play(codec, make_strategy("full"), n_envs=2, episodes=2)
    path = tmp_path / "records.jsonl"
    write_jsonl(path, trajectories)
    with path.open("a") as fh:  # a run killed mid-write leaves a torn last line: skipped
        fh.write('{"version": 1, "env_id": "MEM1')
    loaded = list(read_jsonl(path))
    assert loaded == trajectories
    assert all(len(t.evidence) == len(t.em) == 2 for t in loaded)  # the env's supporting-passage recall
    older = trajectories[0].to_dict()
    del older["evidence"]  # records written before the field existed still load
    assert Trajectory.from_dict(older).evidence == ()
    assert isinstance(loaded[0].turns[0].context[0].kind, SegmentKind)
    assert loaded[0].context_ids(1) == trajectories[0].context_ids(1)
    bad = dataclasses.replace(trajectories[0], version=0).to_dict()
    with pytest.raises(ValueError, match="version"):
        Trajectory.from_dict(bad)


def test_split_generation_cuts_between_tokens(codec):
    text = "<think>Q1: pending.</think>\n<search>Ada born</search>"
    ids = codec.encode(text)
    cut = split_generation(ids, codec.decode, text.index("</think>") + len("</think>"))
    assert codec.decode(ids[:cut]) == "<think>Q1: pending.</think>"
    assert codec.decode(ids[cut:]) == "\n<search>Ada born</search>"
    assert split_generation(ids, codec.decode, None) == 0
