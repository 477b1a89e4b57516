"""The OpenAI wire format of :mod:`mem1_agent.serve`: request checks, chat prompts, response choices.

Kept apart from the server so the format can be read (and tested) without FastAPI or a model.
Only what the OpenAI completions/chat APIs define, plus vLLM's ``stop_reason`` and
``return_tokens_as_token_ids`` (which the agent's own client understands).

Status codes: 400 for a body that is not a JSON object or asks for what the server does not do
(``stream``, ``n`` > 1), 404 for another model, 413 for a body over ``max_body_bytes``, 422 for a
field of the wrong type or out of range (``max_tokens: 0`` included: OpenAI rejects it too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mem1_agent.records import FinishReason

_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                 413: "invalid_request_error", 422: "invalid_request_error"}


@dataclass(frozen=True)
class RequestLimits:
    """What one request may send (issue 21: a 10 MB prompt held the server for 9.5 s)."""

    max_body_bytes: int = 4 * 2**20
    """Largest request body; more is refused with 413 before it is read (the largest prompt below,
    JSON-escaped, fits)."""
    max_prompt_chars: int = 500_000
    """Longest prompt (chat: all message contents) in characters, refused with 422 before it is
    tokenized: about 4x a 32k-token window, and about 0.7 s of tokenizing on one CPU core."""
    max_stop_strings: int = 16
    """Most stop strings (OpenAI takes 4; every decoding step checks each one)."""
    max_stop_chars: int = 200
    """Longest stop string (every decoding step decodes that many characters' worth of tokens)."""

    def __post_init__(self) -> None:
        if min(self.max_body_bytes, self.max_prompt_chars, self.max_stop_strings, self.max_stop_chars) < 1:
            raise ValueError("max_body_bytes, max_prompt_chars, max_stop_strings and max_stop_chars must be >= 1")


class RequestError(ValueError):
    """A bad request: answered with HTTP ``status`` and an OpenAI-style error body."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def error_body(message: str, status: int) -> dict:
    return {"error": {"message": message, "type": _STATUS_TYPES.get(status, "server_error"), "code": status}}


def check_body(body: dict, served_name: str, chat: bool, limits: RequestLimits) -> dict:
    """Reject what the server does not do, with the reason; return ``body`` unchanged."""
    model = body.get("model")
    if model not in (None, served_name):
        raise RequestError(f"the model {_shown(model)} does not exist; this server serves {served_name!r}", 404)
    if body.get("stream") not in (None, False):
        raise RequestError("stream=true is not supported; send the request without it")
    if number(body, "n", 1, low=1, integer=True) != 1:
        raise RequestError("only n=1 is supported; send n requests (the server batches them)")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(_is_message(m) for m in messages):
            raise RequestError("messages must be a non-empty list of {'role': ..., 'content': '...'} objects", 422)
        chars = sum(len(m["content"]) for m in messages)
    elif isinstance(body.get("prompt"), str):
        chars = len(body["prompt"])
    else:
        raise RequestError("prompt must be one string (send several requests for several prompts)", 422)
    if chars > limits.max_prompt_chars:
        raise RequestError(f"the prompt has {chars} characters; this server takes at most {limits.max_prompt_chars} "
                           "(its --max-prompt-chars): shorten it", 422)
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else [] if stop is None else None
    if stops is None or not all(isinstance(s, str) for s in stops):
        raise RequestError("stop must be a string or a list of strings", 422)
    if len(stops) > limits.max_stop_strings or any(len(s) > limits.max_stop_chars for s in stops):
        raise RequestError(f"stop takes at most {limits.max_stop_strings} strings of at most "
                           f"{limits.max_stop_chars} characters (the server's --max-stop-strings/--max-stop-chars)", 422)
    return body


def number(body: dict, key: str, default: float, low: float, high: float = math.inf, integer: bool = False) -> Any:
    """``body[key]`` (``default`` when absent or null) checked to be a number in [low, high]."""
    value = body.get(key)
    if value is None:
        return default
    kinds = (int,) if integer else (int, float)
    # bool is an int in Python, but true is no max_tokens; nan fails every comparison below
    if isinstance(value, bool) or not isinstance(value, kinds) or not (low <= value <= high and math.isfinite(value)):
        kind = "an integer" if integer else "a number"
        bound = f">= {low:g}" if high == math.inf else f"in {low:g}..{high:g}"
        raise RequestError(f"{key} must be {kind} {bound}, got {_shown(value)}", 422)
    return value


def _shown(value: Any) -> str:
    """A client's value in a message: repr, cut (it can be megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_message(message: Any) -> bool:
    return isinstance(message, dict) and isinstance(message.get("role"), str) and isinstance(message.get("content"), str)


def chat_prompt(messages: Sequence[dict]) -> str:
    """The prompt text of a chat for a tokenizer without a chat template: the contents joined by
    newlines (one user message is then exactly its content, as a completions prompt would be)."""
    return "\n".join(message["content"] for message in messages)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, str | None]:
    """``text`` before the earliest stop string, and that stop string (OpenAI's rule).

    >>> cut_at_stop("<search>x</search> more", ["</search>", "</answer>"])
    ('<search>x', '</search>')
    >>> cut_at_stop("no stop here", ["</search>"])
    ('no stop here', None)
    """
    hits = [(text.find(s), s) for s in stop if s and s in text]
    if not hits:
        return text, None
    at, matched = min(hits)
    return text[:at], matched


def completion_choice(generation: Any, stop: Sequence[str], codec: Any, chat: bool, token_ids: bool) -> dict:
    """One ``choices[0]`` entry for a :class:`~mem1_agent.policies.base.Generation`."""
    text, matched = cut_at_stop(generation.text, stop)
    finish = "length" if generation.finish is FinishReason.LENGTH and matched is None else "stop"
    tokens = [f"token_id:{i}" if token_ids else codec.decode([i]) for i in generation.token_ids]
    logprobs = list(generation.logprobs or ())
    if chat:
        content = [{"token": t, "logprob": lp, "bytes": None, "top_logprobs": []} for t, lp in zip(tokens, logprobs)]
        return {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": {"content": content},
                "finish_reason": finish, "stop_reason": matched}
    return {"index": 0, "text": text, "logprobs": {"tokens": tokens, "token_logprobs": logprobs},
            "finish_reason": finish, "stop_reason": matched}
