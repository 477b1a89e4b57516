"""Any OpenAI-compatible HTTP server (vLLM, SGLang, llama.cpp, OpenAI itself): completions or chat.

* ``completions``: the context text is sent as the raw prompt, as MEM1's inference client does
  (reference/mem1.md §1.4). Use it with base models and with ``vllm serve``.
* ``chat``: the whole context is one user message (MEM1's full-context baseline did the same), so
  chat-only APIs can play; the server applies its own chat template.

Servers strip the matched stop string from the text; it is put back (the protocol needs the closing
tag), taken from vLLM's ``stop_reason`` when present, else from the action tag left open. Token ids
are exact only when the server returns them (``request_token_ids=True`` asks vLLM for
``token_id:N`` tokens); otherwise the text is encoded with the counting tokenizer and the turn is
recorded with ``ids_as_sampled=False`` and no log-probs. The API key comes from the config or
``OPENAI_API_KEY`` and is sent only in the Authorization header, never logged or stored.
Requests go through :mod:`mem1_gym.http` (urllib3 retries with backoff on connection errors, timeouts,
429 and 5xx, Retry-After obeyed up to 8 s; capped answers; one error type, a ``RuntimeError``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mem1_agent.policies.base import (
    Generation,
    GenerationRequest,
    Policy,
    SamplingConfig,
    TokenCodec,
)
from mem1_agent.keys import OPENAI_KEY_ENV
from mem1_agent.records import FinishReason
from mem1_gym import protocol
from mem1_gym.http import HttpClient, HttpConfig, HttpError

_TOKEN_ID_RE = re.compile(r"\Atoken_id:(\d+)\Z")


@dataclass(frozen=True)
class OpenAIConfig:
    """How to reach the server."""

    base_url: str
    """Server root with the version, e.g. http://127.0.0.1:8000/v1."""
    model: str | None = None
    """Served model name; None: the first one the server lists at /models."""
    api: str = "completions"
    """"completions" (raw text prompt) or "chat" (the context as one user message)."""
    api_key: str | None = field(default=None, repr=False)
    """Bearer key; None: $OPENAI_API_KEY (servers without auth accept anything)."""
    timeout: float = 120.0
    """Seconds per request."""
    concurrency: int = 16
    """Requests in flight at once."""
    retries: int = 2
    """Extra attempts after a connection error, a timeout, HTTP 429 or a 5xx answer."""
    request_token_ids: bool = False
    """Ask for sampled token ids (vLLM's return_tokens_as_token_ids); other servers may reject it."""

    def __post_init__(self) -> None:
        if self.api not in ("completions", "chat"):
            raise ValueError(f"api must be 'completions' or 'chat', got {self.api!r}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.concurrency < 1 or self.retries < 0 or self.timeout <= 0:
            raise ValueError("concurrency must be >= 1, retries >= 0 and timeout > 0")


class OpenAIPolicy(Policy):
    """Text in, text out over HTTP; checked for reachability when constructed."""

    def __init__(self, config: OpenAIConfig, codec: TokenCodec, sampling: SamplingConfig = SamplingConfig()) -> None:
        self.config = config
        self.codec = codec
        self.sampling = sampling
        key = config.api_key or os.environ.get(OPENAI_KEY_ENV)
        self._client = HttpClient(
            HttpConfig(timeout=config.timeout, retries=config.retries),
            headers={"Authorization": f"Bearer {key or 'EMPTY'}"},  # servers without auth accept anything
            secrets=(key,),
            pool_size=config.concurrency,
        )
        self._root = config.base_url.rstrip("/")
        self.model = config.model or self._first_model()
        self.name = f"openai-{config.api}:{self._root}:{self.model}"

    def _first_model(self) -> str:
        models = self._get_models()
        if not models:
            raise RuntimeError(f"{self._root}/models lists no model; pass one: --policy openai:{self._root}:MODEL")
        return models[0]

    def check(self) -> None:
        """Fail now, with the remedy, if the server is unreachable or does not serve the model."""
        models = self._get_models()
        if models and self.model not in models:
            raise RuntimeError(f"{self._root} serves {models}, not {self.model!r}; fix the model name in --policy")

    def _get_models(self) -> list[str]:
        url = f"{self._root}/models"
        try:
            reply = self._client.request("GET", url, what=url, timeout=min(self.config.timeout, 10))
        except HttpError as err:
            raise RuntimeError(
                f"cannot reach the OpenAI-compatible server at {self._root} ({err.cause}); start it "
                f"(e.g. `vllm serve MODEL --port 8000`) or fix the URL in --policy / $OPENAI_BASE_URL"
            ) from None
        if reply.status in (401, 403):
            raise RuntimeError(f"{self._root} rejected the API key (HTTP {reply.status}); set $OPENAI_API_KEY")
        if not 200 <= reply.status < 300:
            raise RuntimeError(f"{url} answered HTTP {reply.status}; is this an OpenAI-compatible /v1 URL?")
        body = self._client.json(reply, url)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            return []
        return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        with ThreadPoolExecutor(max_workers=min(self.config.concurrency, max(1, len(requests)))) as pool:
            return list(pool.map(self._one, requests))

    def _one(self, request: GenerationRequest) -> Generation:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": min(request.max_new_tokens, self.sampling.max_new_tokens),
            "temperature": self.sampling.temperature,
            "top_p": self.sampling.top_p,
            "stop": list(request.stop),
            "seed": self.sampling.seed,
            "logprobs": True if self.config.api == "chat" else 1,
        }
        if self.config.api == "chat":
            body["messages"] = [{"role": "user", "content": request.context_text}]
        else:
            body["prompt"] = request.context_text
        if self.config.request_token_ids:
            body["return_tokens_as_token_ids"] = True
        choice = self._post(f"{self._root}/{'chat/completions' if self.config.api == 'chat' else 'completions'}", body)
        return self._to_generation(choice, request.stop)

    def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """The first choice of a completion; :class:`~mem1_gym.http.HttpError` (a RuntimeError) on any failure."""
        reply = self._client.request("POST", url, what=url, json=body)
        if not 200 <= reply.status < 300:
            raise RuntimeError(f"{url} answered HTTP {reply.status}: {self._client.redact(reply.text[:300])}")
        answer = self._client.json(reply, url)
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise RuntimeError(f"{url} answered without a choice: {self._client.redact(reply.text[:300])!r}")
        return choices[0]

    def _to_generation(self, choice: dict[str, Any], stop: Sequence[str]) -> Generation:
        if self.config.api == "chat":
            text = choice["message"]["content"] or ""
            entries = (choice.get("logprobs") or {}).get("content") or []
            tokens, logprobs = [e["token"] for e in entries], [e["logprob"] for e in entries]
        else:
            text = choice["text"]
            lp = choice.get("logprobs") or {}
            tokens, logprobs = lp.get("tokens") or [], lp.get("token_logprobs") or []
        finish = FinishReason.LENGTH if choice.get("finish_reason") == "length" else FinishReason.STOP
        if finish is FinishReason.STOP:
            matched = _matched_stop(text, stop, choice.get("stop_reason"))
            finish = FinishReason.STOP if matched else FinishReason.EOS
            if matched and not text.endswith(matched):
                text += matched
        ids = [_token_id(t) for t in tokens]
        if tokens and all(i is not None for i in ids):
            return Generation(tuple(ids), text, tuple(float(x) for x in logprobs), finish, ids_as_sampled=True)
        return Generation(self.codec.encode(text), text, None, finish, ids_as_sampled=False)

    def close(self) -> None:
        self._client.close()


def _token_id(token: str) -> int | None:
    match = _TOKEN_ID_RE.match(token)
    return int(match.group(1)) if match else None


def _matched_stop(text: str, stop: Sequence[str], stop_reason: Any) -> str | None:
    """Which stop string ended the text: the server's word (vLLM), else the action tag left open."""
    if isinstance(stop_reason, str) and stop_reason in stop:
        return stop_reason
    if any(text.endswith(s) for s in stop):
        return next(s for s in stop if text.endswith(s))
    open_at = {s: text.rfind(protocol.open_tag(s[2:-1])) for s in stop if s.startswith("</") and s.endswith(">")}
    best = max(open_at, key=open_at.get, default=None)
    return best if best is not None and open_at[best] >= 0 else None
