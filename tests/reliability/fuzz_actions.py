"""Seeded random and adversarial actions for every env family, and the checks each step must pass.

A uniquely named module (not conftest) so that the test modules can import it. One
:class:`ActionFuzzer` draws from six kinds of action: random Unicode (control characters, NUL,
astral characters; never lone surrogates, which no UTF-8 text can hold), ~100 KB strings, soups of
the family's protocol tokens, a fixed list of adversarial turns, non-str values, and moves that are
valid on the current page (so that episodes get past the first turn and end by answering, buying
or running out of turns, not only by truncation after junk).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from typing import Any, Callable

from mem1_gym import protocol

# An observation must never grow with the action: a 100 KB click[...] echoed back would blow up the
# agent's context. The longest these runs produce is 2.7 KB (a WebShop item page; WebQA pages are cut
# at page_chars=2000), so 16 KB leaves room for longer pages and still catches any echo.
MAX_OBS_CHARS = 16_384
LONG_CHARS = 100_000

_CHAR_RANGES = (
    (0x20, 0x7E),  # printable ASCII
    (0x00, 0x1F),  # C0 controls, NUL among them
    (0x7F, 0x9F),  # DEL and C1 controls
    (0xA0, 0xD7FF),  # the BMP below the surrogates
    (0xE000, 0xFFFD),  # the BMP above them (private use, specials)
    (0x10000, 0x10FFFF),  # astral planes: emoji, math letters, unassigned code points
)


def _tags(*names: str) -> list[str]:
    return [fn(name) for name in names for fn in (protocol.open_tag, protocol.close_tag)]


QA_TOKENS = [*_tags(protocol.THINK, protocol.SEARCH, protocol.ANSWER, protocol.INFORMATION),
             "search[", "answer[", "]", "[", ";", " ", "\n", "\x00", "x", "Röntgen", "中", "😀"]
WEB_TOKENS = [*QA_TOKENS, *_tags(protocol.OPEN), "open[", "http://miniweb.test/wiki/", "file:///etc/passwd"]
SHOP_TOKENS = [*_tags(protocol.THINK, protocol.SUMMARY, protocol.ANSWER, protocol.STATE),
               "search[", "click[", "]", "[", " ", "\n", "\x00", "buy now", "back to search", "b0", "中", "😀"]

ADVERSARIAL = [
    "<search>" + "q" * 1000 + "</search>",
    "<search>" + "q " * 600 + "</search>",
    "<answer>a</answer>" * 200,
    "<answer>" + "; ".join(["x"] * 500) + "</answer>",
    "<think><search>a search inside think</search></think>",
    "<think><answer>an answer inside think</answer>",
    "<think>" * 500,
    "<search><search>nested</search></search>",
    "<search><answer>inner</answer></search>",
    "<search>unclosed",
    "</search>closed first<search>",
    "<search></search>", "<search> \t\n </search>", "<answer></answer>",
    "<SEARCH>upper case</SEARCH>", "< search >spaced</ search >",
    "<information>a forged observation</information>",
    "<search>\x00\x01\x02</search>", "<search>𝔘𝔫𝔦𝔠𝔬𝔡𝔢 😀 \u202eevil\u202c</search>",
    "search[]", "answer[]", "open[]", "click[]", "search[[]]", "click[[nested]]",
    "click[no such button]", "click[" + "b0" * 500 + "]", "click[buy now]", "click[< prev]",
    "<answer>search[]</answer>", "<answer>click[no such product]</answer>",
    "<answer>search[" + "é" * 300 + "]</answer>",
    "<think>t</think><summary>" + "s" * 5000 + "</summary><answer>click[next >]</answer>",
    "<open>http://miniweb.test/wiki/0</open>", "<open>file:///etc/passwd</open>",
    "<open>http://169.254.169.254/latest/meta-data/</open>", "<open>" + "h" * 3000 + "</open>",
    "]" * 1000 + "[" * 1000,
]

NON_STR = (None, b"<search>bytes</search>", 7, -1, float("nan"), float("inf"), True,
           ["<search>a list</search>"], {"search": "a dict"}, ("a", "tuple"))


def _char_pool(size: int = 8192) -> str:
    """Characters from the ranges above, each range equally likely, every C0 control among them;
    drawing from a fixed pool is ~5x faster than a range and a code point per character."""
    rng = random.Random(0)
    drawn = (chr(rng.randint(*rng.choice(_CHAR_RANGES))) for _ in range(size))
    return "".join(map(chr, range(0x20))) + "".join(drawn)


_POOL = _char_pool()


def random_text(rng: random.Random, length: int) -> str:
    return "".join(rng.choices(_POOL, k=length))


class ActionFuzzer:
    """Draws the next action; ``valid_moves(rng, env, info)`` lists moves that make sense now."""

    def __init__(self, seed: int, tokens: list[str], valid_moves: Callable[[random.Random, Any, dict], list[str]]):
        self.rng = random.Random(seed)
        self.tokens = tokens
        self.valid_moves = valid_moves
        self.kinds: Counter[str] = Counter()

    def __call__(self, env: Any, info: dict) -> Any:
        rng, roll = self.rng, self.rng.random()
        kind = ("unicode" if roll < 0.22 else "long" if roll < 0.24 else "tokens" if roll < 0.42
                else "adversarial" if roll < 0.62 else "non-str" if roll < 0.72 else "valid")
        self.kinds[kind] += 1
        if kind == "unicode":
            return random_text(rng, rng.randint(0, 300))
        if kind == "long":  # a random kilobyte repeated: drawing 100k characters one by one is slow
            body = random_text(rng, 1000) * (LONG_CHARS // 1000)
            wrapper = rng.choice(["{}", "<search>{}</search>", "<answer>{}</answer>", "click[{}]", "search[{}]"])
            return wrapper.format(body)
        if kind == "tokens":
            return "".join(rng.choices(self.tokens, k=rng.randint(1, 40)))
        if kind == "adversarial":
            return rng.choice(ADVERSARIAL)
        if kind == "non-str":
            return object() if rng.random() < 0.1 else rng.choice(NON_STR)
        return rng.choice(self.valid_moves(rng, env, info))


def qa_moves(rng: random.Random, env: Any, info: dict) -> list[str]:
    """Searches for names in the questions (so that passages come back), the results' pages, and
    now and then an answer."""
    words = re.findall(r"[A-Z][\w'-]+", " ".join(env.unwrapped.task.questions)) or ["river"]
    query = " ".join(rng.sample(words, min(3, len(words))))
    moves = [f"<think>look it up</think><search>{query}</search>", f"search[{query}]"] * 4
    moves += [f"<open>{url}</open>" for url in info.get("result_urls", [])[:2]]
    return moves + ["<think>done</think><answer>" + "; ".join(words[:2]) + "</answer>"]


def shop_moves(rng: random.Random, env: Any, info: dict) -> list[str]:
    """The page's own clickables, and searches where there is a search bar."""
    available = info["available_actions"]
    moves = [a for a in available if a != protocol.SEARCH_PLACEHOLDER]
    if protocol.SEARCH_PLACEHOLDER in available:
        moves += [f"<answer>search[{rng.choice(['tea', 'organic', 'women shoes', 'black'])}]</answer>"] * 2
        moves.append(f"search[{random_text(rng, rng.randint(1, 60))}]")  # typed into the browser's search box
    return moves or ["click[back to search]"]


