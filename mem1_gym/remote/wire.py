"""What crosses the wire between ``serve-env`` and ``MEM1-Remote``: ``info`` values and spaces as JSON.

``info`` must come back *equal* to the local env's, type included, but JSON has no tuple, no numpy
value and no dict with non-string keys, and ``json.dumps`` turns ``(1, 2)`` into ``[1, 2]`` and
``{1: x}`` into ``{"1": x}`` without a word. :func:`encode` keeps the JSON types as they are and
wraps every other value it knows in an object tagged ``"__mem1__"``; :func:`decode` undoes it, so
``decode(json.loads(json.dumps(encode(v)))) == v`` with the same types. Floats survive exactly
(``repr`` round-trips), NaN and infinities too (Python's JSON writes ``NaN``/``Infinity`` and reads
them back). A value of any other type is a ``TypeError`` that names it, never a silent change.

>>> import numpy as np
>>> info = {"em": [1.0, 0.0], "pair": (1, "a"), "score": np.float32(0.5), "by_id": {3: "x"}}
>>> decode(json.loads(dumps(encode(info)))) == info
True
>>> type(decode(encode(np.float32(0.5)))), type(decode(encode((1,))))
(<class 'numpy.float32'>, <class 'tuple'>)
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from mem1_gym.core import UnicodeText

TOKEN_ENV = "MEM1_GYM_ENV_TOKEN"
"""The environment variable that holds the bearer token, on the server and on the client (default name)."""
TAG = "__mem1__"
"""The key of a wrapped value; a real dict that holds it is wrapped too, so it never misreads."""
_PLAIN = (str, int, float, bool, type(None))


def encode(value: Any) -> Any:
    """``value`` as JSON-ready data that :func:`decode` turns back into an equal value of the same types."""
    kind = type(value)
    if kind in _PLAIN:  # exact types: numpy's float64 subclasses float and must keep its type
        return value
    if kind is list:
        return [encode(item) for item in value]
    if kind is dict:
        if all(type(key) is str for key in value) and TAG not in value:
            return {key: encode(item) for key, item in value.items()}
        return {TAG: "dict", "items": [[encode(key), encode(item)] for key, item in value.items()]}
    if kind is tuple:
        return {TAG: "tuple", "items": [encode(item) for item in value]}
    if isinstance(value, np.ndarray):
        return {TAG: "ndarray", "dtype": value.dtype.str, "shape": list(value.shape), "data": encode(value.tolist())}
    if isinstance(value, np.generic):
        return {TAG: "scalar", "dtype": value.dtype.str, "value": value.item()}
    raise TypeError(f"a value of type {kind.__module__}.{kind.__qualname__} cannot be sent as JSON; "
                    f"envs served over HTTP report str, int, float, bool, None, list, tuple, dict and numpy values")


def decode(data: Any) -> Any:
    """The value that :func:`encode` turned into ``data``."""
    if type(data) is list:
        return [decode(item) for item in data]
    if type(data) is not dict:
        return data
    kind = data.get(TAG)
    if kind is None:
        return {key: decode(item) for key, item in data.items()}
    if kind == "dict":
        return {decode(key): decode(item) for key, item in data["items"]}
    if kind == "tuple":
        return tuple(decode(item) for item in data["items"])
    if kind == "ndarray":
        return np.array(decode(data["data"]), dtype=np.dtype(data["dtype"])).reshape(data["shape"])
    if kind == "scalar":
        return np.dtype(data["dtype"]).type(data["value"])
    raise ValueError(f"unknown wrapped value {kind!r}: the server is newer than this client; upgrade mem1-gym")


def dumps(data: Any) -> bytes:
    """JSON bytes (UTF-8, NaN and infinities allowed: Python's reader takes them back)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def space_to_wire(space: Any) -> dict:
    """A text space as JSON; every mem1-gym env observes and acts in :class:`~mem1_gym.core.UnicodeText`."""
    if not isinstance(space, UnicodeText):
        raise TypeError(f"serve-env serves text envs (UnicodeText spaces), not one with a {type(space).__name__} space")
    return {"type": "UnicodeText", "min_length": space.min_length, "max_length": space.max_length}


def space_from_wire(data: dict) -> UnicodeText:
    if data.get("type") != "UnicodeText":
        raise ValueError(f"unknown space {data.get('type')!r}: the server is newer than this client; upgrade mem1-gym")
    return UnicodeText(data["max_length"], min_length=data["min_length"])


def protocol_to_wire(protocol: Any) -> dict | None:
    """An env's :class:`~mem1_gym.protocol.EnvProtocol` as JSON (None: the env has none). The grammar
    is code, so it travels as the family's name and is rebuilt by :func:`protocol_from_wire`."""
    if protocol is None:
        return None
    return {"family": protocol.family, "stop_strings": list(protocol.stop_strings),
            "final_turn_stop_strings": list(protocol.final_turn_stop_strings), "score_keys": list(protocol.score_keys),
            "task_index_key": protocol.task_index_key, "task_ids": list(protocol.task_ids)}


def protocol_from_wire(data: dict | None) -> Any:
    """The protocol :func:`protocol_to_wire` sent: the family's own, with the server's stop strings and tasks."""
    if data is None:
        return None
    from mem1_gym import protocol

    families = {p.family: p for p in (protocol.QA_PROTOCOL, protocol.WEBQA_PROTOCOL, protocol.WEBSHOP_PROTOCOL)}
    if data["family"] not in families:
        raise ValueError(f"unknown env family {data['family']!r}: the server is newer than this client; "
                         f"upgrade mem1-gym")
    return dataclasses.replace(
        families[data["family"]], stop_strings=tuple(data["stop_strings"]),
        final_turn_stop_strings=tuple(data["final_turn_stop_strings"]), score_keys=tuple(data["score_keys"]),
        task_index_key=data["task_index_key"], task_ids=tuple(data["task_ids"]),
    )
