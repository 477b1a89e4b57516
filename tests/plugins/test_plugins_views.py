"""Text views for third-party policies: Mem1View and Transcript keep the task in every observation."""

from __future__ import annotations

import doctest
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import mem1_gym  # noqa: F401
from mem1_gym.wrappers import Mem1View, Transcript, as_text_policy, views, wrap_for_sb3

VIEW_IDS = ["MEM1-MultiHopQA-2", "MEM1-WebQA-1", "MEM1-WebShop-Text"]
QA_TURNS = ["<think>a</think><search>founded</search>", "<think>b</think><search>born in</search>",
            "<think>c</think><search>studied at</search>"]


@pytest.mark.parametrize("wrapper", [Mem1View, Transcript])
@pytest.mark.parametrize("env_id", VIEW_IDS)
def test_views_pass_check_env_with_no_warnings(env_id, wrapper):
    env = wrapper(gym.make(env_id))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    # check_env always notes that a wrapped env is not the raw one; nothing else may warn.
    assert [str(w.message) for w in caught if "using the raw environment" not in str(w.message)] == []
    env.close()


def _play(wrapper, env_id="MEM1-MultiHopQA-2"):
    env = wrapper(gym.make(env_id))
    prompt, info = env.reset(seed=0)
    steps = [env.step(turn) for turn in QA_TURNS]
    env.close()
    return prompt, info, steps


def test_mem1_view_is_prompt_previous_turn_and_latest_results():
    prompt, info, steps = _play(Mem1View)
    assert prompt == info["observation_latest"] and "Q2:" in prompt
    for turn, (obs, _, _, _, step_info) in zip(QA_TURNS, steps):
        assert obs == prompt + turn + step_info["observation_latest"]
    last = steps[-1][0]
    assert QA_TURNS[1] not in last and steps[1][4]["observation_latest"] not in last  # bounded: one turn kept


def test_transcript_is_the_whole_history():
    prompt, _, steps = _play(Transcript)
    expected = prompt
    for turn, (obs, _, _, _, info) in zip(QA_TURNS, steps):
        expected += turn + info["observation_latest"]
        assert obs == expected


def test_views_leave_rewards_and_ends_untouched():
    plain = gym.make("MEM1-WebShop-Text")
    wrapped = Mem1View(gym.make("MEM1-WebShop-Text"))
    plain.reset(seed=3)
    wrapped.reset(seed=3)
    for action in ["<answer>search[case]</answer>", "<answer>click[buy now]</answer>", 7]:
        a, b = plain.step(action), wrapped.step(action)
        assert a[1:4] == b[1:4] and a[0] == b[4]["observation_latest"]
    assert b[0].endswith(repr(7) + a[0])  # a non-string action shows as text; the env judged it invalid
    plain.close()
    wrapped.close()


def test_a_vector_env_is_refused_with_the_fix():
    with pytest.raises(TypeError, match="before any vector wrapper"):
        Mem1View(wrap_for_sb3(gym.make("MEM1-WebShop-Text")))


def test_views_doctest():
    assert doctest.testmod(views).failed == 0


def test_as_text_policy_accepts_both_signatures():
    def plain(obs):
        return "plain:" + obs

    def with_info(obs, info):
        return f"info:{obs}:{info['turn']}"

    def tuned(obs, temperature=0.7):  # a default is a setting, not the info slot
        return f"tuned:{obs}:{temperature}"

    info = {"turn": 2}
    assert as_text_policy(plain)("o", info) == "plain:o"
    assert as_text_policy(with_info)("o", info) == "info:o:2"
    assert as_text_policy(tuned)("o", info) == "tuned:o:0.7"
    assert as_text_policy(lambda *args: str(len(args)))("o", info) == "2"
    assert as_text_policy(str.upper)("o", info) == "O"


def test_quickstart_example_plays_through_mem1_view():
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"
    for policy, expected in (("oracle", "mean EM count 2.00"), ("echo", "mean EM count 0.00")):
        result = subprocess.run([sys.executable, str(example), "--episodes", "1", "--policy", policy],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0 and expected in result.stdout, result.stderr[-2000:]
