"""From rollout records to training samples: exact turn tokens, per-token rewards, and where each token lands.

The learner needs two views of the same sampled tokens:

* the **model view**: samples of layout (a), (b) or (c) (:mod:`mem1_agent.train.layouts`), padded
  into micro-batches; a sampled token sits at some (row, slot), and a sample's sampled tokens,
  in slot order, are consecutive tokens of one trajectory;
* the **trajectory view**: every sampled token of a trajectory in the order it was generated
  (turn by turn), which is the time axis of GAE.

:func:`build_samples` returns the samples together with, for each sample, the (trajectory, token)
address of its sampled tokens (its trajectory and the index there of its first one), so values and
log-probs move between the two views without any bookkeeping elsewhere (:func:`to_trajectory_view`,
:func:`to_sample_view`, :func:`scatter_to_batch`, :func:`gather_from_batch`): each is one indexing
operation on flat tensors, with Python loops over samples at most, never over tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from mem1_agent.records import Trajectory
from mem1_agent.train.layouts import (
    Sample,
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


def token_rewards(trajectory: Trajectory) -> torch.Tensor:
    """One reward per sampled token (float32, (T,)): each turn's env reward on that turn's last sampled token.

    For the QA envs only the answering turn is rewarded, so this is the outcome reward on the last
    sampled token of the trajectory (never on an observation token: reference/mem1.md §2.5 step 5
    put it on the last stitched token, which could be an observation). A reward of a turn that
    sampled nothing moves to the next token that exists, or back to the last one.
    """
    lengths = torch.tensor([len(turn.generated_ids) for turn in trajectory.turns], dtype=torch.long)  # (J,)
    rewards = torch.zeros(int(lengths.sum()), dtype=torch.float64)  # summed in float64, as Python floats would be
    if len(rewards):
        n_turns = len(lengths)
        # the first turn at or after each one that sampled something (n_turns: none)
        sampling = torch.where(lengths > 0, torch.arange(n_turns), n_turns)
        receiver = sampling.flip(0).cummin(0).values.flip(0)
        last_token = lengths.cumsum(0) - 1  # (J,) of each turn (of an earlier one when it sampled nothing)
        at = torch.where(receiver < n_turns, last_token[receiver.clamp(max=n_turns - 1)], len(rewards) - 1)
        rewards.index_add_(0, at, torch.tensor([turn.reward for turn in trajectory.turns], dtype=torch.float64))
    return rewards.float()


class Samples(NamedTuple):
    """Training samples of a list of trajectories and the address of every sampled token."""

    samples: list[Sample]
    """Layout (a), (b) or (c) samples, ready for :func:`mem1_agent.train.layouts.collate`."""
    trajectory: list[int]
    """Per sample, the trajectory its sampled tokens belong to."""
    offset: list[int]
    """Per sample, the index within that trajectory of its first sampled token (the others follow it)."""
    lengths: list[int]
    """Sampled tokens per trajectory."""


def build_samples(trajectories: Sequence[Trajectory], layout: str) -> Samples:
    """Samples of ``layout`` (one of :data:`LAYOUTS`); trajectories with no sampled token are kept with length 0.

    "per-turn" gives one sample per turn, "stitched" and "prefix-cache" one per trajectory.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    samples, owner, offset, lengths = [], [], [], []
    for index, trajectory in enumerate(trajectories):
        turns = turn_tokens(trajectory)
        lengths.append(sum(len(t.generated) for t in turns))
        if not turns:
            continue
        if layout == "per-turn":
            made = per_turn_samples(turns)
        else:
            made = [(stitched_sample if layout == "stitched" else prefix_cache_sample)(turns)]
        first = 0
        for sample in made:
            samples.append(sample)
            owner.append(index)
            offset.append(first)
            first += sample.n_sampled
    return Samples(samples, owner, offset, lengths)


def _width(data: Samples) -> int:
    return max(data.lengths, default=0) or 1


def token_index(data: Samples) -> torch.Tensor:
    """Flat index into a (N_traj, T_max) tensor of every sampled token: sample after sample, each in slot order."""
    sizes = torch.tensor([s.n_sampled for s in data.samples], dtype=torch.long)  # (n_samples,)
    first = torch.tensor(data.trajectory, dtype=torch.long) * _width(data) + torch.tensor(data.offset,
                                                                                          dtype=torch.long)
    within = torch.arange(int(sizes.sum())) - torch.repeat_interleave(sizes.cumsum(0) - sizes, sizes)
    return torch.repeat_interleave(first, sizes) + within  # (n_tokens,)


def to_trajectory_view(per_sample: Sequence[torch.Tensor], data: Samples) -> torch.Tensor:
    """Gather per-sample vectors of sampled-token values (slot order) into a (N_traj, T_max) tensor."""
    out = torch.zeros(len(data.lengths), _width(data))
    if data.samples:
        out.view(-1)[token_index(data)] = torch.cat(list(per_sample)).float().cpu()
    return out


def to_sample_view(per_traj: torch.Tensor, data: Samples) -> list[torch.Tensor]:
    """The inverse of :func:`to_trajectory_view`: one vector per sample, in its slot order."""
    if not data.samples:
        return []
    picked = per_traj.reshape(-1)[token_index(data)].float()
    return list(picked.split([s.n_sampled for s in data.samples]))


def trajectory_mask(data: Samples) -> torch.Tensor:
    """(N_traj, T_max) 1 on real sampled tokens, 0 on padding."""
    lengths = torch.tensor(data.lengths)
    return (torch.arange(_width(data))[None, :] < lengths[:, None]).float()


def scatter_to_batch(vectors: Sequence[torch.Tensor], loss_mask: torch.Tensor) -> torch.Tensor:
    """Place per-sample vectors (slot order) on the sampled slots of a collated (B, S) batch."""
    out = torch.zeros_like(loss_mask)
    out[loss_mask > 0] = torch.cat(list(vectors)).to(out.device, out.dtype)  # row-major: row by row, in slot order
    return out


def gather_from_batch(tensor: torch.Tensor, loss_mask: torch.Tensor) -> list[torch.Tensor]:
    """Per row of a (B, S) tensor, its values on sampled slots in slot order."""
    sampled = loss_mask > 0
    return list(tensor[sampled].detach().float().cpu().split(sampled.sum(1).tolist()))


class Prepared(NamedTuple):
    """What the learner computes before an update, one vector per sample in its slot order."""

    old_logprobs: list[torch.Tensor]
    """Log-probs of the sampled tokens under the weights that sampled them (recomputed by the learner)."""
    advantages: list[torch.Tensor]
    """Advantage of each sampled token."""
    returns: list[torch.Tensor]
    """Value target of each sampled token (PPO; the advantages for GRPO/RLOO)."""
    old_values: list[torch.Tensor] | None = None
    """Value of the state before each sampled token (PPO only)."""
    ref_logprobs: list[torch.Tensor] | None = None
    """Log-probs under the frozen reference (``kl_coef > 0`` only)."""
    explained_variance: float = float("nan")
    """Of the old values for the returns (PPO only)."""

    def select(self, indices: Sequence[int] | slice) -> Prepared:
        """The vectors of these samples only."""
        def pick(vectors: list[torch.Tensor] | None) -> list[torch.Tensor] | None:
            if vectors is None:
                return None
            return vectors[indices] if isinstance(indices, slice) else [vectors[i] for i in indices]

        return Prepared(pick(self.old_logprobs), pick(self.advantages), pick(self.returns), pick(self.old_values),
                        pick(self.ref_logprobs), self.explained_variance)
