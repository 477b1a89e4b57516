"""``mem1-gym serve-env``: registered env ids over HTTP, one env per session (FastAPI + uvicorn).

Routes (JSON in and out; every one needs ``Authorization: Bearer <token>`` when the server has a token):

* ``POST /sessions`` ``{"env_id", "kwargs", "seed", "options"}``: make the env, reset it with
  ``seed``/``options``; answers 201 ``{"session", "spec", "observation", "info"}``. ``spec`` holds
  the spaces, ``metadata``, the env's protocol (family, stop strings, task ids) and the limits.
* ``POST /sessions/{id}/reset`` ``{"call", "seed", "options"}`` and ``POST /sessions/{id}/step``
  ``{"call", "action"}``: ``call`` counts the session's requests (1, 2, ...). A repeated ``call``
  gets the stored answer of the first, so a client that retries after a lost answer never steps twice.
* ``DELETE /sessions/{id}``: close the env. ``GET /health``: the ids served, sessions open, limits.

``info`` travels through :mod:`mem1_gym.remote.wire`, so the client's ``info`` equals the local env's.
An env that raises in ``reset`` or ``step`` is an answer too, ``{"error": "the env failed in step: ..."}``
(stored for a repeat like any other); a seed or option the env refuses is a 422 with its message.

Limits (:class:`EnvServerConfig` fields and ``serve-env`` flags), each with an answer that says what to change:
at most ``max_sessions`` sessions (``--max-sessions``, 64: one more gets 429); a session unused for
``idle_timeout_s`` (``--idle-timeout``, 600 s) is closed, its browser too (then 404: the client's
next ``reset`` opens a new session); a body over ``max_body_bytes`` (``--max-body-bytes``, 2 MiB)
gets 413, an action over ``max_action_chars`` (``--max-action-chars``, 262,144: a 64k-token turn)
413 too. A client may set only the kwargs of :data:`CLIENT_KWARGS`; the others name files, indexes,
URLs or resources of this machine, so only the operator sets them (``--env-kwargs``). It binds 127.0.0.1 unless
told otherwise; the token, if any, is read from the environment variable ``token_env``
(``--token-env``, default ``MEM1_GYM_ENV_TOKEN``), never from the command line.

Sessions live in this one process (they hold envs), so the server has no ``--workers``; envs that
compute in Python (MultiHopQA's BM25) share its GIL, browser envs mostly wait on Chromium.
"""

# No `from __future__ import annotations`: FastAPI must see the request model classes, not strings.

import contextlib
import hmac
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import gymnasium as gym

import mem1_gym  # registers the ids
from mem1_gym.remote.sessions import OutOfOrder, Session, SessionGone, SessionPool, SessionsFull
from mem1_gym.remote.wire import TOKEN_ENV, dumps, encode, protocol_to_wire, space_to_wire
from mem1_gym.serving import BodyLimit, bind, problem, socket_url

CLIENT_KWARGS = frozenset({"split", "max_turns", "reward", "reward_scale", "invalid_action_penalty", "prompt_format",
                           "search_from_any_page"})
"""``gym.make`` kwargs a client may set: they change the episode, not what the server opens or reaches."""
_MIN_THREADS = 40  # anyio's default: threads that run the (blocking) env calls


@dataclass(frozen=True)
class EnvServerConfig:
    """What ``serve-env`` serves and how much it lets clients hold."""

    env_ids: tuple[str, ...]
    """The registered ids a client may open (``--env``, repeatable)."""
    env_kwargs: dict = field(default_factory=dict)
    """``gym.make`` kwargs of every session (``--env-kwargs`` JSON): paths, indexes, providers."""
    max_sessions: int = 64
    """Sessions open at once (each holds an env; a browser env holds a Chromium of ~150 MB)."""
    idle_timeout_s: float = 600.0
    """A session unused this long is closed: a trainer that died frees its envs. Between episodes it
    costs nothing (the client's next reset opens a new session); mid-episode the episode ends."""
    max_body_bytes: int = 2 << 20
    """Largest request body (an action of ``max_action_chars`` characters fits, JSON escapes included)."""
    max_action_chars: int = 1 << 18
    """Longest action: a 64k-token model turn; the envs read only up to the first action block."""
    token_env: str = TOKEN_ENV
    """Environment variable with the bearer token clients must send; unset or empty: no auth."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "env_ids", tuple(self.env_ids))
        if not self.env_ids:
            raise ValueError("give at least one env id to serve (--env MEM1-WebShop)")
        unknown = [env_id for env_id in self.env_ids if env_id not in gym.registry]
        if unknown:
            raise ValueError(f"not registered: {', '.join(unknown)}; serve one of {', '.join(mem1_gym.ENV_IDS)}")
        for name in ("max_sessions", "max_body_bytes", "max_action_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} (--{name.replace('_', '-')}) must be >= 1, got {getattr(self, name)}")
        if not self.idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s (--idle-timeout) must be > 0 seconds, got {self.idle_timeout_s}")

    @property
    def token(self) -> str:
        return os.environ.get(self.token_env, "").strip()

    def limits(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("env_ids", "env_kwargs", "token_env")}


def spec_of(env: gym.Env, config: EnvServerConfig) -> dict:
    """What a client needs to mirror ``env``: its spaces, metadata, protocol and the server's action limit."""
    return {
        "observation_space": space_to_wire(env.observation_space),
        "action_space": space_to_wire(env.action_space),
        "metadata": encode(dict(env.metadata)),
        "protocol": protocol_to_wire(getattr(env.unwrapped, "protocol", None)),
        "max_action_chars": config.max_action_chars,
    }


