"""Wrappers for policies that are not mem1-agent's.

Text policies (a ``callable(str) -> str``): :class:`Mem1View` (task prompt + previous turn +
latest observation) and :class:`Transcript` (the whole history) turn the env's latest observation
into the full text to read; see :mod:`mem1_gym.wrappers.views`.

Vector-input learners (Stable-Baselines3, sb3-contrib's MaskablePPO) play the text envs through :class:`TextObservation` (text -> fixed-size vector) and :class:`DiscreteActions`
(the family's action menu -> ``Discrete(k)`` with ``action_masks()``, which MaskablePPO finds
through ``get_wrapper_attr``: Gymnasium 1.x wrappers no longer forward attributes).

>>> import gymnasium as gym, mem1_gym
>>> from mem1_gym.wrappers import wrap_for_sb3
>>> env = wrap_for_sb3(gym.make("MEM1-WebShop-Text"))
>>> obs, info = env.reset(seed=0)
>>> obs.shape, env.action_space, env.get_wrapper_attr("action_masks")()[:3].tolist()
((2048,), Discrete(29), [True, True, True])
>>> env.close()
"""

from __future__ import annotations

import gymnasium as gym

from mem1_gym.wrappers.actions import CandidateSet, DiscreteActions, default_candidates
from mem1_gym.wrappers.observations import HashingEncoder, TextObservation, TextObservationConfig
from mem1_gym.wrappers.views import Mem1View, Transcript, as_text_policy

__all__ = [
    "CandidateSet",
    "DiscreteActions",
    "HashingEncoder",
    "Mem1View",
    "TextObservation",
    "TextObservationConfig",
    "Transcript",
    "as_text_policy",
    "default_candidates",
    "make_sb3_env",
    "wrap_for_sb3",
]


def wrap_for_sb3(env: gym.Env, encoder: str = "hash", **observation_options) -> gym.Env:
    """``TextObservation(DiscreteActions(env))``: the action wrapper sits inside because it reads
    the text observation to build its menu."""
    return TextObservation(DiscreteActions(env), TextObservationConfig(encoder=encoder, **observation_options))


def make_sb3_env(env_id: str, encoder: str = "hash", **env_kwargs) -> gym.Env:
    """``gym.make(env_id, **env_kwargs)`` wrapped for SB3 (a picklable factory for ``make_vec_env``)."""
    import mem1_gym  # noqa: F401  (registers the ids in a fresh subprocess worker)

    return wrap_for_sb3(gym.make(env_id, **env_kwargs), encoder=encoder)