def check_step(env: Any, action: Any, result: tuple) -> None:
    """What every step must give, whatever the action was."""
    obs, reward, terminated, truncated, info = result
    assert isinstance(obs, str) and env.observation_space.contains(obs), type(obs)
    assert len(obs) <= MAX_OBS_CHARS, f"observation of {len(obs)} characters"
    assert isinstance(info.get("valid_action"), bool), info.get("valid_action")
    assert isinstance(reward, float) and math.isfinite(reward), reward
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    if not isinstance(action, str):
        assert info["valid_action"] is False, "a non-str action was taken as valid"


def describe(action: Any) -> str:
    text = repr(action)
    return text if len(text) <= 200 else f"{text[:200]}... ({len(text)} characters)"


def fuzz(env: Any, fuzzer: ActionFuzzer, n_actions: int, seed: int) -> Counter:
    """Step ``env`` with ``n_actions`` actions of ``fuzzer``, checking every step and resetting every
    finished episode; returns counts of valid and invalid actions and of the episode ends."""
    _, info = env.reset(seed=seed)
    seen: Counter[str] = Counter()
    turns = 0
    for i in range(n_actions):
        action = fuzzer(env, info)
        where = f"seed {seed}, action {i}: {describe(action)}"
        try:
            result = env.step(action)
            check_step(env, action, result)
        except Exception as err:
            raise AssertionError(f"{where}: {type(err).__name__}: {err}") from err
        _, _, terminated, truncated, info = result
        turns += 1
        seen["valid" if info["valid_action"] else "invalid"] += 1
        ends_now = turns == env.unwrapped.max_turns
        assert terminated or truncated or not ends_now, f"{where}: the turn budget ran out without truncation"
        if terminated or truncated:
            seen["terminated" if terminated else "truncated"] += 1
            obs, info = env.reset()
            assert isinstance(obs, str) and obs and info["turns_left"] == env.unwrapped.max_turns, where
            turns = 0
    return seen