def create_app(config: EnvServerConfig):
    """The FastAPI app of :mod:`mem1_gym.remote.server` (sessions close with the app)."""
    import anyio.to_thread
    from fastapi import Depends, FastAPI, Header, HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr

    scalar = StrictStr | StrictInt | StrictFloat | StrictBool | None
    flat = Annotated[dict[Annotated[StrictStr, Field(max_length=100)], scalar], Field(max_length=32)]

    class CreateRequest(BaseModel):
        env_id: Annotated[StrictStr, Field(max_length=200)]
        kwargs: flat = Field(default_factory=dict)
        seed: StrictInt | None = None
        options: flat | None = None

    class ResetRequest(BaseModel):
        call: Annotated[StrictInt, Field(ge=1)]
        seed: StrictInt | None = None
        options: flat | None = None

    class StepRequest(BaseModel):
        call: Annotated[StrictInt, Field(ge=1)]
        action: scalar  # not only str: a local env answers a non-str action with an invalid-action observation

    token = config.token
    pool = SessionPool(config.max_sessions, config.idle_timeout_s, config.env_kwargs)

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        if not hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, f"send Authorization: Bearer <token> with the token in the server's "
                                     f"{config.token_env}", headers={"WWW-Authenticate": "Bearer"})

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        # Every session may be in a blocking env call at once (a browser step waits on Chromium).
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(_MIN_THREADS, config.max_sessions + 8)
        yield
        pool.close_all()

    app = FastAPI(title="mem1-gym env server", description=__doc__, lifespan=lifespan,
                  dependencies=[Depends(authorized)] if token else [])  # every route, /health too
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)

    @app.exception_handler(RequestValidationError)  # FastAPI's own 422 echoes the request
    async def invalid_request(_request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": "; ".join(problem(e) for e in err.errors()[:3])})

    def gone() -> HTTPException:
        return HTTPException(404, f"no such session: it was closed, closed after {config.idle_timeout_s:g} s unused "
                                  f"(--idle-timeout), or the server restarted; reset() opens a new one")

    def session(session_id: str) -> Session:
        try:
            return pool.get(session_id)
        except SessionGone:
            raise gone() from None

    def run(target: Session, call: int, act: Callable[[], dict]) -> Response:
        try:
            return Response(target.run(call, act), media_type="application/json")
        except SessionGone:
            raise gone() from None
        except OutOfOrder as err:
            raise HTTPException(409, str(err)) from None

    def answer(info: dict, **fields: Any) -> dict:
        try:
            return {**fields, "info": encode(info)}
        except TypeError as err:  # an env that reports a value JSON cannot carry: the episode ends, saying which
            return {"error": f"the env's info cannot be sent: {err}"}

    def reset(env: gym.Env, seed: int | None, options: dict | None) -> dict:
        try:
            observation, info = env.reset(seed=seed, options=options)
        except (ValueError, TypeError, KeyError, gym.error.Error) as err:  # a seed or option the env refuses
            raise HTTPException(422, f"reset refused: {err}") from None
        except Exception as err:  # the env broke (a site error): an answer, stored like any other for a repeat
            return {"error": f"the env failed in reset: {type(err).__name__}: {err}"}
        return answer(observation=observation, info=info)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "env_ids": list(config.env_ids), "sessions": len(pool), "limits": config.limits()}

    @app.post("/sessions", status_code=201)
    def create(request: CreateRequest) -> Response:
        if request.env_id not in config.env_ids:
            raise HTTPException(404, f"this server serves {', '.join(config.env_ids)}, not the env_id asked for")
        refused = sorted(set(request.kwargs) - CLIENT_KWARGS)
        if refused:
            raise HTTPException(403, f"a client may set {', '.join(sorted(CLIENT_KWARGS))}; {', '.join(refused)} "
                                     f"are the server operator's to set (serve-env --env-kwargs)")
        try:
            session_id, created = pool.create(request.env_id, request.kwargs)
        except SessionsFull as err:
            raise HTTPException(429, str(err)) from None
        except (TypeError, ValueError) as err:  # gym.make's answer to a kwarg or value the env does not take
            raise HTTPException(422, f"cannot make {request.env_id}: {err}") from None
        except Exception as err:  # a missing extra, a missing index, no Chromium: the operator's to fix
            raise HTTPException(500, f"cannot make {request.env_id}: {type(err).__name__}: {err}") from None
        try:
            first = reset(created.env, request.seed, request.options)
        except HTTPException:
            pool.close(session_id)
            raise
        if "error" in first:  # a session whose env cannot reset is no use to anyone
            pool.close(session_id)
            raise HTTPException(500, first["error"])
        body = {"session": session_id, "spec": spec_of(created.env, config), **first}
        return Response(dumps(body), status_code=201, media_type="application/json")

    @app.post("/sessions/{session_id}/reset")
    def reset_session(session_id: str, request: ResetRequest) -> Response:
        target = session(session_id)
        return run(target, request.call, lambda: reset(target.env, request.seed, request.options))

    @app.post("/sessions/{session_id}/step")
    def step_session(session_id: str, request: StepRequest) -> Response:
        if isinstance(request.action, str) and len(request.action) > config.max_action_chars:
            raise HTTPException(413, f"the action is over {config.max_action_chars} characters (--max-action-chars)")
        target = session(session_id)

        def step() -> dict:
            try:
                observation, reward, terminated, truncated, info = target.env.step(request.action)
            except gym.error.ResetNeeded as err:
                raise HTTPException(409, str(err)) from None
            except Exception as err:  # the env broke: an answer (stored for a repeat); the client ends the episode
                return {"error": f"the env failed in step: {type(err).__name__}: {err}"}
            return answer(observation=observation, reward=float(reward), terminated=bool(terminated),
                          truncated=bool(truncated), info=info)

        return run(target, request.call, step)

    @app.delete("/sessions/{session_id}")
    def close_session(session_id: str) -> dict:
        return {"closed": pool.close(session_id)}

    app.state.pool = pool
    return app


