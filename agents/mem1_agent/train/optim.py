"""The optimizer every trainer here uses (pretraining, SFT, PPO): AdamW with a linear warm-up, one clipped step."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def adamw_with_warmup(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float, warmup_steps: int,
                      final_fraction: float = 1.0, progress: Callable[[int], float] | None = None,
                      ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and a schedule that ramps the learning rate linearly to ``lr`` over ``warmup_steps`` steps, then
    holds it; or, given ``progress`` (step -> share of the run done, 0 to 1), decays it linearly to
    ``lr * final_fraction`` as the run progresses."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        done = 0.0 if progress is None else min(1.0, max(0.0, progress(step)))
        return ramp * (1.0 - (1.0 - final_fraction) * done)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def clipped_step(params: Iterable[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, max_grad_norm: float) -> float:
    """Clip the accumulated gradients to ``max_grad_norm``, step, advance the schedule, clear the gradients.

    Returns the gradient norm before clipping.
    """
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)
