"""From rollout records to training samples: exact turn tokens, per-token rewards, and where each token lands.

The learner needs two views of the same sampled tokens:

* the **model view**: samples of layout (a), (b) or (c) (:mod:`mem1_agent.train.layouts`), padded
  into micro-batches; a sampled token sits at some (row, slot);
* the **trajectory view**: every sampled token of a trajectory in the order it was generated
  (turn by turn), which is the time axis of GAE.

:func:`build_samples` returns the samples together with, for each sample, the (trajectory, token)
address of its sampled tokens in slot order, so values and log-probs can be moved between the two
views without any bookkeeping elsewhere (:func:`to_trajectory_view`, :func:`to_sample_view`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from mem1_agent.records import Trajectory
from mem1_agent.train.layouts import (
    TurnTokens,
    per_turn_samples,
    prefix_cache_sample,
    stitched_sample,
)

LAYOUTS = ("per-turn", "stitched", "prefix-cache")


def turn_tokens(trajectory: Trajectory) -> list[TurnTokens]:
    """The turns that sampled at least one token, as (exact context ids, generated ids as sampled).

    A turn with nothing generated (its context overflowed the window) has no token to train on.
    """
    return [
        TurnTokens(trajectory.context_ids(turn.index), turn.generated_ids)
        for turn in trajectory.turns
        if turn.generated_ids
    ]


def token_rewards(trajectory: Trajectory) -> list[float]:
    """One reward per sampled token: each turn's env reward on that turn's last sampled token.

    For the QA envs only the answering turn is rewarded, so this is the outcome reward on the last
    sampled token of the trajectory (never on an observation token: reference/mem1.md §2.5 step 5
    put it on the last stitched token, which could be an observation). A reward of a turn that
    sampled nothing moves to the next token that exists, or back to the last one.
    """
    rewards: list[float] = []
    pending = 0.0
    for turn in trajectory.turns:
        pending += turn.reward
        if turn.generated_ids:
            rewards += [0.0] * (len(turn.generated_ids) - 1) + [pending]
            pending = 0.0
    if rewards:
        rewards[-1] += pending
    return rewards


class Samples(NamedTuple):
    """Training samples of a list of trajectories and the address of every sampled token."""

    samples: list[dict]
    """Layout (a), (b) or (c) samples, ready for :func:`mem1_agent.train.layouts.collate`."""
    owners: list[list[tuple[int, int]]]
    """Per sample, (trajectory index, token index within the trajectory) of its targets in slot order."""
    lengths: list[int]
    """Sampled tokens per trajectory."""


def build_samples(trajectories: Sequence[Trajectory], layout: str) -> Samples:
    """Samples of ``layout`` (one of :data:`LAYOUTS`); trajectories with no sampled token are kept with length 0.

    "per-turn" gives one sample per turn, "stitched" and "prefix-cache" one per trajectory.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    samples, owners, lengths = [], [], []
    for index, trajectory in enumerate(trajectories):
        turns = turn_tokens(trajectory)
        lengths.append(sum(len(t.generated) for t in turns))
        if not turns:
            continue
        if layout == "per-turn":
            made = per_turn_samples(turns)
        else:
            made = [(stitched_sample if layout == "stitched" else prefix_cache_sample)(turns)]
        offset = 0
        for sample in made:
            n = len(sample["targets"])
            samples.append(sample)
            owners.append([(index, offset + k) for k in range(n)])
            offset += n
    return Samples(samples, owners, lengths)


def to_trajectory_view(per_sample: Sequence[torch.Tensor], data: Samples) -> torch.Tensor:
    """Gather per-sample vectors of sampled-token values (slot order) into a (N_traj, T_max) tensor."""
    out = torch.zeros(len(data.lengths), max(data.lengths, default=0) or 1)
    for values, owners in zip(per_sample, data.owners):
        for value, (traj, k) in zip(values.tolist(), owners):
            out[traj, k] = value
    return out


def to_sample_view(per_traj: torch.Tensor, data: Samples) -> list[torch.Tensor]:
    """The inverse of :func:`to_trajectory_view`: one vector per sample, in its slot order."""
    return [torch.tensor([float(per_traj[traj, k]) for traj, k in owners]) for owners in data.owners]


def trajectory_mask(data: Samples) -> torch.Tensor:
    """(N_traj, T_max) 1 on real sampled tokens, 0 on padding."""
    lengths = torch.tensor(data.lengths)
    width = max(data.lengths, default=0) or 1
    return (torch.arange(width)[None, :] < lengths[:, None]).float()


def scatter_to_batch(vectors: Sequence[torch.Tensor], loss_mask: torch.Tensor) -> torch.Tensor:
    """Place per-sample vectors (slot order) on the sampled slots of a collated (B, S) batch."""
    out = torch.zeros_like(loss_mask)
    for row, vector in enumerate(vectors):
        out[row, loss_mask[row] > 0] = vector.to(out.device, out.dtype)
    return out


def gather_from_batch(tensor: torch.Tensor, loss_mask: torch.Tensor) -> list[torch.Tensor]:
    """Per row of a (B, S) tensor, its values on sampled slots in slot order."""
    return [tensor[row, loss_mask[row] > 0].detach().float().cpu() for row in range(tensor.shape[0])]
