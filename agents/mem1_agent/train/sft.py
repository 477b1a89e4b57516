"""Behaviour cloning (SFT) on oracle trajectories, through the same exact layouts as PPO.

The oracle of the synthetic world plays a task in the record format of every other policy
(:mod:`mem1_agent.policies.oracle`), with its text encoded by the model's tokenizer. Cloning it is
maximum likelihood of the generated tokens (state + action) given the exact context each turn
read: the loss mask of :mod:`mem1_agent.train.layouts` is 1 exactly on those tokens, so the prompt
and the observations are never trained on. This is the warm start the tiny CPU demo needs: a
randomly initialised model never samples a well-formed ``<search>`` and gets no reward to learn from.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mem1_agent.records import Trajectory
from mem1_agent.train.device import autocast, resolve_device, to_device
from mem1_agent.train.layouts import Sample, collate
from mem1_agent.train.optim import adamw_with_warmup, clipped_step
from mem1_agent.train.ppo import forward, masked_mean
from mem1_agent.train.samples import LAYOUTS, build_samples


@dataclass(frozen=True)
class SFTConfig:
    """Hyper-parameters of behaviour cloning."""

    epochs: int = 1
    """Passes over the trajectories."""
    lr: float = 1e-3
    """AdamW learning rate after warm-up (tiny models from scratch want ~1e-3; a 7B model ~1e-5)."""
    warmup_steps: int = 10
    """Optimizer steps of linear warm-up."""
    final_lr_fraction: float = 1.0
    """After warm-up the learning rate decays linearly to ``lr`` x this by the end of the run (the last epoch,
    or ``max_minutes`` of wall time when that comes first); 1.0 holds it constant."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    micro_batch_size: int = 4
    """Samples per forward/backward."""
    mini_batch_size: int = 8
    """Samples per optimizer step (gradients accumulate over micro-batches)."""
    layout: str = "prefix-cache"
    """"prefix-cache", "stitched" or "per-turn" (see :class:`mem1_agent.train.learner.LearnerConfig`)."""
    seed: int = 0
    """Seed of the sample order."""
    device: str = "auto"
    """"auto", "cpu" or "cuda"."""
    max_minutes: float | None = None
    """Stop after the optimizer step that crosses this wall time (None: run every epoch)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (None: run every epoch). A step count makes a run reproducible
    on any machine; ``max_minutes`` beside it is a safety cap for a slow one."""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.micro_batch_size < 1 or self.mini_batch_size % self.micro_batch_size:
            raise ValueError(f"mini_batch_size ({self.mini_batch_size}) must be a positive multiple of "
                             f"micro_batch_size ({self.micro_batch_size})")
        if self.epochs < 1 or self.lr <= 0 or self.warmup_steps < 0 or not 0 <= self.final_lr_fraction <= 1:
            raise ValueError("need epochs >= 1, lr > 0, warmup_steps >= 0 and final_lr_fraction in [0, 1]")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0 or None, got {self.max_minutes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")


def sft(model: torch.nn.Module, trajectories: Sequence[Trajectory], config: SFTConfig, pad_id: int = 0,
        log: Callable[[dict], None] | None = None) -> list[float]:
    """Train ``model`` in place to imitate ``trajectories``; returns the mean NLL per sampled token of each step."""
    device = resolve_device(config.device)
    model.to(device).train()
    samples = build_samples(trajectories, config.layout).samples
    if not samples:
        raise ValueError("no trajectory has a generated token to imitate; collect oracle trajectories first")
    total_steps = config.epochs * math.ceil(len(samples) / config.mini_batch_size)
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    started = time.perf_counter()

    def progress(step: int) -> float:
        if config.max_minutes is None:
            return step / total_steps
        return max(step / total_steps, (time.perf_counter() - started) / (60 * config.max_minutes))

    optimizer, scheduler = adamw_with_warmup(model.parameters(), config.lr, config.weight_decay, config.warmup_steps,
                                             config.final_lr_fraction, progress)
    rng = random.Random(config.seed)

    def mini_batches() -> Iterator[tuple[int, list[Sample]]]:
        for epoch in range(config.epochs):
            order = list(range(len(samples)))
            rng.shuffle(order)
            for start in range(0, len(order), config.mini_batch_size):
                yield epoch, [samples[i] for i in order[start : start + config.mini_batch_size]]

    losses: list[float] = []
    deadline = None if config.max_minutes is None else started + 60 * config.max_minutes
    for epoch, mini in itertools.islice(mini_batches(), total_steps):
        loss = accumulate_nll(model, mini, config.micro_batch_size, pad_id, device)
        clipped_step(model.parameters(), optimizer, scheduler, config.max_grad_norm)
        losses.append(loss)
        if log is not None:
            log({"epoch": epoch, "step": len(losses), "nll": loss, "lr": scheduler.get_last_lr()[0]})
        if deadline is not None and time.perf_counter() > deadline:
            break
    model.eval()
    return losses


def accumulate_nll(model: torch.nn.Module, mini: Sequence[Sample], micro_batch_size: int, pad_id: int,
                   device: torch.device) -> float:
    """Accumulate the gradient of the token-mean NLL over ``mini`` (samples of any layout, ``micro_batch_size``
    per forward/backward); return that NLL. The caller steps the optimizer (SFT and the layout benchmark)."""
    total_tokens = sum(s.n_sampled for s in mini)
    total = 0.0
    for start in range(0, len(mini), micro_batch_size):
        micro = mini[start : start + micro_batch_size]
        batch = to_device(collate(micro, pad_id), device)
        with autocast(device):
            out = forward(model, batch)
        nll = -masked_mean(out.logprobs, batch.loss_mask)
        # Weight by tokens so the accumulated gradient is the token mean over the whole mini-batch.
        weight = batch.loss_mask.sum().item() / total_tokens
        (nll * weight).backward()
        total += nll.item() * weight
    return total


def grounded(trajectory: Trajectory) -> bool:
    """True when the oracle never wrote an answer its searches did not show.

    The oracle is privileged: when a search misses (one passage per search often does), it keeps
    the hop's answer anyway and marks it in its state. Cloning such a turn teaches a model to
    produce a name that is nowhere in its context, i.e. to memorise; keeping only grounded
    trajectories makes every imitated name one the model could have read.
    """
    from mem1_gym.oracle import DOUBT_MARKS

    return not any(mark in turn.state.text for turn in trajectory.turns for mark in DOUBT_MARKS)


def oracle_trajectories(env_id: str, tokenizer_dir: str, episodes: int, split: str = "train", seed: int = 0,
                        context: str = "mem1", concurrency: int = 8,
                        env_kwargs: dict[str, Any] | None = None) -> list[Trajectory]:
    """Oracle play of ``episodes`` distinct tasks of ``split`` (``env_kwargs`` go to ``gym.make``),
    encoded with the model's tokenizer."""
    import gymnasium as gym

    import mem1_gym  # noqa: F401  (registers the env ids)
    from mem1_agent.context import make_strategy
    from mem1_agent.policies import make_policy
    from mem1_agent.rollout import EpisodeSpec, RolloutConfig, rollout
    from mem1_gym.protocol import env_protocol

    policy = make_policy("oracle", tokenizer=tokenizer_dir)
    envs = [gym.make(env_id, split=split, **(env_kwargs or {})) for _ in range(concurrency)]
    try:
        n_tasks = env_protocol(envs[0]).n_tasks  # refuses an env the agent cannot drive
        if episodes > n_tasks:
            raise ValueError(f"--episodes {episodes} exceeds the {n_tasks} tasks of the {split} split; lower it")
        order = random.Random(seed).sample(range(n_tasks), episodes)
        specs = [EpisodeSpec(seed=seed + k, task_index=index) for k, index in enumerate(order)]
        return rollout(envs, policy, make_strategy(context), specs, RolloutConfig(env_id=env_id))
    finally:
        for env in envs:
            env.close()
