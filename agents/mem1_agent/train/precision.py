"""Training dtypes (``precision``) and gradient checkpointing (issue 19, req. 2): what they do to the modules.

==========  ==================================  ===================================  ==========  ==========
precision   stored weights                      forward/backward                     gradients   AdamW state
==========  ==================================  ===================================  ==========  ==========
fp32        fp32                                fp32 (bf16 autocast on CUDA)         fp32        fp32
bf16-mixed  fp32 master (a frozen LoRA base     bf16: FSDP2 gathers the weights in   fp32        fp32
            and the KL reference copy: bf16)    bf16 (``MixedPrecisionPolicy``)      (reduced)
bf16        bf16                                bf16                                 bf16        bf16
==========  ==================================  ===================================  ==========  ==========

The value head stays fp32 in all three: it is ``hidden_size + 1`` parameters and casts its input
to fp32. ``bf16-mixed`` is FSDP2's policy at every world size, one process included
(:func:`mem1_agent.train.distributed.shard` starts a one-rank process group for it). ``bf16`` loses
updates smaller than 2⁻⁸ of a weight (AdamW steps of lr 1e-6 on weights of ~1e-2 are below that):
the least memory, for LoRA adapters or short runs; ``bf16-mixed`` keeps them.

Gradient checkpointing (:func:`enable_gradient_checkpointing`) runs each decoder layer's ``forward``
under non-reentrant ``torch.utils.checkpoint``: only the layer's input is kept, and backward
recomputes the layer. It is ours rather than transformers' ``gradient_checkpointing_enable``, which
drops the K/V cache of a checkpointed layer, and the prefix-cache layout's second pass reads the first
pass's cache (with gradient). Here the forward updates the cache as usual, and the recompute reads
:class:`_Replay` instead: the keys/values the cache held before that forward followed by the
recomputed ones, which is what the cache returned then, so the recompute neither changes the cache
nor computes anything else. FSDP2's hooks stay outside the checkpoint (they wrap ``__call__``).
"""

from __future__ import annotations

import functools
import types
from typing import Any

import torch
import torch.utils.checkpoint

PRECISIONS = ("fp32", "bf16-mixed", "bf16")


def cast(model: torch.nn.Module, precision: str) -> None:
    """Store ``model``'s weights in ``precision``'s dtypes, in place (see the table)."""
    if precision == "bf16":
        model.to(torch.bfloat16)
    elif precision == "bf16-mixed":
        for param in model.parameters():
            if not param.requires_grad:  # frozen (a LoRA base): no update to keep, so no fp32 master either
                param.data = param.data.to(torch.bfloat16)


def mixed_precision_policy(precision: str) -> Any:
    """FSDP2's ``MixedPrecisionPolicy`` of ``precision`` (None: FSDP keeps the stored dtypes)."""
    if precision != "bf16-mixed":
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute every decoder layer (the model's ``_no_split_modules``) in backward; keep only its input."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__} names no decoder layer class (_no_split_modules) to checkpoint; "
                         "set gradient_checkpointing false")
    for layer in layers:
        # bound to the layer: a deepcopy of the model (the KL reference copy) gets a method bound to its own layer
        layer.forward = types.MethodType(_checkpointed_forward, layer)


def _checkpointed_forward(layer: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    forward = functools.partial(type(layer).forward, layer)  # the class's own forward (FSDP2's subclass too)
    if not (layer.training and torch.is_grad_enabled()):  # no backward to replay (rollouts, old log-probs)
        return forward(*args, **kwargs)
    name = "cache" if kwargs.get("cache") is not None else "past_key_values"  # transformers 5.25 / older
    cache = kwargs.get(name)
    replay = None if cache is None else _Replay(cache, _layer_index(layer))
    recomputing = False

    def run(*args: Any) -> Any:
        nonlocal recomputing
        out = forward(*args, **(kwargs if not recomputing or cache is None else {**kwargs, name: replay}))
        recomputing = True  # the next call is backward's
        return out

    return torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False)


def _layer_index(layer: torch.nn.Module) -> int:
    """The cache slot of a decoder layer: its attention's ``layer_idx`` (transformers' convention)."""
    return next(m.layer_idx for m in layer.modules() if isinstance(getattr(m, "layer_idx", None), int))


class _Replay:
    """The K/V cache as a checkpointed layer's recompute sees it: what it held before the layer's forward."""

    def __init__(self, cache: Any, index: int):
        slots = getattr(cache, "layers", None)
        if slots is None:
            raise TypeError(f"gradient checkpointing with a K/V cache reads the per-layer keys/values of a "
                            f"transformers Cache (.layers, transformers >= 4.56); got {type(cache).__name__}")
        held = slots[index] if index < len(slots) else None
        keys = getattr(held, "keys", None) if getattr(held, "is_initialized", True) else None
        self.held = (keys, held.values) if keys is not None and keys.numel() else None  # None: nothing cached yet

    def update(self, keys: torch.Tensor, values: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """What the cache's ``update`` returned in the forward (held, then new, along the sequence); stores nothing."""
        if self.held is None:
            return keys, values
        return torch.cat([self.held[0], keys], dim=-2), torch.cat([self.held[1], values], dim=-2)
