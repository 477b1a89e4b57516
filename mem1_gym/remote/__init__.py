"""Envs on other machines: ``mem1-gym serve-env`` serves registered ids over HTTP and
``gym.make("MEM1-Remote", url=..., env_id=...)`` plays them as local envs (issue 22, requirement 5).

* :mod:`mem1_gym.remote.server` — the FastAPI server: sessions, limits, eviction, the bearer token.
* :mod:`mem1_gym.remote.client` — :class:`~mem1_gym.remote.client.RemoteEnv`, the ``MEM1-Remote`` env.
* :mod:`mem1_gym.remote.wire` — what crosses the wire: ``info`` values that come back equal, spaces, the protocol.

The client needs only the core install; the server needs ``pip install "mem1-gym[web]"``.
See docs/remote.md.
"""
