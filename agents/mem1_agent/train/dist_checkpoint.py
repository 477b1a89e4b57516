"""Checkpoints of a run at any world size: :mod:`mem1_agent.train.checkpoint`'s format, plus sharded state with N ranks.

One process writes and reads :mod:`mem1_agent.train.checkpoint` folders unchanged. With N ranks
(FSDP2; also one process whose model FSDP2 holds, precision bf16-mixed), ``OUT/`` holds the same
consolidated files, so ``--policy hf:OUT`` and ``from_pretrained`` load it, and the resumable state
in ``torch.distributed.checkpoint`` (DCP) form::

    config.json, model.safetensors, ...   <- rank 0: save_pretrained of the gathered full weights
                                             (LoRA: the adapters merged in, :mod:`mem1_agent.train.lora`)
    tokenizer/, trainer_state.json, config.yaml, value_head.pt (PPO)   <- rank 0, as in checkpoint.py
    sharded/                              <- DCP: every rank writes its shard of the trained weights (with
                                             LoRA the adapters only: the frozen base is --model's) + AdamW state
    scheduler.pt                          <- rank 0: the LR schedule (the same on every rank)
    COMPLETE                              <- rank 0, last, after a barrier: every file of every rank

It is written with the same protocol: ``OUT.tmp`` filled by all ranks, a barrier, then rank 0
seals it (fsyncs every file, the manifest last) and swaps it in; another barrier keeps every rank
from going on before the swap. :func:`mem1_agent.train.checkpoint.recover` (rank 0) picks the
checkpoint to resume from after a kill at any point. DCP reshards on load, so a run resumes at
another world size, or with one process. The folder must be on a file system every rank sees.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mem1_agent.train import checkpoint, distributed, lora

if TYPE_CHECKING:
    from mem1_agent.train.learner import State

SHARDED = "sharded"
SCHEDULER_FILE = "scheduler.pt"


def save(state: State, tokenizer: Any, out: str | Path, config: Any) -> Path:
    """Write ``state`` to ``out`` on every rank together (one process: :func:`mem1_agent.train.checkpoint.save`)."""
    if not _sharded(state):
        return checkpoint.save(state, tokenizer, out, config)
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

    out = Path(out)
    tmp = checkpoint._sibling(out, "tmp")
    if distributed.is_main():
        checkpoint._discard(tmp)
    distributed.barrier()
    model_state, optimizer_state = get_state_dict(_trained(state), state.optimizer, options=_trained_only())
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(tmp / SHARDED))
    whole = StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered on rank 0's CPU only
    weights = get_model_state_dict(state.model, options=whole)
    head = get_model_state_dict(state.value_head, options=whole) if state.value_head is not None else None
    if distributed.is_main():
        if lora.is_lora(state.model):
            lora.save_merged(state.model, tmp, weights)
        else:
            state.model.save_pretrained(tmp, state_dict=weights)
        if head is not None:
            torch.save(head, tmp / "value_head.pt")
        torch.save(state.scheduler.state_dict(), tmp / SCHEDULER_FILE)
    distributed.barrier()  # every shard is written before rank 0 seals the folder
    if distributed.is_main():
        checkpoint.commit(tmp, out, tokenizer, state.iteration, config)
    distributed.barrier()  # no rank reads or writes OUT again before the swap
    return out


def recover(out: str | Path) -> Path | None:
    """:func:`mem1_agent.train.checkpoint.recover` on rank 0 (it renames and deletes), its answer on every rank."""
    found = checkpoint.recover(out) if distributed.is_main() else None
    return distributed.broadcast(found)


def load_into(state: State, out: str | Path) -> None:
    """Restore ``state`` from ``out``: sharded state when the folder has it (any world size), else
    :func:`mem1_agent.train.checkpoint.load_into` (a one-process checkpoint, one process)."""
    out = Path(out)
    if not (out / SHARDED).is_dir():
        if _sharded(state):
            raise ValueError(f"{out} was written by a one-process run without FSDP (no {SHARDED}/ folder); resume "
                             "it with one process and its precision (fp32 or bf16), or pass another --out")
        checkpoint.load_into(state, out)
        return
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optimizer_state = get_state_dict(_trained(state), state.optimizer, options=_trained_only())
    loaded = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(loaded, checkpoint_id=str(out / SHARDED))
    set_state_dict(_trained(state), state.optimizer, model_state_dict=loaded["model"],
                   optim_state_dict=loaded["optimizer"], options=_trained_only())
    state.scheduler.load_state_dict(torch.load(out / SCHEDULER_FILE))
    state.iteration = json.loads((out / checkpoint.STATE_FILE).read_text(encoding="utf-8"))["iteration"]


def _trained_only() -> Any:
    """DCP's options for the trained parameters only (a LoRA base is frozen: ``--model`` restores it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True, strict=False)  # not strict: the frozen ones are left out


def _sharded(state: State) -> bool:
    """Whether ``state`` is saved through DCP: several ranks, or FSDP2 in one process (bf16-mixed)."""
    return distributed.world_size() > 1 or distributed.is_sharded(state.model)


def _trained(state: State) -> torch.nn.Module:
    """The modules the optimizer steps, under one root so that parameter names are stable across world sizes."""
    modules = {"model": state.model}
    if state.value_head is not None:
        modules["value_head"] = state.value_head
    return torch.nn.ModuleDict(modules)