def _uvicorn_config(config: EnvServerConfig, log_level: str):
    try:
        import uvicorn
    except ImportError as err:
        from mem1_gym.extras import MissingExtraError, install_line

        raise MissingExtraError(f"serve-env needs fastapi and uvicorn: {install_line('web')}", name="uvicorn") from err
    # No access log: a line per step costs more than the step of a fast env (benchmarks/bench_remote.py).
    return uvicorn, uvicorn.Config(create_app(config), log_level=log_level, access_log=False, lifespan="on")


def serve(config: EnvServerConfig, host: str = "127.0.0.1", port: int = 8040,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted (Ctrl-C). ``on_ready(url)`` is called once the port is bound (port 0: a free one)."""
    uvicorn, uvicorn_config = _uvicorn_config(config, "info")
    with bind(host, port) as sock:
        if on_ready is not None:
            on_ready(socket_url(sock))
        uvicorn.Server(uvicorn_config).run(sockets=[sock])


class RunningEnvServer:
    """A server on a background thread of this process (tests, benchmarks); :meth:`stop` or ``with`` ends it."""

    def __init__(self, config: EnvServerConfig, host: str = "127.0.0.1", port: int = 0):
        uvicorn, uvicorn_config = _uvicorn_config(config, "warning")
        self.app = uvicorn_config.app
        self._socket = bind(host, port)
        self.url = socket_url(self._socket)
        self._server = uvicorn.Server(uvicorn_config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="mem1-gym-env-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"the env server on {self.url} did not start within 30 s")

    @property
    def pool(self) -> SessionPool:
        return self.app.state.pool

    def stop(self) -> None:
        """Close every session, shut the server down and free the port. Idempotent."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._socket.close()

    def __enter__(self) -> "RunningEnvServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
