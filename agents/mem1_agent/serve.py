"""An OpenAI-compatible server for a local transformers model: how other stacks reach our models.

    mem1-agent serve --model DIR                     # or: python -m mem1_agent.serve --model DIR
    curl http://127.0.0.1:8000/v1/completions -d '{"prompt": "Q: ...", "max_tokens": 32, "stop": ["</search>"]}'

Endpoints: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (non-streaming,
``n = 1``), ``GET /stats`` (requests served and ``generate`` calls made) and ``GET /health`` (no key
needed). Any folder :class:`~mem1_agent.policies.hf.TransformersPolicy` loads works: a
``save_pretrained`` checkpoint, a tiny model from ``mem1-agent make-tiny``, a hub snapshot on disk.

* **Batching**: requests that arrive within ``batch_window_ms`` of each other (up to ``max_batch``)
  are decoded in one ``generate`` call; rows with their own ``max_tokens`` and stop strings stop on
  their own. Requests with different temperature/top_p go in separate calls (one sampler each).
* **Stop strings** follow the OpenAI rule: the text ends before the matched stop string, which is
  reported as ``stop_reason`` (vLLM's field; the agent's OpenAI client restores it from there).
* **Exact ids**: ``"return_tokens_as_token_ids": true`` (vLLM's flag) returns log-prob tokens as
  ``token_id:N``, so a client can train on the ids as sampled.
* **Chat**: the tokenizer's chat template when it has one; otherwise the message contents are
  joined with newlines, so one user message is exactly a completions prompt (the tiny models have
  no template and the agent's chat client sends its whole context as one user message).
* ``seed`` is accepted and ignored: the sampler is seeded once when the server starts.
* **Limits** (:class:`~mem1_agent.serve_api.RequestLimits`, each a flag): a body over
  ``--max-body-bytes`` is refused with 413 before it is read, a prompt over ``--max-prompt-chars``
  with 422 before it is tokenized; fields of the wrong type or out of range get 422 with the reason.
  Parsing and tokenizing run off the event loop (the model's own thread tokenizes), so a large
  request never holds up ``/health`` or ``/v1/models``.

Binds 127.0.0.1 unless told otherwise: a model server should not be reachable from the network
by accident. When ``$MEM1_AGENT_API_KEY`` is set (or the variable ``--api-key-env`` names), every
request needs ``Authorization: Bearer <its value>``; a key is never taken on the command line,
where ``ps`` shows it to every user of the machine.
"""

# No ``from __future__ import annotations``: FastAPI resolves the endpoint annotations (``Request``,
# imported inside create_app to keep FastAPI optional) at definition time, and strings would not resolve.
import argparse
import asyncio
import dataclasses
import hmac
import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mem1_agent.keys import add_key_arguments, api_key
from mem1_agent.policies.base import Generation, GenerationRequest, SamplingConfig
from mem1_agent.serve_api import RequestError, RequestLimits, number

API_KEY_ENV = "MEM1_AGENT_API_KEY"


@dataclass(frozen=True)
class ServeConfig:
    """What to serve and where."""

    model: str
    """Model folder (``config.json`` + weights + tokenizer, or ``DIR/tokenizer/`` for tiny models)."""
    served_name: str | None = None
    """Model id clients send and /v1/models lists; None: the folder name."""
    host: str = "127.0.0.1"
    """Interface to bind; 0.0.0.0 exposes the model to the network."""
    port: int = 8000
    """TCP port."""
    device: str = "auto"
    """"cpu", "cuda", "cuda:1" or "auto"."""
    max_batch: int = 32
    """Most requests decoded in one generate call."""
    batch_window_ms: float = 10.0
    """How long the first request of a batch waits for company."""
    max_tokens_limit: int = 2048
    """Largest max_tokens a request may ask for."""
    default_max_tokens: int = 256
    """max_tokens when a request gives none."""
    api_key: str | None = field(default=None, repr=False)
    """If set, every request needs ``Authorization: Bearer <key>`` (the command reads it from the environment)."""
    limits: RequestLimits = RequestLimits()
    """Largest body, prompt and stop strings a request may send."""

    def __post_init__(self) -> None:
        if not (Path(self.model) / "config.json").is_file():
            raise FileNotFoundError(
                f"no model at {self.model} (config.json missing); build one with `mem1-agent make-tiny --out {self.model}`"
            )
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.max_batch < 1 or self.batch_window_ms < 0:
            raise ValueError("max_batch must be >= 1 and batch_window_ms >= 0")
        if not 1 <= self.default_max_tokens <= self.max_tokens_limit:
            raise ValueError(
                f"default_max_tokens ({self.default_max_tokens}) must be in 1..max_tokens_limit ({self.max_tokens_limit})"
            )

    @property
    def name(self) -> str:
        return self.served_name or Path(self.model).resolve().name


@dataclass(frozen=True)
class _Job:
    prompt_ids: tuple[int, ...]
    prompt_text: str
    stop: tuple[str, ...]
    max_tokens: int
    temperature: float
    top_p: float


