"""docs/envs.md stays true: it is what scripts/gen_env_docs.py writes, every documented kwarg is accepted
by gym.make, every info key an episode emits is documented, every documented key is in the env docstring."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import gymnasium as gym
import pytest

import mem1_gym  # noqa: F401
from mem1_gym.oracle import ScriptedOracle
from mem1_gym.webshop.oracle import WebShopOracle
from mem1_gym.wrappers import Mem1View

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gen_env_docs", ROOT / "scripts" / "gen_env_docs.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

FAMILY_IDS = {"MultiHopQA": "MEM1-MultiHopQA-2", "WebQA": "MEM1-WebQA-1", "WebShop-Text": "MEM1-WebShop-Text",
              "WebShop": "MEM1-WebShop"}
FAMILIES = [pytest.param(f, marks=pytest.mark.browser) if f.name == "WebShop" else f for f in gen.FAMILIES]
JUNK = ["", "garbage", "<think>x</think>", "<answer>", "search[]", "click[nowhere]", "<open>http://x</open>"]


def test_docs_envs_md_is_what_the_generator_writes():
    assert (ROOT / "docs" / "envs.md").read_text(encoding="utf-8") == gen.render(), \
        "docs/envs.md is stale: run python scripts/gen_env_docs.py"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_documented_kwarg_is_accepted(family):
    kwargs = {k.name: k.default for k in gen.kwargs_of(family)}
    assert kwargs and all(k.doc for k in gen.kwargs_of(family))  # each field has its docstring
    env = gym.make(FAMILY_IDS[family.name], **kwargs)
    env.close()


def test_an_undocumented_kwarg_is_rejected():  # so the test above would catch a documented one that is not taken
    for env_id in ("MEM1-MultiHopQA-1", "MEM1-WebShop-Text"):
        with pytest.raises(TypeError):
            gym.make(env_id, not_a_documented_kwarg=1)


def _episode_keys(env, act, seed: int) -> set[str]:
    obs, info = env.reset(seed=seed)
    keys, done, turn = set(info), False, 0
    while not done:
        obs, _, terminated, truncated, info = env.step(act(obs, info, turn))
        keys |= set(info)
        done, turn = terminated or truncated, turn + 1
    return keys


def _qa_oracle(env):
    oracle = ScriptedOracle()

    def act(obs, info, turn):
        if turn == 0:
            oracle.reset(env.unwrapped.task)
        return oracle.act(obs, info["turns_left"])

    return act


def _shop_oracle(env):
    oracle = WebShopOracle()

    def act(obs, info, turn):
        if turn == 0:
            oracle.reset(env.unwrapped.goal)
        return oracle.act(info)

    return act


def _junk(obs, info, turn):
    return JUNK[turn % len(JUNK)] if info["turns_left"] > 1 else "<answer>x</answer>"


@pytest.mark.parametrize(("family", "env_id", "scripted"), [
    ("MultiHopQA", "MEM1-MultiHopQA-2", _qa_oracle),
    ("WebQA", "MEM1-WebQA-1", None),
    ("WebShop", "MEM1-WebShop-Text", _shop_oracle),
])
def test_every_emitted_info_key_is_documented(family, env_id, scripted):
    env = gym.make(env_id, max_turns=len(JUNK) + 1)
    keys = _episode_keys(env, _junk, seed=0)
    if scripted is not None:
        keys |= _episode_keys(env, scripted(env), seed=1)
    else:  # WebQA: a search, then an answer
        keys |= _episode_keys(env, lambda o, i, t: "<search>founded</search>" if t == 0 else "<answer>x</answer>", 1)
    env.close()
    assert keys - set(gen.INFO[family]) == set(), "undocumented info keys: add them to INFO in scripts/gen_env_docs.py"
    assert set(gen.INFO[family]) - keys == set()  # these episodes reach every documented key (and a purchase)
    view = Mem1View(gym.make(env_id))
    _, info = view.reset(seed=0)
    assert set(info) - set(gen.INFO[family]) <= set(gen.WRAPPER_INFO)
    view.close()


@pytest.mark.parametrize("family", gen.FAMILIES[:3], ids=lambda f: f.name)
def test_documented_info_keys_are_the_ones_the_env_docstring_names(family):
    doc = gen.load(family.env_class).__doc__
    section = doc.split("## Information", 1)[1].split("## ", 1)[0]
    named = set(re.findall(r"``([a-z0-9_]+)``", section))
    assert named == set(gen.INFO[family.info])
