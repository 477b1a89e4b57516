"""Training logs: one line per iteration on stdout, TensorBoard scalars when installed, wandb when asked."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from mem1_agent.train.checkpoint import _jsonable
from mem1_agent.train.distributed import is_main, main_print

SHOWN = ("reward", "em", "valid_action_rate", "approx_kl", "clip_frac", "explained_variance", "entropy",
         "policy_loss", "value_loss", "kl_ref", "rollout_tokens_per_s", "update_tokens_per_s")


class Logger:
    """Fans scalars out to stdout, TensorBoard (``out/tb``) and wandb."""

    def __init__(self, out: Path | None, tensorboard: bool, wandb_project: str | None, config: Any,
                 first_step: int = 1) -> None:
        self.writer = None
        self.run = None
        if tensorboard and out is not None and is_main():  # rank 0 logs for all ranks
            if importlib.util.find_spec("tensorboard") is None:
                print("TensorBoard logging off: `pip install tensorboard` to get it (stdout logging continues)")
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
        shown = " ".join(f"{key}={_fmt(stats[key])}" for key in SHOWN if key in stats)
        main_print(f"iter {step:4d} {shown}")
        if self.writer is not None:
            for key, value in stats.items():
                self.writer.add_scalar(f"train/{key}", value, step)
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
