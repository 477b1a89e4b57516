"""Advantages: token-level GAE over a trajectory's sampled tokens, and group baselines (GRPO/RLOO).

Why token level: every sampled token of a MEM1 trajectory has a value estimate from its own
rollout context (the value head reads the same exact layouts as the policy), and the outcome
reward sits on the last sampled token of the last turn (reference/mem1.md §9 "do better" 6: never
on an observation token). Tokens are ordered turn by turn; observation and prompt tokens are not in
the sequence at all, so they carry no advantage, no loss and no KL. With gamma = lam = 1 (the
Search-R1/MEM1 setting) this is the Monte-Carlo return minus the value.

Two defaults a review found wrong (issue 19, requirement 1), now fixed in
:func:`trajectory_advantages`, the one place the learner computes advantages:

* **An episode cut by the turn budget is terminal.** The budget is part of the observation ("You
  have 0 turns left"), so the state after the last turn is one from which no reward can follow:
  its value is 0, not V(next context). Bootstrapping treats the cut as an arbitrary time limit the
  policy cannot see, and credits a policy that runs out of turns with the value of a state it can
  never act from.
* **Group baselines are never re-centred across groups.** GRPO/RLOO advantages are differences
  within a task's group; whitening them over the whole batch shifts a group whose rollouts all
  scored alike (advantage 0: nothing to learn from it) by the other groups' mean. Std scaling,
  when asked for, is per group (``group_std``). Only PPO's GAE advantages are whitened.
"""

from __future__ import annotations

import torch

from mem1_agent.train.ppo import PPOConfig


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, bootstrap: torch.Tensor,
        gamma: float = 1.0, lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over padded token sequences.

    rewards, values, mask: (B, T), one row per trajectory, its sampled tokens in order, padding
    where ``mask`` is 0 (padding is skipped, not treated as a step).
    bootstrap: (B,) value after the last token: 0 for a terminated episode, V(next state) for one
    truncated before it ended (the return does not stop at a time limit).
    Returns (advantages, returns), both (B, T) and 0 on padding.
    """
    b, t = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_value = bootstrap.to(rewards.dtype).clone()  # (B,)
    running = torch.zeros(b, dtype=rewards.dtype)
    for i in reversed(range(t)):
        live = mask[:, i] > 0
        delta = rewards[:, i] + gamma * next_value - values[:, i]
        running = torch.where(live, delta + gamma * lam * running, running)
        advantages[:, i] = torch.where(live, running, torch.zeros_like(running))
        next_value = torch.where(live, values[:, i], next_value)
    returns = (advantages + values) * mask
    return advantages, returns


def group_advantages(rewards: torch.Tensor, groups: torch.Tensor, normalize_std: bool = False,
                     leave_one_out: bool = False, eps: float = 1e-6) -> torch.Tensor:
    """Per-trajectory advantages against the mean of the trajectories of the same task.

    rewards, groups: (B,); trajectories with equal ``groups`` ids are rollouts of the same task.
    GRPO: reward - group mean (optionally / group std). RLOO (``leave_one_out``): reward - mean of
    the *other* members, which makes the baseline independent of the sample it scores.
    A group of one gets advantage 0 (no baseline to compare with).
    """
    advantages = torch.zeros_like(rewards, dtype=torch.float32)
    for g in torch.unique(groups):
        members = groups == g
        r = rewards[members].float()
        n = r.numel()
        if n == 1:
            continue
        baseline = (r.sum() - r) / (n - 1) if leave_one_out else r.mean()
        adv = r - baseline
        if normalize_std:
            adv = adv / (r.std(unbiased=False) + eps)
        advantages[members] = adv
    return advantages


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero-mean unit-variance over the masked entries (PPO's advantage normalisation)."""
    n = mask.sum().clamp(min=1)
    mean = (values * mask).sum() / n
    var = (((values - mean) * mask) ** 2).sum() / n
    return (values - mean) * torch.rsqrt(var + eps) * mask


def trajectory_advantages(config: PPOConfig, mask: torch.Tensor, rewards: torch.Tensor,
                          values: torch.Tensor | None = None,
                          groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns on each trajectory's sampled tokens, for ``config.algo``.

    mask: (N, T), 1 on sampled tokens. PPO: ``rewards`` (N, T) per token and ``values`` (N, T);
    GAE with value 0 after the last token of every episode, answered or cut by the turn budget
    (see the module docstring), whitened when ``normalize_advantages``. GRPO/RLOO: ``rewards`` (N,)
    per trajectory and ``groups`` (N,) task-group ids; the group advantage on every sampled token,
    never whitened (``normalize_advantages`` is PPO's only). Returns ((N, T), (N, T)); the returns
    are 0 for the group algorithms (no value head).
    """
    if config.algo == "ppo":
        if values is None:
            raise ValueError("PPO advantages need the value head's values (N, T)")
        terminal = torch.zeros(mask.shape[0], dtype=rewards.dtype)  # (N,): every episode end is terminal
        advantages, returns = gae(rewards, values, mask, terminal, config.gamma, config.lam)
        if config.normalize_advantages:
            advantages = whiten(advantages, mask)
        return advantages, returns
    if groups is None:
        raise ValueError(f"{config.algo} advantages need the task-group id of every trajectory")
    per_trajectory = group_advantages(rewards, groups, config.group_std, leave_one_out=config.algo == "rloo")
    return per_trajectory[:, None] * mask, torch.zeros_like(mask)
