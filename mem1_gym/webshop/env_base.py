"""What the two WebShop envs share: the config, the MEM1 protocol handling, turns and rewards.

The envs differ only in their *frontend*, the thing that shows pages and performs actions: the text
env calls the site's router in process, the browser env drives Chromium against the Flask server.
Everything an agent sees is computed here from what the frontend reports (page text, raw
clickables, search bar, reward), so identical frontends reports give identical observations.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
import os
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium.error import ResetNeeded

from mem1_gym import protocol
from mem1_gym.core import UnicodeText
from mem1_gym.protocol import ShopActionType
from mem1_gym.webshop.goals import SPLITS, Goal
from mem1_gym.webshop.pages import clean_text, label_clickables
from mem1_gym.webshop.shop import Shop, ShopConfig, get_shop

MAX_KEYWORD_CHARS = 200  # typed key by key in the browser (about 1 ms a key): longer queries are cut
_ACTION_NAMES = {ShopActionType.SEARCH: "search", ShopActionType.CLICK: "click", ShopActionType.INVALID: "invalid"}
_SESSION_IDS = itertools.count()


@dataclass(frozen=True)
class WebShopConfig:
    """Everything that defines a WebShop env (all ``gym.make`` kwargs; shop fields are flattened in)."""

    split: str = "train"
    """Which goals: "train", "validation" or "test" (disjoint)."""
    max_turns: int = 15
    """Turn budget; the episode is truncated after this many actions without a purchase."""
    search_from_any_page: bool = False
    """Allow search[...] on every page (it goes to the search page first). The original text env
    allowed it, its site and the paper only on the search page, which is the default here."""
    invalid_action_penalty: float = 0.0
    """Subtracted on an unparsable or unavailable action (0: the page simply does not change)."""
    reward_scale: float = 1.0
    """Multiplies the purchase reward (the original baselines used 10)."""
    shop: ShopConfig = field(default_factory=ShopConfig)
    """Catalogue, goals and search (given as flat kwargs: ``products_path=``, ``search_backend=``, ...)."""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {self.max_turns}")
        if self.invalid_action_penalty < 0:
            raise ValueError(f"invalid_action_penalty is subtracted, so it must be >= 0, got {self.invalid_action_penalty}")


def split_kwargs(kwargs: dict[str, Any], *extra: type) -> tuple[WebShopConfig, list[Any]]:
    """Build the env config (and any ``extra`` config dataclasses) from flat ``gym.make`` kwargs."""
    groups: list[tuple[type, dict]] = [(ShopConfig, {}), *((cls, {}) for cls in extra), (WebShopConfig, {})]
    names = {cls: {f.name for f in dataclasses.fields(cls)} for cls, _ in groups}
    for key, value in kwargs.items():
        owner = next((bucket for cls, bucket in groups if key in names[cls] and key != "shop"), None)
        if owner is None:
            valid = sorted(n for cls, _ in groups for n in names[cls] if n != "shop")
            raise TypeError(f"unknown WebShop option {key!r}; valid options: {', '.join(valid)}")
        owner[key] = value
    shop_config = ShopConfig(**groups[0][1])
    return WebShopConfig(shop=shop_config, **groups[-1][1]), [cls(**bucket) for cls, bucket in groups[1:-1]]


def normalize_keywords(text: str) -> str:
    """What a search types: lower case, one space between words, at most 200 characters, and no
    characters a browser cannot type (outside the BMP, or Selenium's private-use key codes)."""
    typable = "".join(ch for ch in text if ord(ch) <= 0xFFFF and not 0xE000 <= ord(ch) <= 0xF8FF)
    return clean_text(clean_text(typable).lower()[:MAX_KEYWORD_CHARS])


@dataclass(frozen=True)
class PageView:
    """What a frontend reports after loading a page."""

    name: str  # the page kind: search, results, item, description, ..., done
    url: str
    text: str  # visible text nodes joined by " [SEP] "
    raw_clickables: tuple[tuple[str, str, str], ...]  # (kind, text, group) in page order
    has_search: bool
    reward_info: dict | None = None  # on the done page


class FrontendFault(RuntimeError):
    """The frontend (browser) died or hung; the episode cannot go on until the next reset."""


class Frontend(abc.ABC):
    """Shows pages of one session and performs actions on them."""

    @abc.abstractmethod
    def start(self, sid: str, goal: Goal) -> PageView: ...

    @abc.abstractmethod
    def search(self, keywords: str) -> PageView: ...

    @abc.abstractmethod
    def click(self, label: str) -> PageView: ...

    @abc.abstractmethod
    def close(self) -> None: ...


class WebShopEnvBase(gym.Env[str, str]):
    """Shared logic of ``MEM1-WebShop`` and ``MEM1-WebShop-Text`` (see their docstrings).

    ``self.protocol`` (:data:`~mem1_gym.protocol.WEBSHOP_PROTOCOL` bound to the split's goal ids) is
    what an agent reads to drive the env; ``reset(options={"task_index": i})`` plays goal ``i``."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}  # fps only silences check_env: text is not animated

    def __init__(self, config: WebShopConfig, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.config = config
        self.render_mode = render_mode
        self.observation_space = UnicodeText()
        self.action_space = UnicodeText()
        self.max_turns = config.max_turns
        self.shop: Shop = get_shop(config.shop)
        self.goals = self.shop.goals[config.split]
        self.protocol = protocol.WEBSHOP_PROTOCOL.with_tasks([goal.id for goal in self.goals])
        self._sid = f"env{os.getpid()}x{next(_SESSION_IDS)}"
        self._goal: Goal | None = None
        self._goal_index = -1
        self._view: PageView | None = None
        self._kinds: dict[str, str] = {}  # available click label -> "button" | "product" | "option"
        self._turn = 0
        self._done = True
        self._last_obs = ""
        self._closed = False

    @abc.abstractmethod
    def _frontend(self) -> Frontend:
        """The frontend to use now (the browser env restarts a dead browser here)."""

    # ------------------------------------------------------------------ Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        options = options or {}
        index = options.get("goal_index", options.get("task_index"))
        if index is None:
            index = int(self.np_random.integers(len(self.goals)))
        elif not 0 <= int(index) < len(self.goals):
            raise ValueError(f"goal_index must be in [0, {len(self.goals)}) for split {self.config.split!r}, got {index}")
        self._goal_index, self._goal = int(index), self.goals[int(index)]
        self._turn, self._done = 0, False
        self._set_view(self._frontend().start(self._sid, self._goal))
        state = self._state("")
        self._last_obs = protocol.webshop_prompt(self._goal.instruction, self.max_turns) + state
        info = self._info(None, valid=True, error="")
        info["injected"] = self._last_obs
        return self._last_obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._goal is None or self._done:
            raise ResetNeeded("call reset() before step(), and again after an episode ends")
        self._turn += 1
        parsed = protocol.parse_shop_action(action)
        message, error, fault = self._act(parsed)
        valid = parsed.valid and not error
        info = self._info(parsed, valid=valid, error=error or parsed.error)
        reward, terminated = 0.0 - (0.0 if valid else self.config.invalid_action_penalty), False
        if self._view.name == "done" and self._view.reward_info is not None and not fault:
            terminated = True
            reward = self.config.reward_scale * self._view.reward_info["reward"]
            info.update(self._view.reward_info, success=self._view.reward_info["reward"] == 1.0)
        # An expired session (the site dropped it: SiteLimits) leads nowhere; reset() opens a new one
        truncated = not terminated and (self._turn >= self.max_turns or fault or self._view.name == "expired")
        if truncated:
            info["success"] = False
        info["browser_error"] = fault
        obs = self._state(message)
        self._done = terminated or truncated
        self._last_obs = obs
        info["injected"] = obs
        return obs, float(reward), terminated, truncated, info

    def render(self) -> str | None:
        return self._last_obs if self.render_mode == "ansi" else None

    # ------------------------------------------------------------------ helpers

    @property
    def goal(self) -> Goal | None:
        """The current goal (target ASIN, options, price cap): for oracles and evaluation, not agents."""
        return self._goal

    @property
    def available_actions(self) -> list[str]:
        search = [protocol.SEARCH_PLACEHOLDER] if self._search_available() else []
        return search + [f"click[{label}]" for label in self._kinds]

    def _search_available(self) -> bool:
        return self._view is not None and self._view.name != "done" and (
            self._view.has_search or self.config.search_from_any_page
        )

    def _set_view(self, view: PageView) -> None:
        self._view = view
        labels = label_clickables(view.raw_clickables)
        self._kinds = {label: kind for label, (kind, _, _) in zip(labels, view.raw_clickables) if label is not None}

    def _act(self, parsed: protocol.ShopAction) -> tuple[str, str, bool]:
        """Perform the action: (message for the state, error, frontend fault)."""
        if not parsed.valid:
            return f"{protocol.WEBSHOP_INVALID_ACTION_MESSAGE} ({parsed.error})", "", False
        try:
            if parsed.type is ShopActionType.SEARCH:
                keywords = normalize_keywords(parsed.argument)
                if not self._search_available():
                    why = "this page has no search bar; click[back to search] first"
                    return protocol.unavailable_action_message(parsed.text, why), "no search bar on this page", False
                if not keywords:
                    return protocol.unavailable_action_message(parsed.text, "no keywords left"), "empty search", False
                self._set_view(self._frontend().search(keywords))
                return "", "", False
            label = clean_text(parsed.argument).lower()
            if label not in self._kinds:
                why = "no such button, product or option on this page"
                return protocol.unavailable_action_message(parsed.text, why), f"click[{label}] is not available", False
            option = self._kinds[label] == "option"
            self._set_view(self._frontend().click(label))
            return (f"You have clicked {label}." if option else ""), "", False
        except FrontendFault as err:
            self._set_view(dataclasses.replace(self._view, text="", raw_clickables=(), has_search=False))
            return f"The browser failed: {err}. The episode ends; reset() restarts the browser.", str(err), True

    def _state(self, message: str) -> str:
        hint = protocol.turns_left_hint(self.max_turns - self._turn)
        actions = protocol.render_available_actions(self._search_available(), list(self._kinds))
        return protocol.state_block(hint, self._view.text, actions, message)

    def _info(self, parsed: protocol.ShopAction | None, *, valid: bool, error: str) -> dict:
        return {
            "turn": self._turn,
            "turns_left": self.max_turns - self._turn,
            "max_turns": self.max_turns,
            "goal_id": self._goal.id,
            "goal_index": self._goal_index,
            "split": self.config.split,
            "action_type": _ACTION_NAMES[parsed.type] if parsed else "",
            "action": parsed.text if parsed else "",
            "valid_action": valid,
            "error": error,
            "page": self._view.name,
            "url": self._view.url,
            "available_actions": self.available_actions,
            "has_think": bool(parsed and parsed.think is not None),
            "has_summary": bool(parsed and parsed.summary is not None),
            "consumed_chars": parsed.end if parsed else 0,
            "browser_error": False,
        }
