"""Checkpoints in ``save_pretrained`` format, resumable, that survive a kill at any point of a save.

Layout of ``OUT/`` (a folder :class:`~mem1_agent.policies.hf.TransformersPolicy` and
``mem1-agent eval --policy hf:OUT`` load directly)::

    config.json, model.safetensors, generation_config.json   <- model.save_pretrained (LoRA: adapters merged in)
    adapter.safetensors                                      <- LoRA only: the adapters a resume reads
    tokenizer/                                               <- tokenizer.save_pretrained (own folder: SETUP-NOTES)
    value_head.pt                                            <- PPO only
    optimizer.pt                                             <- AdamW + LR scheduler state
    trainer_state.json                                       <- iteration and the learner config
    config.yaml                                              <- that config, readable by `train --config`
    COMPLETE                                                 <- written last: every other file and its size

A save writes ``OUT.tmp/``, fsyncs every file, writes and fsyncs ``COMPLETE``, then swaps:
``OUT`` -> ``OUT.old``, ``OUT.tmp`` -> ``OUT``, ``OUT.old`` removed. A kill can leave any mix of the
three folders; :func:`recover` picks the checkpoint to resume from (issue 21, item 5).

No RNG state is saved: every random draw of an iteration (task draw, sampling, mini-batch order) is
seeded from ``(config.seed, iteration)``, so a resumed run replays the iterations an uninterrupted
run would have played.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from mem1_agent.tiny import TOKENIZER_SUBDIR
from mem1_agent.train import lora

if TYPE_CHECKING:
    from mem1_agent.train.learner import State

STATE_FILE = "trainer_state.json"
CONFIG_FILE = "config.yaml"
MANIFEST = "COMPLETE"
logger = logging.getLogger(__name__)


def save(state: State, tokenizer: Any, out: str | Path, config: Any) -> Path:
    """Write ``state`` to ``out`` (replacing an older checkpoint there); a kill at any point leaves one to recover."""
    out = Path(out)
    tmp = _sibling(out, "tmp")
    _discard(tmp)
    if lora.is_lora(state.model):  # the resume reads the adapters; the frozen base comes from --model again
        lora.save_merged(state.model, tmp, state.model.state_dict())
        lora.save_adapters(state.model, tmp)
    else:
        state.model.save_pretrained(tmp)
    if state.value_head is not None:
        torch.save(state.value_head.state_dict(), tmp / "value_head.pt")
    torch.save({"optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict()},
               tmp / "optimizer.pt")
    return commit(tmp, out, tokenizer, state.iteration, config)


def commit(tmp: Path, out: Path, tokenizer: Any, iteration: int, config: Any) -> Path:
    """Add the tokenizer and trainer state to the weights in ``tmp``, seal it, and swap it in as ``out``."""
    tokenizer.save_pretrained(str(tmp / TOKENIZER_SUBDIR))
    meta = {"iteration": iteration, "config": _jsonable(config)}
    (tmp / STATE_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    # the resolved config again, as the YAML `mem1-agent train --config` reads back (issue 19, req. 5)
    (tmp / CONFIG_FILE).write_text(yaml.safe_dump(meta["config"], sort_keys=False), encoding="utf-8")
    _seal(tmp)
    old = _sibling(out, "old")
    if out.exists():
        _discard(old)
        out.rename(old)
    tmp.rename(out)
    _fsync_dir(out.parent)
    _discard(old)
    return out


def recover(out: str | Path) -> Path | None:
    """The checkpoint to resume from after a kill at any point of :func:`save`: ``out``, or None for a fresh run.

    Properties (kept by any replacement of the checkpoint format):

    * a folder counts only when *complete*: its ``COMPLETE`` manifest is present (written and fsynced
      last) and every file it lists exists with the listed size;
    * of the complete ones among ``OUT``, ``OUT.tmp`` and ``OUT.old``, the one with the highest
      iteration wins (ties: that order). So a save killed after sealing ``OUT.tmp`` keeps its newer
      iteration, and a kill between the two renames (``OUT`` gone) resumes from ``OUT.tmp``, else
      ``OUT.old``;
    * the winner is renamed to ``OUT`` and the other folders are removed, manifest first, so a kill
      during this cleanup leaves a state this function recovers from again;
    * folders present but none complete is an error: a run never silently starts over;
    * none of the three folders: None (a fresh run).
    """
    out = Path(out)
    present = [path for path in (out, _sibling(out, "tmp"), _sibling(out, "old")) if path.exists()]
    if not present:
        return None
    complete = [path for path in present if _is_complete(path)]
    if not complete:
        raise ValueError(f"no complete checkpoint in {', '.join(map(str, present))} (no {MANIFEST} manifest, or "
                         "files missing: a save killed before it finished, or a folder written by an older version); "
                         "move them away or pass another --out to start over")
    best = max(complete, key=_iteration)  # max keeps the first of equals: OUT, then OUT.tmp, then OUT.old
    for path in present:
        if path != best:
            _discard(path)
    if best != out:
        logger.warning("recovered the checkpoint of an interrupted save: %s (iteration %d) becomes %s",
                       best, _iteration(best), out)
        best.rename(out)
        _fsync_dir(out.parent)
    return out


def _sibling(out: Path, suffix: str) -> Path:
    return out.with_name(f"{out.name}.{suffix}")


def _seal(folder: Path) -> None:
    """Make ``folder``'s files durable, then write the manifest that marks it complete."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    for path in files:
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
    for directory in {path.parent for path in files}:
        _fsync_dir(directory)
    listing = {path.relative_to(folder).as_posix(): path.stat().st_size for path in files}
    with (folder / MANIFEST).open("w", encoding="utf-8") as fh:
        json.dump({"files": listing}, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(folder)


def _is_complete(folder: Path) -> bool:
    try:
        listing = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
        return STATE_FILE in listing and all((folder / name).stat().st_size == size for name, size in listing.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # no manifest, a torn one, a missing file
        return False


def _iteration(folder: Path) -> int:
    return json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))["iteration"]


