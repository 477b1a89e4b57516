"""Bad agent output is recorded and handled as the protocol says: the episode goes on, never crashes."""

from __future__ import annotations

import gymnasium as gym
from mem1_agent.context import FullContext, Mem1Context
from mem1_agent.policies import SamplingConfig, make_policy
from mem1_agent.records import FinishReason
from mem1_agent.rollout import EpisodeSpec, RolloutConfig, rollout

import mem1_gym  # noqa: F401

ENV = "MEM1-MultiHopQA-2"


def play(policy, strategy=None, config=RolloutConfig(env_id=ENV), max_turns=None):
    kwargs = {} if max_turns is None else {"max_turns": max_turns}
    env = gym.make(ENV, split="validation", **kwargs)
    [traj] = rollout([env], policy, strategy or Mem1Context(), [EpisodeSpec(seed=0, task_index=0)], config)
    env.close()
    return traj


def test_garbage_and_unclosed_tags_are_invalid_turns_until_truncation(script_policy):
    traj = play(script_policy(["lorem ipsum", "<think>plan</think><search>never closed", "<answer>also open"]))
    assert len(traj.turns) == 6 and traj.turns[-1].truncated and not traj.turns[-1].terminated
    assert not any(t.valid_action for t in traj.turns) and {t.action_type for t in traj.turns} == {"invalid"}
    assert not traj.answered and traj.em == (0.0, 0.0)
    assert "no valid action" in traj.turns[0].observation.text
    assert traj.turns[1].state.text == "<think>plan</think>" and traj.turns[1].action.text == "<search>never closed"


def test_a_valid_answer_after_garbage_ends_the_episode(script_policy):
    traj = play(script_policy(["???", "<think>guess</think>\n<answer>unknown; unknown</answer>"]))
    assert [t.valid_action for t in traj.turns] == [False, True]
    assert traj.turns[-1].terminated and traj.answered and traj.turns[-1].observation.text == ""


def test_context_over_budget_is_an_empty_invalid_turn(script_policy):
    policy = script_policy(["<think>x</think><search>anything</search>"])
    prompt_tokens = len(play(policy).prompt.token_ids)
    traj = play(policy, FullContext(), RolloutConfig(env_id=ENV, max_context_tokens=prompt_tokens))
    assert {t.finish for t in traj.turns} == {FinishReason.CONTEXT_OVERFLOW}
    assert all(t.generated_ids == () and not t.valid_action for t in traj.turns)
    assert traj.turns[-1].truncated and len(traj.turns) == 6


def test_mem1_recovers_from_an_overflow_that_full_history_cannot(script_policy):
    # Room for the prompt plus one turn of searching: mem1's context stays that size, full grows out of it.
    search = "<think>x</think><search>Eigix College founded</search>"
    probe = play(script_policy([search]))
    budget = max(t.context_tokens for t in probe.turns) + 40
    config = RolloutConfig(env_id=ENV, max_context_tokens=budget)
    mem1 = play(script_policy([search]), Mem1Context(), config)
    full = play(script_policy([search]), FullContext(), config)
    assert FinishReason.CONTEXT_OVERFLOW not in {t.finish for t in mem1.turns}
    assert FinishReason.CONTEXT_OVERFLOW in {t.finish for t in full.turns}


def test_token_budget_cuts_a_rambling_model(tiny_dir):
    policy = make_policy(f"hf:{tiny_dir}", SamplingConfig(temperature=1.0, seed=1), device="cpu")
    traj = play(policy, config=RolloutConfig(env_id=ENV, max_new_tokens=5), max_turns=3)
    assert len(traj.turns) == 3 and traj.turns[-1].truncated
    for turn in traj.turns:
        assert len(turn.generated_ids) <= 5 and turn.ids_as_sampled and len(turn.logprobs) == len(turn.generated_ids)
        assert turn.finish in (FinishReason.LENGTH, FinishReason.EOS, FinishReason.STOP)