class Batcher:
    """Collects concurrent jobs and decodes them in as few ``policy.generate`` calls as possible."""

    def __init__(self, policy: Any, max_batch: int, window_s: float) -> None:
        self.policy = policy
        self.max_batch = max_batch
        self.window_s = window_s
        self.stats = {"requests": 0, "generate_calls": 0, "largest_batch": 0}
        self._queue: asyncio.Queue | None = None
        # One worker thread: the model is not safe to call from two threads at once.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")

    async def on_model_thread(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on the thread that runs the model, so the event loop stays free while a long
        prompt is tokenized. Not another thread: a fast tokenizer used from two threads at once can
        raise "Already borrowed" (huggingface/tokenizers#537)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def submit(self, job: _Job) -> Generation:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((job, future))
        return await future

    async def run(self) -> None:
        """The batching loop (one task for the server's lifetime)."""
        self._queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.window_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time())))
                except TimeoutError:
                    break
            groups: dict[tuple[float, float], list] = {}
            for job, future in batch:
                groups.setdefault((job.temperature, job.top_p), []).append((job, future))
            for (temperature, top_p), items in groups.items():
                await self._decode(loop, temperature, top_p, items)

    async def _decode(self, loop, temperature: float, top_p: float, items: list) -> None:
        jobs = [job for job, _ in items]
        try:
            results = await loop.run_in_executor(self._executor, self._generate, temperature, top_p, jobs)
        except Exception as err:  # handed to every waiting request, which answers 500 with it
            results = [err] * len(items)
        self.stats["requests"] += len(items)
        self.stats["generate_calls"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(items))
        for (_, future), result in zip(items, results):
            if not future.done():
                future.set_exception(result) if isinstance(result, Exception) else future.set_result(result)

    def _generate(self, temperature: float, top_p: float, jobs: list[_Job]) -> list[Generation]:
        limit = max(job.max_tokens for job in jobs)
        self.policy.sampling = dataclasses.replace(
            self.policy.sampling, temperature=temperature, top_p=top_p, max_new_tokens=limit
        )
        requests = [
            GenerationRequest(
                slot=i, context_ids=job.prompt_ids, context_text=job.prompt_text, stop=job.stop,
                max_new_tokens=job.max_tokens, observation="", turns_left=1,
            )
            for i, job in enumerate(jobs)
        ]
        return self.policy.generate(requests)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def load_policy(config: ServeConfig) -> Any:
    from mem1_agent.policies.hf import HFConfig, TransformersPolicy

    sampling = SamplingConfig(max_new_tokens=config.max_tokens_limit)
    return TransformersPolicy(config.model, sampling, HFConfig(device=config.device, max_batch=config.max_batch))


