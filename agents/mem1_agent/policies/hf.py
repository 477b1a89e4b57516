"""Hugging Face transformers backend (CPU and CUDA): batched sampling with exact ids and log-probs.

A hand-written decoding loop rather than ``model.generate``: it returns, for every row, the ids as
sampled and ``log_softmax(logits / T)`` of each, stops a row at its own stop strings, EOS or token
budget, and keeps the other rows going. Contexts are left-padded with explicit position ids so a
row's logits do not depend on its neighbours (checked against a single-row forward pass in the tests).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mem1_agent.policies.base import (
    Generation,
    GenerationRequest,
    Policy,
    SamplingConfig,
    TokenCodec,
)
from mem1_agent.records import FinishReason


@dataclass(frozen=True)
class HFConfig:
    """Where and how a transformers model runs."""

    device: str = "auto"
    """"cpu", "cuda", "cuda:1" or "auto" (CUDA when available)."""
    max_batch: int = 32
    """Rows per forward pass; larger requests are split."""
    use_chat_template: bool | None = None
    """Render the task prompt with the tokenizer's chat template; None: when it has one."""

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")


class TransformersPolicy(Policy):
    """A causal LM loaded with ``from_pretrained`` (any folder :func:`mem1_agent.tiny.load_tokenizer` reads)."""

    def __init__(self, path: str | Path, sampling: SamplingConfig = SamplingConfig(), config: HFConfig = HFConfig()):
        import torch
        from transformers import AutoModelForCausalLM

        from mem1_agent.tiny import load_tokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"no model at {path} (config.json missing); build one with `mem1-agent make-tiny --out {path}`"
            )
        from mem1_agent.train.device import resolve_device  # one rule for rollouts and training

        self.device = resolve_device(config.device)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32  # fp32 on CPU: exact log-probs
        self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(self.device).eval()
        self.codec = TokenCodec(load_tokenizer(path), name=f"hf:{path.name}", use_chat_template=config.use_chat_template)
        self.name = f"hf:{path}"
        self.window = getattr(self.model.config, "max_position_embeddings", None)
        self.sampling = sampling
        self.config = config
        self._generator = torch.Generator(device=self.device).manual_seed(sampling.seed)

    @classmethod
    def from_model(cls, model: Any, codec: TokenCodec, sampling: SamplingConfig = SamplingConfig(),
                   config: HFConfig = HFConfig(), name: str = "hf:live") -> TransformersPolicy:
        """Sample from a model already in memory (the learner's current weights), without touching disk."""
        import torch

        policy = cls.__new__(cls)
        policy.model, policy.codec, policy.name, policy.sampling, policy.config = model, codec, name, sampling, config
        policy.device = next(model.parameters()).device
        policy.window = getattr(model.config, "max_position_embeddings", None)
        policy._generator = torch.Generator(device=policy.device).manual_seed(sampling.seed)
        return policy

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        out: list[Generation] = []
        for start in range(0, len(requests), self.config.max_batch):
            out += self._generate_batch(requests[start : start + self.config.max_batch])
        return out

    def _generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        import torch

        rows = len(requests)
        budgets = [min(r.max_new_tokens, self.sampling.max_new_tokens) for r in requests]
        input_ids, attention = _left_pad([r.context_ids for r in requests], self.codec.pad_id, self.device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # (B, T) real tokens count from 0
        tokens: list[list[int]] = [[] for _ in range(rows)]
        logprobs: list[list[float]] = [[] for _ in range(rows)]
        finish: list[FinishReason | None] = [None] * rows
        past = None
        cache_name = cache_argument(self.model)
        from mem1_agent.train.device import autocast

        # bf16 autocast on CUDA: the learner's fp32 module samples in bf16 with its KV cache (a bf16
        # checkpoint is unaffected); the learner recomputes every log-prob it trains on.
        with torch.inference_mode(), autocast(self.device):
            for _ in range(max(budgets)):
                output = self.model(
                    input_ids=input_ids, attention_mask=attention, position_ids=positions,
                    use_cache=True, **{cache_name: past},
                )
                past = getattr(output, cache_name)
                next_ids, next_logprobs = self._sample(output.logits[:, -1, :].float())  # (B,), (B,)
                for row in range(rows):
                    if finish[row] is None:
                        tokens[row].append(int(next_ids[row]))
                        logprobs[row].append(float(next_logprobs[row]))
                        finish[row] = self._finished(tokens[row], requests[row].stop, budgets[row])
                if all(f is not None for f in finish):
                    break
                input_ids = next_ids[:, None]  # (B, 1); finished rows run on but are ignored
                attention = torch.cat([attention, attention.new_ones(rows, 1)], dim=1)  # (B, T+1)
                positions = positions[:, -1:] + 1  # (B, 1)
        return [
            Generation(
                token_ids=tuple(ids),
                text=self.codec.decode(ids, skip_special_tokens=True),
                logprobs=tuple(lps),
                finish=reason,
                ids_as_sampled=True,
            )
            for ids, lps, reason in zip(tokens, logprobs, finish)
        ]

    def _sample(self, logits: Any) -> tuple[Any, Any]:
        """Draw one token per row; return it and its log-prob under softmax(logits / T) (T = 1 if greedy).

        The log-prob is taken before top-p truncation: that is the policy the learner recomputes.
        """
        import torch

        temperature = self.sampling.temperature or 1.0
        logp = torch.log_softmax(logits / temperature, dim=-1)  # (B, V)
        if self.sampling.temperature == 0:
            ids = logp.argmax(dim=-1)  # (B,)
        else:
            probs = logp.exp()
            if self.sampling.top_p < 1:
                probs = _top_p_filter(probs, self.sampling.top_p)
            ids = torch.multinomial(probs, 1, generator=self._generator).squeeze(1)  # (B,)
        return ids, logp.gather(1, ids[:, None]).squeeze(1)

    def _finished(self, ids: list[int], stop: Sequence[str], budget: int) -> FinishReason | None:
        if ids[-1] in self.codec.eos_ids:
            return FinishReason.EOS
        if stop:
            # A stop string of L ASCII characters spans at most L tokens, so the tail of L tokens
            # holds it as soon as it is complete; decoding only the tail keeps this O(1) per token.
            window = max(len(s) for s in stop)
            tail = self.codec.decode(ids[-window:])
            if any(s in tail for s in stop):
                return FinishReason.STOP
        return FinishReason.LENGTH if len(ids) >= budget else None


def cache_argument(model: Any) -> str:
    """The name of the KV cache in ``model.forward`` and in its output: ``cache`` since transformers 5.25
    (``past_key_values`` warns there, once per forward pass, and goes in 5.40), ``past_key_values``
    before (the GPU machines run 5.17)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft LoRA: the transformers model
    return _cache_argument_of(type(base))


@functools.lru_cache(maxsize=None)
def _cache_argument_of(model_class: type) -> str:
    # once per class: the layouts ask at every prefix-cache forward pass, the policy at every batch
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def _top_p_filter(probs: Any, top_p: float) -> Any:
    """Zero the tail of each row outside the smallest set of tokens holding ``top_p`` of the mass."""
    import torch

    sorted_probs, order = probs.sort(dim=-1, descending=True)  # (B, V)
    outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p  # the top token is always kept
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return torch.zeros_like(probs).scatter(1, order, sorted_probs)


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)
