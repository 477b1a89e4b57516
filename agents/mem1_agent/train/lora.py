"""LoRA through ``peft`` (issue 19, req. 2): adapters on the policy, the base as the KL reference, merged checkpoints.

``lora_rank > 0`` wraps the model with ``peft.get_peft_model``: the base weights are frozen and
only the adapters (``A``: in × r, ``B``: r × out, ``B`` starting at 0) are trained, so the
optimizer holds ``2·r·(in + out)`` moments per targeted layer instead of the whole model's.

* **reference** ``lora-base``: :class:`AdaptersDisabled`, the same module called inside
  ``disable_adapter()``. No second copy: the base is frozen, so it *is* the initial policy;
* **checkpoints**: the consolidated folder holds the merged weights (``W + (alpha/r)·B·A``, folded
  one layer at a time into CPU tensors: no second copy on the GPU), so ``--policy hf:OUT`` and
  ``from_pretrained`` load it as any model; a resume reads the adapters (:data:`ADAPTER_FILE`, or the
  sharded DCP state) and the optimizer, and takes the frozen base from ``--model`` again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from mem1_agent.train.learner import LearnerConfig

ADAPTER_FILE = "adapter.safetensors"
"""The trained adapters in a one-process checkpoint folder (the resumable part; the base comes from ``--model``)."""
_PEFT_PREFIX = "base_model.model."  # what peft puts before the base model's own parameter names


def wrap(model: torch.nn.Module, config: LearnerConfig) -> torch.nn.Module:
    """``model`` with LoRA adapters on ``config.lora_targets`` (its base frozen); ``model`` itself when rank 0."""
    if config.lora_rank == 0:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise ImportError('lora_rank > 0 trains LoRA adapters through peft: pip install "mem1-gym[agent]" '
                          "(or pip install peft), or set lora_rank 0") from err
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules=list(config.lora_targets),
                      lora_dropout=0.0)  # no dropout: the PPO ratio compares two forwards that must agree
    return get_peft_model(model, lora)


def is_lora(model: torch.nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "get_base_model")


class AdaptersDisabled(torch.nn.Module):
    """The base model under a LoRA policy: ``policy`` called with its adapters disabled (the KL reference).

    It holds no weights of its own: ``parameters()`` and ``config`` are the policy's, and
    :func:`mem1_agent.train.distributed.gathered` finds the policy's FSDP units once.
    """

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy

    @property
    def config(self) -> Any:
        return self.policy.config

    def get_base_model(self) -> torch.nn.Module:
        """The transformers model (:func:`mem1_agent.policies.hf.cache_argument` reads its ``forward``)."""
        return self.policy.get_base_model()

    def forward(self, **kwargs: Any) -> Any:
        with self.policy.disable_adapter():
            return self.policy(**kwargs)


def merged_weight(weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float,
                  fan_in_fan_out: bool = False) -> torch.Tensor:
    """One LoRA layer's merged weight ``W + scaling · B·A``, summed in fp32 and returned in ``weight``'s dtype
    (``B·A`` transposed for a peft layer stored fan-in first). The checkpoints and the vLLM weight sync both
    merge through this, so the engine serves exactly the policy the checkpoint holds."""
    delta = scaling * (b.float() @ a.float())  # (out, in)
    return (weight.float() + (delta.T if fan_in_fan_out else delta)).to(weight.dtype)


def merged_state_dict(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The base model's state dict (its own names, on CPU) with every adapter folded into its layer.

    ``weights`` is the whole LoRA model's state dict (``state_dict()``, or the full state dict FSDP
    gathers); each merged weight is computed in fp32 on the weights' device, then moved to CPU.
    """
    from peft.tuners.lora import LoraLayer

    adapter = model.active_adapter
    scaling = {name: module.scaling[adapter] for name, module in model.named_modules() if isinstance(module, LoraLayer)}
    merged = {}
    for key, tensor in weights.items():
        if ".lora_" in key:
            continue
        owner, base, leaf = key.rpartition(".base_layer.")
        if base and owner in scaling and leaf == "weight":
            a, b = weights[f"{owner}.lora_A.{adapter}.weight"], weights[f"{owner}.lora_B.{adapter}.weight"]
            tensor = merged_weight(tensor, a, b, scaling[owner])
        name = f"{owner}.{leaf}" if base else key
        merged[name.removeprefix(_PEFT_PREFIX)] = tensor.detach().cpu()
    return merged


def save_merged(model: torch.nn.Module, folder: Path, weights: dict[str, torch.Tensor]) -> None:
    """``save_pretrained`` of the base model with the adapters folded in: a folder any causal-LM loader reads."""
    model.get_base_model().save_pretrained(folder, state_dict=merged_state_dict(model, weights))


def save_adapters(model: torch.nn.Module, folder: Path) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()},
              str(folder / ADAPTER_FILE))


def load_adapters(model: torch.nn.Module, folder: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = folder / ADAPTER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: {folder} was written by a run without LoRA; resume it with its "
                                "lora_rank 0, or pass another --out")
    device = next(model.parameters()).device
    result = set_peft_model_state_dict(model, load_file(str(path), device=str(device)))
    if result.unexpected_keys:
        raise ValueError(f"{path} does not match the adapters (unexpected {result.unexpected_keys}); resume with the "
                         "run's lora_rank and lora_targets")
