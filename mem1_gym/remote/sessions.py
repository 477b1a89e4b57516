"""The sessions of ``serve-env``: one env each, a lock each (an env is not thread-safe), a cap, idle eviction."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import gymnasium as gym

from mem1_gym.remote.wire import dumps


class SessionGone(LookupError):
    """The session was closed, evicted or never existed."""


class SessionsFull(RuntimeError):
    """Every session slot is taken."""


class OutOfOrder(RuntimeError):
    """A request older than the session's last one."""


class Session:
    """One env and what serialises the requests to it (an env is not thread-safe)."""

    def __init__(self, env: gym.Env):
        self.env = env
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.call = 0  # the last request done
        self.answer = b""  # its answer, for a repeat of it
        self.closed = False

    def run(self, call: int, act: Callable[[], dict]) -> bytes:
        """The answer of request ``call``: ``act()`` once, the stored answer for a repeat."""
        with self.lock:
            if self.closed:
                raise SessionGone
            if call == self.call:
                return self.answer
            if call < self.call:  # a gap is fine: the client counts requests that never arrived
                raise OutOfOrder(f"request {call} is out of order: the session's last request was {self.call}")
            answer = dumps(act())
            self.call, self.answer, self.last_used = call, answer, time.monotonic()
            return answer


class SessionPool:
    """Sessions by id, at most ``max_sessions``; a thread closes those idle past ``idle_timeout_s``."""

    def __init__(self, max_sessions: int, idle_timeout_s: float, env_kwargs: dict | None = None):
        self.max_sessions, self.idle_timeout_s, self.env_kwargs = max_sessions, idle_timeout_s, dict(env_kwargs or {})
        self._sessions: dict[str, Session] = {}
        self._making = 0  # slots held by envs being made (outside the lock: a browser takes seconds)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="mem1-gym-env-reaper", daemon=True)
        self._reaper.start()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, env_id: str, kwargs: dict) -> tuple[str, Session]:
        self.evict_idle()
        with self._lock:
            if len(self._sessions) + self._making >= self.max_sessions:
                raise SessionsFull(f"the server holds its {self.max_sessions} sessions (--max-sessions); close "
                                   f"an env, wait for idle ones to expire ({self.idle_timeout_s:g} s), or raise "
                                   f"--max-sessions")
            self._making += 1
        try:
            env = gym.make(env_id, **{**self.env_kwargs, **kwargs})
        finally:
            with self._lock:
                self._making -= 1
        session_id, session = uuid.uuid4().hex, Session(env)
        with self._lock:
            self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str) -> Session:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise SessionGone
            session.last_used = time.monotonic()  # before its lock is taken: the reaper must not take it now
            return session

    def close(self, session_id: str) -> bool:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        with session.lock:  # after a request in progress
            _close(session)
        return True

    def evict_idle(self) -> int:
        """Close the sessions unused for ``idle_timeout_s``; returns how many."""
        evicted = []
        with self._lock:
            deadline = time.monotonic() - self.idle_timeout_s
            for session_id, session in list(self._sessions.items()):
                if session.last_used < deadline and session.lock.acquire(blocking=False):  # busy: not idle
                    del self._sessions[session_id]
                    evicted.append(session)
        for session in evicted:
            _close(session)
            session.lock.release()
        return len(evicted)

    def close_all(self) -> None:
        self._stop.set()
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            with session.lock:
                _close(session)

    def _reap(self) -> None:
        interval = min(max(self.idle_timeout_s / 4, 0.05), 30.0)
        while not self._stop.wait(interval):
            self.evict_idle()


def _close(session: Session) -> None:
    session.closed = True
    session.env.close()