def create_app(config: ServeConfig, policy: Any | None = None) -> Any:
    """The FastAPI app (``policy`` defaults to the transformers model of ``config.model``)."""
    import contextlib

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from mem1_agent.serve_api import chat_prompt, check_body, completion_choice, error_body

    policy = policy if policy is not None else load_policy(config)
    expected_key = f"Bearer {config.api_key}".encode() if config.api_key else None
    batcher = Batcher(policy, config.max_batch, config.batch_window_ms / 1000)
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        batcher.close()

    app = FastAPI(title=f"mem1-agent serve: {config.name}", lifespan=lifespan)

    @app.middleware("http")
    async def authorise(request: Request, call_next):
        sent = request.headers.get("authorization", "").encode()
        if expected_key and request.url.path != "/health" and not hmac.compare_digest(sent, expected_key):
            return JSONResponse(error_body("missing or wrong API key; send Authorization: Bearer KEY", 401), 401)
        return await call_next(request)

    @app.exception_handler(RequestError)
    async def request_error(_request, err: RequestError):
        return JSONResponse(error_body(str(err), err.status), err.status)

    @app.get("/v1/models")
    async def models():
        card = {"id": config.name, "object": "model", "created": created, "owned_by": "mem1-agent"}
        return {"object": "list", "data": [card]}

    @app.get("/stats")
    async def stats():
        return batcher.stats

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    async def complete(body: dict, prompt_text: str, chat: bool) -> dict:
        sampling = _sampling(body, config)  # checked before the prompt costs any tokenizing
        prompt_ids = await batcher.on_model_thread(_encode, policy, prompt_text, body, chat)
        job = _job(sampling, prompt_ids, prompt_text, policy.window)
        generation = await batcher.submit(job)
        choice = completion_choice(generation, job.stop, policy.codec, chat, bool(body.get("return_tokens_as_token_ids")))
        usage = {"prompt_tokens": len(prompt_ids), "completion_tokens": len(generation.token_ids)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        kind = "chat.completion" if chat else "text_completion"
        prefix = "chatcmpl" if chat else "cmpl"
        return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
                "model": config.name, "choices": [choice], "usage": usage}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = check_body(await _json(request, config.limits.max_body_bytes), config.name, False, config.limits)
        return await complete(body, body["prompt"], chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = check_body(await _json(request, config.limits.max_body_bytes), config.name, True, config.limits)
        return await complete(body, chat_prompt(body["messages"]), chat=True)

    return app


async def _json(request: Any, max_bytes: int) -> dict:
    """The body as a JSON object, read up to ``max_bytes`` and parsed off the event loop."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > max_bytes:
            raise RequestError(f"the request body is over {max_bytes} bytes (the server's --max-body-bytes)", 413)
    try:
        body = await asyncio.to_thread(json.loads, bytes(data))
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise RequestError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def _encode(policy: Any, prompt_text: str, body: dict, chat: bool) -> tuple[int, ...]:
    codec = policy.codec
    if chat and codec.use_chat_template:
        ids = codec.tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # transformers 5 may return a BatchEncoding
            ids = ids["input_ids"]
        return tuple(ids)
    return codec.encode(prompt_text)


class _Sampling(NamedTuple):
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]


def _sampling(body: dict, config: ServeConfig) -> _Sampling:
    """How a request wants to be sampled, checked."""
    # "is not None", not "or": max_tokens 0 used to fall through to the default (issue 21)
    key = "max_tokens" if body.get("max_tokens") is not None else "max_completion_tokens"
    max_tokens = number(body, key, config.default_max_tokens, low=1, integer=True)
    if max_tokens > config.max_tokens_limit:
        raise RequestError(
            f"{key} must be at most {config.max_tokens_limit} (the server's --max-tokens-limit), got {max_tokens}", 422
        )
    temperature = float(number(body, "temperature", 1.0, low=0))
    top_p = float(number(body, "top_p", 1.0, low=0, high=1))
    try:
        SamplingConfig(temperature=temperature, top_p=top_p)
    except ValueError as err:
        raise RequestError(str(err), 422) from None
    stop = body.get("stop") or ()
    return _Sampling(max_tokens, temperature, top_p, (stop,) if isinstance(stop, str) else tuple(stop))


def _job(sampling: _Sampling, prompt_ids: tuple[int, ...], prompt_text: str, window: int | None) -> _Job:
    max_tokens, temperature, top_p, stop = sampling
    if not prompt_ids:
        raise RequestError("the prompt is empty", 422)
    if window is not None and len(prompt_ids) + max_tokens > window:
        raise RequestError(
            f"the prompt has {len(prompt_ids)} tokens; with max_tokens={max_tokens} it exceeds the model's "
            f"window of {window}: shorten the prompt or lower max_tokens", 422,
        )
    return _Job(prompt_ids, prompt_text, stop, max_tokens, temperature, top_p)


# --------------------------------------------------------------------------- command line


def add_serve_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to an argparse subparsers object; the parsed args go to :func:`cmd_serve`."""
    parser = subparsers.add_parser("serve", help="serve a local model over an OpenAI-compatible HTTP API "
                                                 f"(API key, if any, from ${API_KEY_ENV})")
    _add_arguments(parser)
    parser.set_defaults(func=cmd_serve)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(ServeConfig)}
    parser.add_argument("--model", required=True, help="model folder (save_pretrained format)")
    parser.add_argument("--served-name", default=None, help="model id clients use (default: the folder name)")
    parser.add_argument("--host", default=defaults["host"], help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=defaults["port"])
    parser.add_argument("--device", default=defaults["device"], help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--max-batch", type=int, default=defaults["max_batch"], help="requests per generate call")
    parser.add_argument("--batch-window-ms", type=float, default=defaults["batch_window_ms"],
                        help="how long a request waits for others to batch with")
    parser.add_argument("--max-tokens-limit", type=int, default=defaults["max_tokens_limit"],
                        help="largest max_tokens a request may ask for (default %(default)s)")
    limits = RequestLimits()
    for name, help_text in (("max_body_bytes", "largest request body; more gets 413"),
                            ("max_prompt_chars", "longest prompt in characters; more gets 422"),
                            ("max_stop_strings", "most stop strings per request"),
                            ("max_stop_chars", "longest stop string")):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(limits, name),
                            help=f"{help_text} (default %(default)s)")
    add_key_arguments(parser, API_KEY_ENV, "that every request must send as Authorization: Bearer KEY")


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted."""
    import uvicorn

    limits = RequestLimits(max_body_bytes=args.max_body_bytes, max_prompt_chars=args.max_prompt_chars,
                           max_stop_strings=args.max_stop_strings, max_stop_chars=args.max_stop_chars)
    config = ServeConfig(
        model=args.model, served_name=args.served_name, host=args.host, port=args.port, device=args.device,
        max_batch=args.max_batch, batch_window_ms=args.batch_window_ms, max_tokens_limit=args.max_tokens_limit,
        default_max_tokens=min(ServeConfig.default_max_tokens, args.max_tokens_limit), api_key=api_key(args, API_KEY_ENV),
        limits=limits,
    )
    app = create_app(config)
    keyed = f" (requests need Authorization: Bearer ${args.api_key_env or API_KEY_ENV})" if config.api_key else ""
    print(f"serving {config.name} on http://{config.host}:{config.port}/v1{keyed}", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mem1_agent.serve", description=__doc__.split("\n")[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_serve(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"mem1-agent serve: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
