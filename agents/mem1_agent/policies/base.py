"""The one policy interface: a batch of contexts in, one sampled turn per context out.

Every backend (transformers, vLLM, an OpenAI-compatible server, the scripted oracle) implements
:meth:`Policy.generate`. A request carries the exact context token ids (built by a context
strategy with :attr:`Policy.codec`) and its text, the stop strings of this turn and a token budget;
the answer carries the generated ids *as sampled* and their log-probs where the backend knows them.
Generation always stops at the protocol's stop strings and EOS (reference/mem1.md §8, B6).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mem1_agent.records import FinishReason


@dataclass(frozen=True)
class SamplingConfig:
    """How a sampling backend draws tokens."""

    temperature: float = 1.0
    """Softmax temperature; 0 means greedy (arg-max) decoding."""
    top_p: float = 1.0
    """Nucleus sampling mass in (0, 1]; 1 disables it."""
    max_new_tokens: int = 512
    """Most tokens one turn may generate (a never-closed tag ends here as FinishReason.LENGTH)."""
    seed: int = 0
    """Seed of the sampler, so a rerun samples the same tokens."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class GenerationRequest:
    """One context to continue."""

    slot: int
    """Which env slot of the rollout this is (stateful policies such as the oracle key on it)."""
    context_ids: tuple[int, ...]
    """Exact token ids to continue (codec of the policy)."""
    context_text: str
    """The same context as text (what text-only servers receive)."""
    stop: tuple[str, ...]
    """Stop strings of this turn; the one matched stays in the output."""
    max_new_tokens: int
    observation: str
    """The latest observation alone (the oracle's input)."""
    turns_left: int
    """Turns left counting this one (1: the answer must come now)."""


@dataclass(frozen=True)
class Generation:
    """One sampled turn."""

    token_ids: tuple[int, ...]
    """Generated ids as sampled, EOS included when it was sampled."""
    text: str
    """The decoded text sent to the env (special tokens removed)."""
    logprobs: tuple[float, ...] | None
    """Log-prob of each id under the sampling distribution (temperature applied, before top-p)."""
    finish: FinishReason
    ids_as_sampled: bool
    """False when the ids were re-encoded from text (a server that returns no ids, the oracle)."""


class TokenCodec:
    """A Hugging Face tokenizer seen by the agent: encode/decode without special tokens, prompt rendering."""

    def __init__(self, tokenizer: Any, name: str, use_chat_template: bool | None = None) -> None:
        self.tokenizer = tokenizer
        self.name = name
        has_template = bool(getattr(tokenizer, "chat_template", None))
        self.use_chat_template = has_template if use_chat_template is None else use_chat_template
        eos = tokenizer.eos_token_id
        self.eos_ids: frozenset[int] = frozenset() if eos is None else frozenset([eos])
        self.pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def encode_prompt(self, prompt: str) -> tuple[int, ...]:
        """The task prompt as the model reads it: one user message with the assistant turn opened
        (all later turns continue that one assistant message, as MEM1 does; reference/mem1.md §1.2)."""
        if not self.use_chat_template:
            return self.encode(prompt)
        messages = [{"role": "user", "content": prompt}]
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # transformers 5 may return a BatchEncoding
            ids = ids["input_ids"]
        return tuple(ids)


class Policy(abc.ABC):
    """A batched text policy. Subclasses set ``name`` and ``codec``."""

    name: str
    codec: TokenCodec
    window: int | None = None
    """Most tokens (context + generation) the model can attend to; None if unknown."""

    @abc.abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """One turn per request, in order."""

    def start_episode(self, slot: int, env: Any) -> None:
        """Called after ``env.reset`` on ``slot``; only privileged policies (the oracle) look at env."""

    def close(self) -> None:
        """Release servers, engines or sessions."""
