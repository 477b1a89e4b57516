"""Training logs: namespaced scalars to the ``mem1_agent.train`` logger, TensorBoard when installed, wandb when asked.

Every scalar has one key, used as is by every output (the console line, TensorBoard's tags, wandb and
the dicts :func:`mem1_agent.train.learner.train` returns); ``rollout/`` for what the iteration's
collection played, ``train/`` for its update:

===============================  ==================================================================
``rollout/reward_mean``          mean reward of a trajectory (sum over its turns)
``rollout/em_mean``              mean exact match of a trajectory (mean over its objectives)
``rollout/valid_action_rate``    share of turns whose action parsed
``rollout/turns_mean``           mean turns of a trajectory
``rollout/tokens_per_s``         sampled tokens per second of collection
``train/loss``                   the minimised objective (every ``train/`` scalar: mean over optimizer steps)
``train/policy_loss``            clipped policy loss
``train/value_loss``             clipped value loss (PPO only)
``train/entropy``                entropy of the policy on sampled tokens
``train/approx_kl``              k3 KL(old || new): how far the update moved from the sampling weights
``train/kl``                     k3 KL to the frozen reference, the penalised one (``kl_coef > 0`` only)
``train/clip_frac``              share of tokens whose ratio was clipped
``train/grad_norm``              gradient norm before clipping
``train/lr``                     learning rate after the iteration
``train/explained_variance``     of the old values for the returns (PPO only; nan otherwise)
``train/tokens_per_s``           sampled tokens per second of update (all epochs)
===============================  ==================================================================

The console gets its line through :mod:`logging`; the library adds no handler, an entry point calls
:func:`log_to_console` (``mem1-agent train`` does), which prints rank 0's lines only.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import sys
from pathlib import Path
from typing import IO, Any

from mem1_agent.train.checkpoint import _jsonable
from mem1_agent.train.distributed import is_main

log = logging.getLogger("mem1_agent.train")

SHOWN = ("rollout/reward_mean", "rollout/em_mean", "rollout/valid_action_rate", "train/approx_kl", "train/clip_frac",
         "train/explained_variance", "train/entropy", "train/policy_loss", "train/value_loss", "train/kl",
         "rollout/tokens_per_s", "train/tokens_per_s")
"""The scalars of the console line, in this order (TensorBoard and wandb get all)."""


class _Console(logging.StreamHandler):
    """The handler :func:`log_to_console` installs (so that a second call replaces it)."""


def log_to_console(stream: IO[str] | None = None) -> logging.Handler:
    """Print the learner's INFO lines (one per iteration, resume and stop notices) to ``stream`` (default: the
    current ``sys.stdout``), as bare messages, on rank 0 only; replaces the handler of an earlier call."""
    for handler in [h for h in log.handlers if isinstance(h, _Console)]:
        log.removeHandler(handler)
    handler = _Console(sys.stdout if stream is None else stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda record: is_main())  # asked when a line is emitted: torchrun's ranks exist by then
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


class Logger:
    """Fans an iteration's scalars out to the ``mem1_agent.train`` logger, TensorBoard (``<out>-tb``) and wandb."""

    def __init__(self, out: Path | None, tensorboard: bool, wandb_project: str | None, config: Any,
                 first_step: int = 1) -> None:
        self.writer = None
        self.run = None
        if tensorboard and out is not None and is_main():  # rank 0 logs for all ranks
            if importlib.util.find_spec("tensorboard") is None:
                log.warning("TensorBoard logging off: `pip install tensorboard` to get it (console logging continues)")
            else:
                from torch.utils.tensorboard import SummaryWriter

                # A resumed run hides the steps logged after its checkpoint, which it plays again.
                self.writer = SummaryWriter(str(Path(out).with_name(Path(out).name + "-tb")), purge_step=first_step)
        if wandb_project and is_main():
            try:
                import wandb
            except ImportError as err:
                raise RuntimeError("--wandb-project needs wandb: `pip install wandb`, or drop the flag") from err
            self.run = wandb.init(project=wandb_project, config=_jsonable(config))

    def log(self, stats: dict[str, float], step: int) -> None:
        log.info("iter %4d %s", step, " ".join(f"{key}={_fmt(stats[key])}" for key in SHOWN if key in stats))
        if self.writer is not None:
            for key, value in stats.items():
                self.writer.add_scalar(key, value, step)
        if self.run is not None:
            self.run.log(stats, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.run is not None:
            self.run.finish()


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.4g}"
