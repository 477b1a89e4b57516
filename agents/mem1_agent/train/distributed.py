"""Data-parallel training with PyTorch's own engine: torchrun ranks, FSDP2 sharding, and the collectives the loop needs.

``torchrun --nproc_per_node N -m mem1_agent.train ...`` starts N copies of the same loop
(:func:`mem1_agent.train.learner.train`); at world size 1 every helper here is a no-op, so one
process runs exactly the single-process code (precision bf16-mixed excepted: FSDP2 then shards over
one rank, for its mixed-precision policy). With N ranks:

* **rollouts**: each rank plays its share of whole task groups (:func:`split_tasks`), so generation
  needs no collective, whatever number of turns each rank's episodes take: the transformers backend
  samples with whole weights (:func:`gathered`); the vLLM backend samples in the rank's own engine,
  into which the weights are streamed tensor by tensor from the shards (the learner stays sharded).
  A group never spans ranks: its baseline is local;
* **update**: weights, gradients and AdamW state are sharded by FSDP2 (:func:`shard`: each decoder
  layer, the model, the value head, the KL reference). FSDP2 all-gathers a layer's weights in every
  model call and reduce-scatters its gradients in every backward, which works only when every rank
  makes the same calls in the same order; the learner sees to it
  (:func:`mem1_agent.train.learner.update`): every rank runs as many micro-batches as the rank with
  the most (a zero-loss placeholder where it has none left), and every prefix-cache micro-batch calls
  the model twice, whether or not its turns need the second pass. A rank so holds 1/N of the
  weights, gradients and AdamW state during the update, plus the layers FSDP has gathered; whole
  weights only while it samples or recomputes log-probs (:func:`gathered`: the policy, value head
  and reference, no gradients then);
* **failure**: collectives time out after :data:`COLLECTIVE_TIMEOUT`, and :func:`exit_on_failure`
  makes a failed rank print its error and exit at once (torchrun then stops the others) instead
  of waiting in a collective for peers that wait for it.

NCCL on CUDA (one GPU per rank: ``cuda:LOCAL_RANK``), gloo on CPU.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as dist

from mem1_agent.train.device import resolve_device

COLLECTIVE_TIMEOUT = timedelta(minutes=30)
"""How long a collective waits for every rank. Ranks meet after rollouts, and one rank's episodes can
take much longer than another's; a peer that died without torchrun noticing (another node) is only
detected by this timeout, which then ends the waiting ranks with an error instead of a hang."""


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one that prints, logs and writes checkpoint files other than its own shard."""
    return rank() == 0


def main_print(*args: Any) -> None:
    """``print`` on rank 0 only (flushed: torchrun interleaves the ranks' output)."""
    if is_main():
        print(*args, flush=True)


def setup(device_name: str) -> torch.device:
    """Join the torchrun job described by the environment (no-op without one); returns this rank's device."""
    device = resolve_device(device_name)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT,
                            device_id=device if device.type == "cuda" else None)
    return device


def teardown() -> None:
    """Leave the process group after every rank got here (a rank that failed never does: see exit_on_failure)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_on_failure(main: Callable[[], int]) -> NoReturn:
    """Run a torchrun entry point, then leave the process group. At world size > 1 a rank that fails (an
    exception, or a non-zero exit code) prints its error and exits at once with ``os._exit``: an ordinary exit
    could wait in a collective or an exit handler for peers that themselves wait for this rank. torchrun sees
    the exit and stops the others."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    try:
        code = main()
        if not code:
            teardown()
    except SystemExit as err:  # e.g. a usage error: its message is already printed
        if not distributed:
            raise
        if isinstance(err.code, str):
            print(err.code, file=sys.stderr)  # what sys.exit would print, had os._exit not skipped it
        code = err.code if isinstance(err.code, int) else int(err.code is not None)
    except BaseException:  # KeyboardInterrupt included: nothing may leave the peers waiting
        if not distributed:
            raise
        print(f"rank {os.environ.get('RANK', '?')} failed:", file=sys.stderr)
        traceback.print_exc()
        code = 1
    if distributed and code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def split_tasks(n_tasks: int, rank: int, world: int) -> range:
    """The task groups (of ``n_tasks`` per iteration) rank ``rank`` of ``world`` plays: a contiguous, equal share.

    Equal shares keep the ranks' rollout time alike; a group is never split across ranks.
    """
    if n_tasks % world:
        raise ValueError(f"{world} ranks cannot share {n_tasks} task groups per iteration equally (a group is "
                         f"never split across ranks); set --tasks-per-iteration to a multiple of {world}")
    share = n_tasks // world
    return range(rank * share, (rank + 1) * share)