def _discard(folder: Path) -> None:
    """Remove ``folder``, its manifest first: a removal cut short never leaves a folder that looks complete."""
    (folder / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def _fsync_dir(directory: Path) -> None:
    """Persist the entries of ``directory`` (new files, renames): without it a power loss can undo a rename."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_into(state: State, out: str | Path) -> None:
    """Restore weights, value head, optimizer, scheduler and iteration from ``out``."""
    from safetensors.torch import load_file

    out = Path(out)
    device = next(state.model.parameters()).device
    if lora.is_lora(state.model):
        lora.load_adapters(state.model, out)
    else:
        _load_weights(state.model, load_file(str(out / "model.safetensors"), device=str(device)), out)
    if state.value_head is not None:
        if not (out / "value_head.pt").is_file():
            raise FileNotFoundError(f"{out}/value_head.pt missing: that run was not PPO; resume with its --algo")
        state.value_head.load_state_dict(torch.load(out / "value_head.pt", map_location=device))
    opt = torch.load(out / "optimizer.pt", map_location=device)
    state.optimizer.load_state_dict(opt["optimizer"])
    state.scheduler.load_state_dict(opt["scheduler"])
    state.iteration = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))["iteration"]


def _load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], out: Path) -> None:
    # Tied embeddings are saved once; strict=False lets the tied lm_head keep pointing at them.
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or any(not key.startswith("lm_head") for key in missing):
        raise ValueError(f"checkpoint {out} does not match the model (missing {missing}, unexpected {unexpected}); "
                         "resume with the --model the run started from (and its lora_rank), or pass another --out")


def _jsonable(config: Any) -> Any:
    if dataclasses.is_dataclass(config):
        return {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return {k: _jsonable(v) for k, v in config.items()}
    if isinstance(config, list | tuple):
        return [_jsonable(v) for v in config]
    return config if isinstance(config, (int, float, str, bool, type(None))) else str(config)
