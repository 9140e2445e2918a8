"""The shape of each operator API answer the CLI and the TUI read, and the check that an answer has it.

A shape is a type (`str`, `dict`, ...) or a tuple of types, `NUMBER`, `ANY` (present, any value),
`Null(shape)` (that shape or null), `Absent(shape)` (an object's field an older hub leaves out), a
dict of the fields an object must have and their shapes (others may come too), or a one-item list: a
list of that shape. Only what the readers rely on is stated, so a
hub that adds fields stays readable; a hub that answers otherwise is named in one clear line
(picoctl.client) instead of failing later inside whatever read the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

ANY = object
NUMBER = (int, float)


@dataclass(frozen=True)
class Null:
    shape: Shape


@dataclass(frozen=True)
class Absent:
    """An object's field an older hub does not give; when given, of `shape`."""

    shape: Shape


Shape = Union[type, tuple[type, ...], Null, Absent, dict[str, "Shape"], list["Shape"]]
Fields = dict[str, Shape]  # an object's shape

_NAMES: dict[Any, tuple[str, str]] = {str: ("a string", "strings"), int: ("an integer", "integers"),
                                      NUMBER: ("a number", "numbers"), bool: ("true or false", "booleans"),
                                      dict: ("an object", "objects"), list: ("a list", "lists"),
                                      ANY: ("a value", "values")}


def describe(shape: Shape, plural: bool = False) -> str:
    """'a list of objects', 'a number or null', ..."""
    if isinstance(shape, Absent):
        return describe(shape.shape, plural)
    if isinstance(shape, Null):
        return f"{describe(shape.shape, plural)} or null"
    if isinstance(shape, list):
        return ("lists of " if plural else "a list of ") + describe(shape[0], True)
    key = dict if isinstance(shape, dict) else shape
    return _NAMES[key][plural]


def _kind(value: object) -> str:
    for t in (bool, str, int, float, dict, list):
        if isinstance(value, t):
            return {bool: "a boolean", float: "a number", int: "a number"}.get(t) or describe(t)
    return "null" if value is None else type(value).__name__


def _fits(value: object, types: type | tuple[type, ...]) -> bool:
    if types is ANY:
        return True
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        return False  # JSON's true is not a number
    return isinstance(value, types)


def mismatch(value: object, shape: Shape, where: str = "") -> str | None:
    """Where `value` departs from `shape` and how ('[0].last_seen: expected a number or null, got a string'),
    or None when it has the shape."""
    here = where or "the answer"
    if isinstance(shape, Absent):
        return mismatch(value, shape.shape, where)
    if isinstance(shape, Null):
        if value is None:
            return None
        inner = mismatch(value, shape.shape, where)  # a departure inside keeps its own place
        return f"{here}: expected {describe(shape)}, got {_kind(value)}" if inner and inner.startswith(
            f"{here}: expected ") else inner
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{here}: expected {describe(shape)}, got {_kind(value)}"
        return next((m for i, v in enumerate(value) if (m := mismatch(v, shape[0], f"{where}[{i}]"))), None)
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{here}: expected {describe(shape)}, got {_kind(value)}"
        for name, field in shape.items():
            if name not in value:
                if isinstance(field, Absent):
                    continue
                return f"{here}: no field {name!r}"
            if m := mismatch(value[name], field, f"{where}.{name}" if where else name):
                return m
        return None
    if not _fits(value, shape):
        return f"{here}: expected {describe(shape)}, got {_kind(value)}"
    return None


# --- the answers ---------------------------------------------------------------------------------

OFFER: Fields = {"rollout_id": int, "version": str, "seq": int, "phase": str, "detail": str,
                 "transient": Absent(bool), "retry_at": Absent(Null(NUMBER))}
DEVICE: Fields = {"id": str, "type": str, "channel": str, "version": Null(str), "status": str,
                 "last_seen": Null(NUMBER), "rssi": Null(NUMBER), "keys": Null(int), "offer": Null(OFFER),
                 "error_summary": str, "last_error": Null(dict), "boots": Null(int), "reset_cause": Null(str),
                 "firmware": dict}
HEARTBEAT: Fields = {"at": NUMBER, "version": ANY, "uptime_s": ANY, "mem_free": ANY, "rssi": ANY, "readings": dict}
EVENT: Fields = {"id": int, "at": NUMBER, "actor": str, "kind": str, "device_id": Null(str), "version": Null(str),
                "result": Null(str), "detail": Null(str)}
DEVICE_DETAIL: Fields = DEVICE | {"heartbeats": [HEARTBEAT], "events": [EVENT]}
READINGS: Shape = [{"at": NUMBER, "readings": dict}]
REGISTERED: Fields = {"id": str, "type": str, "channel": str, "key": str}
REMOVED: Fields = {"id": str, "type": str, "version": Null(str)}
RELEASE: Fields = {"target": str, "version": str, "sha256": str, "published_at": NUMBER, "meta": dict}
PUBLISHED: Fields = {"meta": {"target": str, "version": str, "sha256": str}, "added": bool}
RELEASE_REMOVED: Fields = {"target": str, "version": str, "blobs_removed": int, "bytes_freed": int}
ROLLOUT: Fields = {"id": int, "target": str, "version": str, "state": str, "stages": [dict],
                  "failures": [{"device_id": str, "reason": str}],
                  "retrying": Absent([{"device_id": str, "detail": str, "retry_at": Null(NUMBER)}])}
LOG_LINES: Fields = {"last_id": Null(int), "lines": [{"id": int, "at": NUMBER, "line": str}],
                    "answered_at": Null(NUMBER), "last_seen": Null(NUMBER)}
LOG_ASKED: Fields = {"log_until": NUMBER}
