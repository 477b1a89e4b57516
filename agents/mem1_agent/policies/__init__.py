"""Policy backends behind one interface, and the ``--policy`` spec that picks one.

Specs (what users type after ``--policy``)::

    oracle                                   the scripted oracle (no model)
    hf:/path/to/dir                          transformers, CPU or CUDA (alias: transformers:)
    vllm:Qwen/Qwen2.5-7B-Instruct            vLLM on a GPU
    openai:http://127.0.0.1:8000/v1:MODEL    OpenAI-compatible completions (MODEL optional)
    openai-chat:https://api.openai.com/v1:gpt-4o-mini
    openai:MODEL                             base URL from $OPENAI_BASE_URL

Every backend is checked when built (model folder present, server reachable, vLLM importable),
so a bad spec fails before any env or episode starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from mem1_agent.policies.base import (
    Generation,
    GenerationRequest,
    Policy,
    SamplingConfig,
    TokenCodec,
)

__all__ = [
    "Generation",
    "GenerationRequest",
    "Policy",
    "PolicySpec",
    "SamplingConfig",
    "TokenCodec",
    "make_policy",
    "parse_policy_spec",
]

BACKENDS = ("oracle", "hf", "vllm", "openai", "openai-chat")
_URL_MODEL_RE = re.compile(r"\A(https?://[^/:\s]+(?::\d+)?(?:/[^:\s]*)?)(?::(.+))?\Z")


@dataclass(frozen=True)
class PolicySpec:
    """A parsed ``--policy`` value."""

    backend: str
    """One of BACKENDS."""
    target: str = ""
    """Model folder (hf), model name (vllm), or base URL (openai)."""
    model: str | None = None
    """Served model name (openai); None: ask the server."""


def parse_policy_spec(spec: str) -> PolicySpec:
    """``"openai:http://h:8000/v1:m"`` -> PolicySpec("openai", "http://h:8000/v1", "m")."""
    backend, _, rest = spec.partition(":")
    backend = {"transformers": "hf"}.get(backend, backend)
    if backend not in BACKENDS:
        raise ValueError(f"unknown policy backend {backend!r} in {spec!r}; use one of {', '.join(BACKENDS)}")
    if backend == "oracle":
        return PolicySpec("oracle")
    if not rest:
        raise ValueError(f"--policy {backend}: needs a target, e.g. {backend}:{_EXAMPLES[backend]}")
    if backend in ("hf", "vllm"):
        return PolicySpec(backend, rest)
    match = _URL_MODEL_RE.match(rest)
    if match:
        return PolicySpec(backend, match.group(1), match.group(2))
    base = os.environ.get("OPENAI_BASE_URL")
    if not base:
        raise ValueError(f"--policy {spec}: no URL given and $OPENAI_BASE_URL is unset; use {backend}:{_EXAMPLES[backend]}")
    return PolicySpec(backend, base, rest)


_EXAMPLES = {"hf": "/path/to/model", "vllm": "Qwen/Qwen2.5-7B-Instruct", "openai": "http://127.0.0.1:8000/v1:MODEL",
             "openai-chat": "http://127.0.0.1:8000/v1:MODEL"}


def make_policy(
    spec: str | PolicySpec,
    sampling: SamplingConfig = SamplingConfig(),
    *,
    tokenizer: str | None = None,
    device: str = "auto",
    max_batch: int = 32,
    api_key: str | None = None,
) -> Policy:
    """Build and check the policy named by ``spec``.

    ``tokenizer`` (a folder) counts tokens for text policies (oracle, HTTP servers); None: the
    locally trained tokenizer of :func:`mem1_agent.tiny.counting_tokenizer`.
    """
    spec = parse_policy_spec(spec) if isinstance(spec, str) else spec
    if spec.backend == "hf":
        from mem1_agent.policies.hf import HFConfig, TransformersPolicy

        return TransformersPolicy(spec.target, sampling, HFConfig(device=device, max_batch=max_batch))
    if spec.backend == "vllm":
        from mem1_agent.policies.vllm_backend import VLLMPolicy, require_vllm

        require_vllm()
        return VLLMPolicy(spec.target, sampling)
    codec = counting_codec(tokenizer)
    if spec.backend == "oracle":
        from mem1_agent.policies.oracle import OraclePolicy

        return OraclePolicy(codec)
    from mem1_agent.policies.openai_http import OpenAIConfig, OpenAIPolicy

    api = "chat" if spec.backend == "openai-chat" else "completions"
    config = OpenAIConfig(base_url=spec.target, model=spec.model, api=api, api_key=api_key, concurrency=max_batch)
    policy = OpenAIPolicy(config, codec, sampling)
    policy.check()
    return policy


def counting_codec(tokenizer: str | None) -> TokenCodec:
    """The tokenizer that counts a text policy's tokens: a folder, or the locally trained one."""
    from mem1_agent import tiny

    if tokenizer is None:
        return TokenCodec(tiny.counting_tokenizer(), name="local-bpe-2048 (trained on the synthetic world)")
    return TokenCodec(tiny.load_tokenizer(tokenizer), name=f"tokenizer:{tokenizer}")

