"""JSON as the hub stores it: integers of at most 64 bits, finite numbers, text without NUL or lone
surrogates, so whatever is taken can be stored (in SQLite or PostgreSQL) and shown again as JSON.

The hub parses every body with it (picoctl.hub.http.parse_json); what picoctl relays to the hub for a
board (a USB board's heartbeat line) is held to it before it is sent.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import BadInput

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_INT_TEXT = re.compile(r"-?[0-9]{1,19}")
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")  # NUL (PostgreSQL text cannot hold it), lone surrogates


def int64(text: str, what: str) -> int:
    """`text` as an integer of at most 64 bits (ASCII digits only), else BadInput naming `what`."""
    if _INT_TEXT.fullmatch(text):
        value = int(text)
        if INT64_MIN <= value <= INT64_MAX:
            return value
    raise BadInput(f"{what}: expected an integer of at most 64 bits, got {text[:40]!r}")


def loads(raw: bytes | str, what: str = "body") -> Any:
    """The JSON value of `raw`, else BadInput naming `what`."""
    def integer(text: str) -> int:
        return int64(text, f"{what}: number")

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise BadInput(f"{what}: number {text[:40]} is out of range")
        return value

    def constant(name: str) -> Any:
        raise BadInput(f"{what} is not valid JSON: {name} is not a number JSON allows")

    try:
        data = json.loads(raw, parse_int=integer, parse_float=finite, parse_constant=constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadInput(f"{what} is not valid JSON: nested too deeply") from None
    _check_text(data, what)
    return data


def _check_text(data: Any, what: str) -> None:
    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item)
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, str) and _NOT_TEXT.search(item):
            raise BadInput(f"{what}: a string holds a NUL or a lone UTF-16 surrogate, which is not text")
