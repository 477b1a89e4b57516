"""Where training runs: CUDA with bf16 autocast when available, CPU fp32 otherwise.

Weights stay fp32 in both cases (AdamW on bf16 weights loses small updates); on CUDA the forward
runs under ``torch.autocast(dtype=bfloat16)``. The CUDA path is written but could not be run on
the development machine (no GPU there); CPU fp32 is what the tests exercise.
"""

from __future__ import annotations

import contextlib

import torch

from mem1_agent.train.layouts import Batch, PrefixCacheBatch


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; an explicit "cuda" without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but torch sees no CUDA GPU; pass --device cpu")
    return device


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; nothing on CPU (fp32 keeps log-probs exact to 1e-4, issue 4 req. 2)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: Batch | PrefixCacheBatch, device: torch.device) -> Batch | PrefixCacheBatch:
    return type(batch)(*(t.to(device, non_blocking=True) for t in batch))
