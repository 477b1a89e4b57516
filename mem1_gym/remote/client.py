"""``MEM1-Remote``: an env served by ``mem1-gym serve-env``, used as a local Gymnasium env."""

from __future__ import annotations

import os
import weakref
from typing import Any
from urllib.parse import urlsplit

import gymnasium as gym
from gymnasium.error import ResetNeeded

from mem1_gym.http import HttpClient, HttpConfig, HttpError
from mem1_gym.remote.wire import TOKEN_ENV, decode, dumps, protocol_from_wire, space_from_wire

ERROR_OBSERVATION = "\n\nThe remote env failed: {cause}. The episode ends; reset() starts a new one.\n\n"
"""The observation of a step (or reset) the server did not answer; ``info["remote_error"]`` holds the cause."""
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class RemoteEnvError(RuntimeError):
    """No session could be opened on the server (``gym.make`` time): the message says why and what to change."""


class _Link:
    """The HTTP client and the session id of one remote env; closing it closes the session (a
    ``weakref.finalize`` holds this, never the env, so a dropped env still frees its server session)."""

    def __init__(self, url: str, http: HttpClient):
        self.url, self.http, self.session = url, http, ""

    def exchange(self, method: str, path: str, what: str, body: dict | None = None) -> tuple[int, dict]:
        """The status and JSON object of one request; :class:`HttpError` when there is no answer."""
        data = None if body is None else dumps(body)
        reply = self.http.request(method, self.url + path, what=what, data=data,
                                  headers={"Content-Type": "application/json"})
        answer = self.http.json(reply, what)
        if not isinstance(answer, dict):
            raise HttpError(f"{what} request failed: the answer is not a JSON object: {reply.text[:200]!r}")
        return reply.status, answer

    def close(self) -> None:
        if self.session:
            try:
                self.exchange("DELETE", f"/sessions/{self.session}", "close")
            except HttpError:  # the server is gone or unreachable: its idle timeout closes the session
                pass
            self.session = ""
        self.http.close()


