"""The OpenAI wire format of :mod:`mem1_agent.serve`: request checks, chat prompts, response choices.

Kept apart from the server so the format can be read (and tested) without FastAPI or a model.
Only what the OpenAI completions/chat APIs define, plus vLLM's ``stop_reason`` and
``return_tokens_as_token_ids`` (which the agent's own client understands).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mem1_agent.records import FinishReason

_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}


class RequestError(ValueError):
    """A bad request: answered with HTTP ``status`` and an OpenAI-style error body."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def error_body(message: str, status: int) -> dict:
    return {"error": {"message": message, "type": _STATUS_TYPES.get(status, "server_error"), "code": status}}


def check_body(body: dict, served_name: str, chat: bool) -> dict:
    """Reject what the server does not do, with the reason; return ``body`` unchanged."""
    model = body.get("model")
    if model not in (None, served_name):
        raise RequestError(f"the model {model!r} does not exist; this server serves {served_name!r}", 404)
    if body.get("stream"):
        raise RequestError("stream=true is not supported; send the request without it")
    if int(body.get("n") or 1) != 1:
        raise RequestError("only n=1 is supported; send n requests (the server batches them)")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(_is_message(m) for m in messages):
            raise RequestError("messages must be a non-empty list of {'role': ..., 'content': '...'} objects")
    elif not isinstance(body.get("prompt"), str):
        raise RequestError("prompt must be one string (send several requests for several prompts)")
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))):
        raise RequestError("stop must be a string or a list of strings")
    return body


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
