"""Checkpoints in ``save_pretrained`` format, resumable.

Layout of ``OUT/`` (a folder :class:`~mem1_agent.policies.hf.TransformersPolicy` and
``mem1-agent eval --policy hf:OUT`` load directly)::

    config.json, model.safetensors, generation_config.json   <- model.save_pretrained
    tokenizer/                                               <- tokenizer.save_pretrained (own folder: SETUP-NOTES)
    value_head.pt                                            <- PPO only
    optimizer.pt                                             <- AdamW + LR scheduler state
    trainer_state.json                                       <- iteration and the learner config

Files are written to a temporary sibling folder and swapped in, so a run killed mid-save keeps
its previous checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mem1_agent.tiny import TOKENIZER_SUBDIR

if TYPE_CHECKING:
    from mem1_agent.train.learner import State

STATE_FILE = "trainer_state.json"


def exists(out: str | Path) -> bool:
    return (Path(out) / STATE_FILE).is_file()


def save(state: State, tokenizer: Any, out: str | Path, config: Any) -> Path:
    """Write ``state`` to ``out`` (replacing an older checkpoint there)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    state.model.save_pretrained(tmp)
    tokenizer.save_pretrained(str(tmp / TOKENIZER_SUBDIR))
    if state.value_head is not None:
        torch.save(state.value_head.state_dict(), tmp / "value_head.pt")
    torch.save({"optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict()},
               tmp / "optimizer.pt")
    meta = {"iteration": state.iteration, "config": _jsonable(config)}
    (tmp / STATE_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return out


def load_into(state: State, out: str | Path) -> None:
    """Restore weights, value head, optimizer, scheduler and iteration from ``out``."""
    from safetensors.torch import load_file

    out = Path(out)
    device = next(state.model.parameters()).device
    weights = load_file(str(out / "model.safetensors"), device=str(device))
    # Tied embeddings are saved once; strict=False lets the tied lm_head keep pointing at them.
    missing, unexpected = state.model.load_state_dict(weights, strict=False)
    if unexpected or any(not key.startswith("lm_head") for key in missing):
        raise ValueError(f"checkpoint {out} does not match the model (missing {missing}, unexpected {unexpected}); "
                         "resume with the --model the run started from, or pass another --out")
    if state.value_head is not None:
        if not (out / "value_head.pt").is_file():
            raise FileNotFoundError(f"{out}/value_head.pt missing: that run was not PPO; resume with its --algo")
        state.value_head.load_state_dict(torch.load(out / "value_head.pt", map_location=device))
    opt = torch.load(out / "optimizer.pt", map_location=device)
    state.optimizer.load_state_dict(opt["optimizer"])
    state.scheduler.load_state_dict(opt["scheduler"])
    state.iteration = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))["iteration"]


def _jsonable(config: Any) -> Any:
    if dataclasses.is_dataclass(config):
        return {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return {k: _jsonable(v) for k, v in config.items()}
    return config if isinstance(config, (int, float, str, bool, type(None))) else str(config)