class RemoteEnv(gym.Env[str, str]):
    """An env of another machine's ``mem1-gym serve-env``, step for step the env ``env_id`` would be here.

    ## Description
    Each ``RemoteEnv`` holds one session of the server: ``gym.make`` opens it (the server makes
    ``env_id`` with ``env_kwargs``), ``reset``/``step`` are one HTTP request each, ``close`` ends it.
    Observations, rewards, episode ends and ``info`` are those of the served env, ``info`` with its
    types (tuples, numpy values: :mod:`mem1_gym.remote.wire`). Browsers and indexes then live on the
    server's machine, the trainer elsewhere.

    ## Action Space
    The served env's (:class:`~mem1_gym.core.UnicodeText` for every mem1-gym env), fetched at ``gym.make``.

    ## Observation Space
    The served env's. When the server does not answer: :data:`ERROR_OBSERVATION` with the cause.

    ## Rewards
    The served env's; 0 on a step the server did not answer.

    ## Starting State
    The served env's for the same ``seed`` and ``options``.

    ## Episode End
    The served env's, and:
    * Truncation: the server did not answer (down, unreachable, slower than ``timeout`` on every
      attempt, session closed after its idle timeout), refused the action (over its
      ``--max-action-chars``), or the served env raised; ``info["remote_error"]`` says which.

    ## Information
    The served env's keys; on a step or reset the server did not answer only ``remote_error`` (why)
    and ``error`` (the same). WebShop's ``url`` holds the server's session path, as there.

    ## Arguments
    ``url`` (``http://HOST:8040``), ``env_id`` (an id the server serves), ``timeout`` (seconds for the
    connection and for each answer, default 30: a browser reset on a loaded server takes seconds),
    ``retries`` (extra attempts after a connection error, a timeout or HTTP 429/5xx, default 1:
    safe, as the server answers a repeated request with its first answer), ``token_env`` (the
    environment variable with the bearer token, default ``MEM1_GYM_ENV_TOKEN``; never a kwarg, so
    it stays out of specs and logs), ``render_mode`` ("ansi" or None), and the served env's kwargs
    the server lets clients set (``split``, ``max_turns``, ... :data:`~mem1_gym.remote.server.CLIENT_KWARGS`).
    A server that does not answer at all costs at most (retries + 1) x timeout per call.
    ``env.unwrapped.protocol`` is the served env's protocol (its family's parser, the server's stop
    strings and task ids), so the agent drives a remote env as a local one; ``task``/``goal``
    (the answers, for oracles) stay on the server.

    ## Example
    >>> import gymnasium as gym, mem1_gym
    >>> from mem1_gym.remote.server import EnvServerConfig, RunningEnvServer
    >>> server = RunningEnvServer(EnvServerConfig(env_ids=("MEM1-MultiHopQA-2",)))
    >>> env = gym.make("MEM1-Remote", url=server.url, env_id="MEM1-MultiHopQA-2")
    >>> local = gym.make("MEM1-MultiHopQA-2")
    >>> env.reset(seed=0) == local.reset(seed=0)
    True
    >>> env.step("<search>founded</search>") == local.step("<search>founded</search>")
    True
    >>> server.stop()  # the server goes away mid-episode: an observation that says so, never a hang
    >>> obs, reward, terminated, truncated, info = env.step("<search>born in</search>")
    >>> truncated, info["remote_error"].startswith("cannot connect")
    (True, True)
    >>> env.close(); local.close()
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}  # each env then takes the served env's

    def __init__(self, url: str, env_id: str, *, timeout: float = 30.0, retries: int = 1, token_env: str = TOKEN_ENV,
                 render_mode: str | None = None, **env_kwargs: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must look like http://HOST:8040 (the serve-env server), got {url!r}")
        self.env_id, self.env_kwargs, self.render_mode = env_id, dict(env_kwargs), render_mode
        token = os.environ.get(token_env, "").strip()
        http = HttpClient(HttpConfig(timeout=timeout, retries=retries), secrets=(token,),
                          headers={"Authorization": f"Bearer {token}"} if token else None,
                          use_proxies=parts.hostname not in _LOOPBACK)  # a proxy cannot reach the caller's loopback
        self._link = _Link(url.rstrip("/"), http)
        self._finalizer = weakref.finalize(self, self._link.close)
        self._call = 0  # requests sent in this session (the server answers a repeat with its first answer)
        self._active = False  # an episode is under way
        self._failure = ""  # why the last reset failed: the episode's one step reports it
        self._last_obs = ""
        try:
            status, answer = self._open(None, None)
            cause = "" if status == 201 else _cause(status, answer)
        except HttpError as err:
            cause = err.cause
        if cause:
            self.close()
            raise RemoteEnvError(f"cannot open a {env_id} session on {url}: {cause}")
        spec = answer["spec"]
        self.observation_space = space_from_wire(spec["observation_space"])
        self.action_space = space_from_wire(spec["action_space"])
        self.metadata = decode(spec["metadata"])
        self.protocol = protocol_from_wire(spec["protocol"])
        self.max_action_chars: int = spec["max_action_chars"]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)  # the server's env draws the task; this keeps Gymnasium's seeding contract
        self._active, self._failure = True, ""
        body = {"seed": seed, "options": options}
        try:
            status, answer = self._send("reset", body)
            if status == 404:  # the session expired or the server restarted: a new one plays this reset
                status, answer = self._open(seed, options)
        except HttpError as err:
            return self._reset_failed(err.cause)
        if status == 422:  # a seed or option the env refuses: raised, as the local env raises it
            raise ValueError(answer.get("detail"))
        if status not in (200, 201) or "error" in answer:
            return self._reset_failed(_cause(status, answer))
        self._last_obs = answer["observation"]
        return self._last_obs, decode(answer["info"])

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if not self._active:
            raise ResetNeeded("call reset() before step(), and again after an episode ends")
        if self._failure:
            return self._step_failed(self._failure)
        if isinstance(action, str) and len(action) > self.max_action_chars:  # refused here: no use sending it
            return self._step_failed(f"the action is over the server's {self.max_action_chars} characters")
        try:
            status, answer = self._send("step", {"action": action})
        except HttpError as err:
            return self._step_failed(err.cause)
        if status != 200 or "error" in answer:
            return self._step_failed(_cause(status, answer))
        self._active = not (answer["terminated"] or answer["truncated"])
        self._last_obs = answer["observation"]
        return self._last_obs, answer["reward"], answer["terminated"], answer["truncated"], decode(answer["info"])

    def render(self) -> str | None:
        return self._last_obs if self.render_mode == "ansi" else None

    def close(self) -> None:
        """End the server session and the connections. Idempotent; never raises on a dead server."""
        self._active = False
        self._finalizer()

    # ------------------------------------------------------------------ helpers

    def _open(self, seed: int | None, options: dict | None) -> tuple[int, dict]:
        """Open a session (the server makes the env and resets it with ``seed``/``options``)."""
        body = {"env_id": self.env_id, "kwargs": self.env_kwargs, "seed": seed, "options": options}
        status, answer = self._link.exchange("POST", "/sessions", "open", body)
        if status == 201:
            self._link.session, self._call = answer["session"], 0
        return status, answer

    def _send(self, what: str, body: dict) -> tuple[int, dict]:
        self._call += 1
        return self._link.exchange("POST", f"/sessions/{self._link.session}/{what}", what, {"call": self._call, **body})

    def _reset_failed(self, cause: str) -> tuple[str, dict]:
        self._failure = cause
        self._last_obs = ERROR_OBSERVATION.format(cause=cause)
        return self._last_obs, {"remote_error": cause, "error": cause}

    def _step_failed(self, cause: str) -> tuple[str, float, bool, bool, dict]:
        self._active = False
        self._last_obs = ERROR_OBSERVATION.format(cause=cause)
        return self._last_obs, 0.0, False, True, {"remote_error": cause, "error": cause}


def _cause(status: int, answer: dict) -> str:
    """Why the server refused or failed a request, in its words."""
    return answer.get("error") or f"HTTP {status}: {answer.get('detail', answer)}"
