"""``MEM1-MultiHopQA-N`` as a vector env whose searches go to the retriever in one batch per step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from mem1_gym.envs.multihop_qa import MultiHopQAEnv, PendingStep, search_all


class MultiHopQAVectorEnv(VectorEnv):
    """``num_envs`` :class:`~mem1_gym.envs.multihop_qa.MultiHopQAEnv` stepped together, their searches batched.

    ## Description
    What ``SyncVectorEnv`` of ``MEM1-MultiHopQA-N`` envs returns, step for step, but each step sends
    the queries of every searching env in ONE ``Retriever.search(queries, k)`` call instead of one
    call per env (issue 7, requirement 5). The envs share one retriever: one HTTP client, or the
    process's in-process index. Batching pays where a call has a fixed cost, i.e. over HTTP (one
    round trip per step instead of ``num_envs``); in process it saves little, since bm25s scores
    each query on its own (``benchmarks/bench_vector.py``). Built by
    ``gym.make_vec("MEM1-MultiHopQA-4", num_envs=8)`` (the registered ``vector_entry_point``).

    ## Action Space
    ``batch_space`` of the single env's :class:`~mem1_gym.core.UnicodeText`: a ``Tuple`` of
    ``num_envs`` texts; pass any sequence of ``num_envs`` strings.

    ## Observation Space
    ``batch_space`` of the single env's text space; observations are a tuple of ``num_envs``
    strings, as ``SyncVectorEnv`` returns for ``Text`` spaces.

    ## Rewards
    Those of the single env, as a ``float64`` array of shape ``(num_envs,)``.

    ## Starting State
    ``reset(seed=s)`` resets env ``i`` with seed ``s + i``; a list gives one seed per env; ``options``
    go to every env (``options["reset_mask"]``, a bool array, resets only the marked envs), as in
    ``SyncVectorEnv``.

    ## Episode End
    Per env, as the single env (Termination: an answer; Truncation: the turn budget).
    Autoreset: ``AutoresetMode.NEXT_STEP``, Gymnasium's default: the step after an env's episode
    ended resets that env (ignoring its action) and reports reward 0 and the reset's observation.

    ## Information
    The single env's keys, merged as ``SyncVectorEnv`` merges them (``VectorEnv._add_info``): one
    array per key with a boolean mask ``_key`` of the envs that reported it (the final-step keys
    such as ``em`` appear only for envs whose episode ended).
    A failed search follows ``on_retrieval_error``: "observe" gives every searching env of the step
    the single env's failure observation and ``info["error"]``; "raise" raises from ``step``, after
    every stepped env has counted its turn, so reset the vector env before stepping it again.

    ## Arguments
    ``num_envs`` and the single env's ``gym.make`` kwargs (:class:`~mem1_gym.envs.qa_common.QAConfig`).

    ## Example
    >>> import gymnasium as gym, mem1_gym
    >>> envs = gym.make_vec("MEM1-MultiHopQA-2", num_envs=3)
    >>> obs, infos = envs.reset(seed=0)
    >>> len(obs), infos["turns_left"].tolist()
    (3, [6, 6, 6])
    >>> obs, rewards, terminated, truncated, infos = envs.step(["search[river]", "junk", "<answer>a; b</answer>"])
    >>> infos["valid_action"].tolist(), terminated.tolist()
    ([True, False, True], [False, False, True])
    >>> envs.close()
    """

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        first = MultiHopQAEnv(**kwargs)
        # The first env opens the backend (and owns an HTTP client); the rest borrow it, so that one
        # search call can serve all of them.
        self.envs = [first] + [MultiHopQAEnv(**{**kwargs, "retriever": first.retriever}) for _ in range(num_envs - 1)]
        self.retriever = first.retriever
        self.num_envs = num_envs
        self.metadata = {**first.metadata, "autoreset_mode": AutoresetMode.NEXT_STEP}
        self.render_mode = first.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._autoreset_envs = np.zeros(num_envs, dtype=np.bool_)
        self._last_obs = [""] * num_envs  # an env outside a reset mask keeps its observation

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        seeds = _seeds(seed, self.num_envs)
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(self.num_envs, dtype=np.bool_)
        elif not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (self.num_envs,)):
            raise ValueError(f"options['reset_mask'] must be a bool numpy array of shape ({self.num_envs},), got {mask!r}")
        infos: dict[str, Any] = {}
        for i in np.flatnonzero(mask):
            self._last_obs[i], info = self.envs[i].reset(seed=seeds[i], options=options or None)
            infos = self._add_info(infos, info, i)
        self._autoreset_envs[mask] = False
        return tuple(self._last_obs), infos

    def step(
        self, actions: Sequence[str]
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if len(actions) != self.num_envs:
            raise ValueError(f"step needs one action per env ({self.num_envs}), got {len(actions)}")
        results: list[tuple | None] = [None] * self.num_envs
        pending: dict[int, PendingStep] = {}
        for i, (env, action) in enumerate(zip(self.envs, actions)):
            if self._autoreset_envs[i]:
                obs, info = env.reset()
                results[i] = (obs, 0.0, False, False, info)
            else:
                pending[i] = env.parse_step(action)
        searching = [i for i, step in pending.items() if step.query is not None]
        queries = [pending[i].query for i in searching]
        found = search_all(self.retriever, queries, self.envs[0].config) if queries else []
        found_by_env = dict(zip(searching, found))
        for i, step in pending.items():
            results[i] = self.envs[i].finish_step(step, found_by_env.get(i))

        infos: dict[str, Any] = {}
        for i, (obs, _, _, _, info) in enumerate(results):
            self._last_obs[i] = obs
            infos = self._add_info(infos, info, i)
        rewards = np.array([r[1] for r in results], dtype=np.float64)
        terminated = np.array([r[2] for r in results], dtype=np.bool_)
        truncated = np.array([r[3] for r in results], dtype=np.bool_)
        self._autoreset_envs = terminated | truncated
        return tuple(self._last_obs), rewards, terminated, truncated, infos

    def render(self) -> tuple[str | None, ...]:
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()


def _seeds(seed: int | Sequence[int | None] | None, n: int) -> list[int | None]:
    """``SyncVectorEnv``'s rule: None for all, ``seed + i`` from an int, or one per env."""
    if seed is None:
        return [None] * n
    if isinstance(seed, int):
        return [seed + i for i in range(n)]
    if len(seed) != n:
        raise ValueError(f"a list of seeds needs one per env ({n}), got {len(seed)}")
    return list(seed)