def check_shares(tasks_per_iteration: int, mini_batch_size: int, micro_batch_size: int, world: int) -> None:
    """Whole task groups and whole micro-batches per rank, checked before any work (CLI) and by the learner."""
    split_tasks(tasks_per_iteration, 0, world)
    share = mini_batch_size / world
    if share % micro_batch_size:
        raise ValueError(f"{world} ranks split each mini-batch of {mini_batch_size} samples into {share:g} per "
                         f"rank, not a multiple of micro_batch_size {micro_batch_size}; set --mini-batch-size to a "
                         f"multiple of {world * micro_batch_size}")


def shard(model: torch.nn.Module, value_head: torch.nn.Module | None = None, reference: torch.nn.Module | None = None,
          mp_policy: Any = None) -> None:
    """FSDP2 on the policy, the value head and the KL reference copy: a transformers model per decoder layer (its
    ``_no_split_modules``) then whole, the value head as one unit.

    ``mp_policy`` (precision bf16-mixed: :func:`mem1_agent.train.precision.mixed_precision_policy`) applies to
    the policy and the reference; the value head always computes in fp32. A no-op at world size 1, except with
    ``mp_policy``: FSDP2 is how bf16-mixed runs, so one process gets a one-rank process group (FSDP2 needs a
    device mesh, even of one device). Build the optimizer after this: sharding replaces the parameters.
    """
    if world_size() == 1 and mp_policy is None:
        return
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    device = next(model.parameters()).device
    if not dist.is_initialized():  # one process: gloo for CPU tensors, NCCL for CUDA ones (a CPU run may come first)
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    mesh = init_device_mesh(device.type, (world_size(),))
    for module, policy in ((model, mp_policy), (value_head, None), (reference, mp_policy)):
        if module is None:
            continue
        policy = policy or MixedPrecisionPolicy()  # FSDP2's default: the stored dtypes
        layer_classes = set(getattr(module, "_no_split_modules", None) or ())
        for layer in [m for m in module.modules() if type(m).__name__ in layer_classes]:
            fully_shard(layer, mesh=mesh, mp_policy=policy)
        fully_shard(module, mesh=mesh, mp_policy=policy)


def is_sharded(module: torch.nn.Module) -> bool:
    """``module`` is (or holds) FSDP2 units: its state dict is made of DTensors, read through DCP's helpers."""
    return bool(_units((module,)))


def _units(modules: tuple[torch.nn.Module | None, ...]) -> list[Any]:
    from torch.distributed.fsdp import FSDPModule

    # once each: the LoRA reference (lora.AdaptersDisabled) holds the policy's own units
    return list(dict.fromkeys(m for module in modules if module is not None for m in module.modules()
                              if isinstance(m, FSDPModule)))


@contextlib.contextmanager
def gathered(*modules: torch.nn.Module | None) -> Iterator[None]:
    """Whole weights inside: all-gathered once on entry (every rank, same order), resharded on exit.

    Any number of forward calls inside then makes no collective, so ranks may differ in how many
    they make (rollouts of different lengths). Without sharded modules: nothing happens.
    """
    units = _units(modules)
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(True, recurse=False)


def sum_over_ranks(value: float) -> float:
    return _all_reduce(value, dist.ReduceOp.SUM)


def max_over_ranks(value: int) -> int:
    return int(_all_reduce(value, dist.ReduceOp.MAX))


def _all_reduce(value: float, op: Any) -> float:
    if world_size() == 1:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=op)
    return float(tensor.item())


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def combine_stats(stats: dict[str, float]) -> dict[str, float]:
    """Every rank's iteration scalars as one: throughputs (``*_per_s``) summed, the rest averaged over the ranks
    that have them (a rank with no sample has no loss to report). Equal shares make a mean of means the mean."""
    if world_size() == 1:
        return stats
    everyone: list[dict[str, float]] = [{} for _ in range(world_size())]
    dist.all_gather_object(everyone, stats)
    keys = dict.fromkeys(key for ranked in everyone for key in ranked)
    out = {}
    for key in keys:
        values = [ranked[key] for ranked in everyone if key in ranked]
        out[key] = math.fsum(values) if key.endswith("_per_s") else math.fsum(values) / len(values)
    return out


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object)."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
