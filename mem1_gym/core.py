"""Pieces shared by every mem1-gym environment: a text space that accepts any Unicode string."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

# Characters ``sample()`` draws from: printable ASCII plus a few non-ASCII letters and symbols, so
# fuzzing through ``action_space.sample()`` exercises Unicode handling too.
_SAMPLE_CHARSET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " .,;:!?'\"()[]{}<>/\\-_=+*&^%$#@~`|\n\tÀéöüßñçØ—–“”€中文Ж\u00a0"
)

MAX_TEXT_LENGTH = 1 << 24  # 16 M characters: no real observation or model turn comes close


class UnicodeText(spaces.Text):
    """A :class:`gymnasium.spaces.Text` that contains every Unicode string up to ``max_length``.

    Gymnasium's ``Text`` defaults to an alphanumeric charset, so ``"hello world"`` and ``"Röntgen"``
    are not members and ``check_env`` fails on real text (SETUP-NOTES, Gymnasium 1.4). Membership
    here is only "is a ``str`` of an allowed length". ``sample()`` draws short strings (at most
    ``sample_max_length`` characters) from a mixed ASCII/Unicode charset.
    """

    def __init__(
        self,
        max_length: int = MAX_TEXT_LENGTH,
        *,
        min_length: int = 0,
        sample_max_length: int = 64,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(max_length, min_length=min_length, charset=_SAMPLE_CHARSET, seed=seed)
        self.sample_max_length = min(sample_max_length, max_length)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def sample(self, mask=None, probability=None) -> str:
        if mask is None and probability is None:
            length = int(self.np_random.integers(self.min_length, self.sample_max_length + 1))
            return super().sample(mask=(length, None))
        return super().sample(mask=mask, probability=probability)

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, UnicodeText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )
