"""Text actions as ``Discrete(k)`` with an action mask, for sb3-contrib's MaskablePPO.

An LLM env accepts any string; a discrete learner needs a fixed menu. :class:`DiscreteActions`
asks a :class:`CandidateSet` for ``k`` *slots* after every reset and step: each slot holds the
action text it stands for now, or ``None`` when it is unavailable. Slots keep their meaning
across steps ("the first product on the page", "search the instruction's keywords"), which is
what lets a policy learn which slot to pick. ``action_masks()`` (the method MaskablePPO calls)
marks the filled slots.

A masked slot that is taken anyway (``action_space.sample()``, SB3's ``check_env``, plain PPO)
is not an error: it is sent to the env as the empty action, which the env answers as an invalid
action (``info["valid_action"] = False``), as it would any bad agent input. ``info["action_text"]``
says what was sent.

The candidate sets for each family live in :mod:`mem1_gym.wrappers.candidates`.
"""

from __future__ import annotations

import abc
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CandidateSet(abc.ABC):
    """A fixed number of action slots, refilled from each observation."""

    @property
    @abc.abstractmethod
    def slot_names(self) -> list[str]:
        """One stable name per slot ("search:keywords", "product:1", ...): for logs and plots."""

    @abc.abstractmethod
    def reset(self, obs: str, info: dict[str, Any]) -> list[str | None]:
        """Forget the last episode; the slots for the first observation."""

    @abc.abstractmethod
    def update(self, action: str, obs: str, info: dict[str, Any]) -> list[str | None]:
        """The slots after ``action`` was taken and ``obs`` came back."""


class DiscreteActions(gym.Wrapper):
    """``Discrete(k)`` actions over the slots of a :class:`CandidateSet`, with ``action_masks()``.

    ``candidates=None`` picks the family's default set (:func:`default_candidates`).
    """

    def __init__(self, env: gym.Env, candidates: CandidateSet | None = None) -> None:
        super().__init__(env)
        self.candidates = candidates if candidates is not None else default_candidates(env)
        self.action_space = spaces.Discrete(len(self.candidates.slot_names))
        self._slots: list[str | None] = [None] * self.action_space.n

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._slots = self._checked(self.candidates.reset(obs, info))
        return obs, info

    def step(self, action):
        text = self.action_text(int(action))
        obs, reward, terminated, truncated, info = self.env.step(text)
        self._slots = self._checked(self.candidates.update(text, obs, info))
        return obs, reward, terminated, truncated, {**info, "action_text": text, "action_masked": not text}

    def action_text(self, action: int) -> str:
        """The text slot ``action`` stands for now ("" when it is masked)."""
        return self._slots[action] or ""

    def action_masks(self) -> np.ndarray:
        """True for every slot that holds an action now: the mask MaskablePPO reads."""
        mask = np.array([slot is not None for slot in self._slots], dtype=bool)
        # An episode that ended leaves no slot; MaskablePPO needs at least one legal action and SB3
        # resets before acting again, so the whole menu is offered rather than none.
        return mask if mask.any() else np.ones_like(mask)

    def _checked(self, slots: list[str | None]) -> list[str | None]:
        if len(slots) != self.action_space.n:
            raise ValueError(
                f"{type(self.candidates).__name__} returned {len(slots)} slots but declares "
                f"{self.action_space.n}; return exactly one entry (text or None) per slot name"
            )
        return slots


def default_candidates(env: gym.Env) -> CandidateSet:
    """The candidate set of ``env``'s family: WebShop (text or browser), MultiHopQA or WebQA."""
    from mem1_gym.wrappers.candidates import QACandidates, WebShopCandidates

    base = env.unwrapped
    family = type(base).__module__
    if family.startswith("mem1_gym.webshop"):
        return WebShopCandidates()
    if family in ("mem1_gym.envs.multihop_qa", "mem1_gym.envs.web_qa"):
        return QACandidates(n_questions=base.config.n_questions)
    raise TypeError(
        f"no default candidate set for {type(base).__name__}; pass candidates= a CandidateSet "
        "that lists the actions of this env"
    )
