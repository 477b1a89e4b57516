"""Next-token pretraining on plain text: what a randomly initialised model reads before it clones the oracle.

A real MEM1 run starts from a pretrained LLM that already reads, and copies names from its
context. A tiny model built from scratch has neither skill, and behaviour cloning alone, with loss
on the agent's few sampled tokens per turn, is a slow way to learn them. A few CPU minutes of
language modelling on the env's own corpus (every token carries loss, and a passage repeats its
subject's name several times) teaches the token statistics and some copying first; the demo's
SFT then starts from there. Nothing here is needed for a real checkpoint.

>>> stream = pack(["Ada was born in Tarsen."], tokenizer)            # doctest: +SKIP
>>> losses = pretrain(model, stream, PretrainConfig(max_steps=100))  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from mem1_agent.train.device import autocast, resolve_device
from mem1_agent.train.optim import adamw_with_warmup, clipped_step


@dataclass(frozen=True)
class PretrainConfig:
    """Hyper-parameters of language-model pretraining on a packed token stream."""

    seq_len: int = 256
    """Tokens per training window (a window may span documents; EOS separates them)."""
    batch_size: int = 16
    """Windows per optimizer step."""
    lr: float = 3e-3
    """AdamW learning rate after warm-up."""
    warmup_steps: int = 20
    """Optimizer steps of linear warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    max_steps: int = 1000
    """Most optimizer steps."""
    max_minutes: float | None = None
    """Stop after the step that crosses this wall time (None: run ``max_steps``)."""
    seed: int = 0
    """Seed of the window draw."""
    device: str = "auto"
    """"auto", "cpu" or "cuda"."""

    def __post_init__(self) -> None:
        if self.seq_len < 2 or self.batch_size < 1 or self.max_steps < 1:
            raise ValueError("need seq_len >= 2, batch_size >= 1 and max_steps >= 1")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError("need lr > 0 and warmup_steps >= 0")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0 or None, got {self.max_minutes}")


def corpus_texts(limit: int | None = None) -> Iterator[str]:
    """Passages of the synthetic world's corpus (the knowledge base of ``MEM1-MultiHopQA-N``), in file order."""
    from mem1_gym.data.synthetic import WorldConfig, ensure_world

    with open(ensure_world(WorldConfig()).corpus_path, encoding="utf-8") as fh:
        for line in itertools.islice(fh, limit):
            yield json.loads(line)["contents"]


def pack(texts: Iterable[str], tokenizer: Any) -> torch.Tensor:
    """One 1-D stream of token ids: each text's ids followed by EOS (the document boundary)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id to separate documents; set one")
    ids: list[int] = []
    for ids_of_text in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        ids += ids_of_text
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def pretrain(model: torch.nn.Module, stream: torch.Tensor, config: PretrainConfig,
             log: Callable[[dict], None] | None = None) -> list[float]:
    """Train ``model`` in place on random ``seq_len`` windows of ``stream``; returns each step's mean NLL per token."""
    if stream.dim() != 1 or len(stream) <= config.seq_len:
        raise ValueError(f"need a 1-D stream longer than seq_len={config.seq_len} tokens, got shape "
                         f"{tuple(stream.shape)}; pack more text or lower seq_len")
    device = resolve_device(config.device)
    model.to(device).train()
    optimizer, scheduler = adamw_with_warmup(model.parameters(), config.lr, config.weight_decay, config.warmup_steps)
    generator = torch.Generator().manual_seed(config.seed)
    offsets = torch.arange(config.seq_len + 1)
    deadline = None if config.max_minutes is None else time.perf_counter() + 60 * config.max_minutes
    losses: list[float] = []
    for step in range(config.max_steps):
        starts = torch.randint(len(stream) - config.seq_len, (config.batch_size, 1), generator=generator)
        window = stream[starts + offsets].to(device)  # (B, seq_len + 1)
        with autocast(device):
            logits = model(input_ids=window[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), window[:, 1:].flatten())
        loss.backward()
        clipped_step(model.parameters(), optimizer, scheduler, config.max_grad_norm)
        losses.append(loss.item())
        if log is not None:
            log({"step": step + 1, "nll": losses[-1], "lr": scheduler.get_last_lr()[0]})
        if deadline is not None and time.perf_counter() > deadline:
            break
    model.eval()
    return losses
