"""Boards' wireless logs and crash reports on the hub.

An operator asks for a board's log (`POST /api/v1/devices/{id}/logs/request`); the board's next
heartbeat answer carries `log_s`, the seconds it should stream. The board then posts its ring of
recent output and new lines to `POST /logs` at a faster interval, each post MAC'd like every device
request and capped in size; every answer says how long to go on. The hub keeps the last LOG_KEEP
lines per board; `GET /api/v1/devices/{id}/logs` reads them.
"""

from __future__ import annotations

import time
from typing import Any

from .. import diagnostics
from ..errors import BadInput
from ..protocol import LOG_WINDOW_S
from . import engine, store
from .http import ApiError, field
from .ingest import Tx
from .store import Db

LOG_BODY_MAX = 8192  # bytes of one log post; the board sends at most about half
LOG_KEEP = 500  # lines kept per board
LOG_WINDOW_MAX_S = 600
MAX_AGE_MS = 7 * 24 * 3600 * 1000


def _parsed(kind: str, parse: Any, value: Any) -> Any:
    """`parse(value)`, its BadInput as a 400 naming `kind` (413 for a field over its limit)."""
    try:
        return parse(value)
    except diagnostics.TooLarge as exc:
        raise ApiError(413, f"{kind}: {exc}") from None
    except BadInput as exc:
        raise ApiError(400, f"{kind}: {exc}") from None


def beat_diagnostics(data: dict[str, Any]) -> dict[str, Any]:
    """The crash and inventory fields of a heartbeat body (none when the board sends no `boots`)."""
    boots = field(data, "boots", "int", required=False)
    if boots is None:
        return {}
    error = data.get("last_error")
    reset_cause = field(data, "reset_cause", "str", required=False, default="")
    if len(reset_cause) > diagnostics.RESET_CAUSE_MAX:
        raise ApiError(413, f"reset_cause: over {diagnostics.RESET_CAUSE_MAX} characters")
    return {
        "boots": boots,
        "reset_cause": diagnostics.safe_text(reset_cause),
        "last_error": _parsed("last_error", diagnostics.crash_record, error) if error is not None else None,
        "firmware": _parsed("firmware", diagnostics.firmware, data.get("firmware") or {}),
    }


def status_error(data: dict[str, Any]) -> dict[str, Any] | None:
    """The crash record a `rolled_back` or `failed` status carries, if any."""
    error = data.get("error")
    return _parsed("error", diagnostics.crash_record, error) if error is not None else None


def log_seconds(until: float, now: float) -> int:
    """Whole seconds a board should still stream, 0 when no log is wanted."""
    return max(0, int(until - now + 0.999)) if until > now else 0


def _lines(data: dict[str, Any], now: float) -> list[tuple[float, str]]:
    raw = field(data, "lines", "list")
    if len(raw) > diagnostics.LOG_LINES_MAX:
        raise ApiError(413, f"lines: {len(raw)} in one post, over the limit of {diagnostics.LOG_LINES_MAX}")
    out = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)
                and not isinstance(item[0], bool) and isinstance(item[1], str)):
            raise ApiError(400, "lines: each entry must be [age_ms, text]")
        if len(item[1]) > diagnostics.LINE_MAX:
            raise ApiError(413, f"lines: a line of {len(item[1])} characters, over the limit of {diagnostics.LINE_MAX}")
        age = min(max(item[0], 0), MAX_AGE_MS)
        out.append((now - age / 1000, diagnostics.safe_text(item[1])))
    return out


def log_post_job(device_id: str, data: dict[str, Any], now: float) -> Any:
    """The write of one `POST /logs` body (checked here, before anything is written)."""
    lines = _lines(data, now)
    dropped = field(data, "dropped", "int", required=False, default=0)

    def job(tx: Tx) -> None:
        engine.claim(tx.c, device_id, data["counter"])
        stored = store.insert_log_lines(tx.c, device_id, lines, LOG_KEEP)
        store.record_log_post(tx.c, device_id, now)
        tx.emit("log", {"device_id": device_id, "lines": stored, "dropped": dropped})
    return job


# --- operator side -------------------------------------------------------------------------------

def request_job(device_id: str, seconds: int) -> Any:
    def job(tx: Tx) -> float:
        until = time.time() + seconds
        if not store.set_log_until(tx.c, device_id, until):
            raise ApiError(404, f"no device {device_id!r}")
        ev = store.add_event(tx.c, "operator", "log_requested", device_id=device_id, detail=f"{seconds} s")
        tx.emit("history", ev.as_dict())
        return until
    return job


def read_logs(c: Db, device_id: str, after: int, limit: int) -> dict[str, Any]:
    dev = store.device(c, device_id)
    if dev is None:
        raise ApiError(404, f"no device {device_id!r}")
    return {"device_id": device_id, "lines": store.log_lines(c, device_id, after, limit),
            "last_id": store.last_log_id(c, device_id), "log_until": dev["log_until"], "last_seen": dev["last_seen"],
            "answered_at": dev["log_seen"], "now": time.time()}


def log_window(data: dict[str, Any]) -> int:
    seconds = field(data, "seconds", "int", required=False, default=LOG_WINDOW_S)
    if not 1 <= seconds <= LOG_WINDOW_MAX_S:
        raise ApiError(400, f"field 'seconds' must be between 1 and {LOG_WINDOW_MAX_S}")
    return seconds
