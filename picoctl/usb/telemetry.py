"""USB Pico telemetry: JSON lines on the serial console; heartbeats are forwarded to the hub.

A heartbeat line, as device_code/pico/main.py prints it:

    {"type": "heartbeat", "id": "pico-e6614c31", "version": "1.2.0", "uptime_s": 42,
     "mem_free": 151232, "readings": {"temp_c": 24.5}}

It becomes `POST /api/v1/devices/{id}/heartbeat` (picoctl.client's relay_heartbeat) with the body
{version, uptime_s, mem_free, rssi, readings}, so USB boards show in the fleet like Pico-Ws.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ..client import HubClient, HubError
from ..config import FleetConfig
from ..errors import BadInput, PicoctlError
from ..protocol import READING_MAX_STR, is_device_id

TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Heartbeat:
    device_id: str
    version: str
    uptime_s: float
    mem_free: int | None = None
    rssi: int | None = None
    readings: dict[str, float | bool | str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"version": self.version, "uptime_s": self.uptime_s, "mem_free": self.mem_free,
                "rssi": self.rssi, "readings": self.readings}


def _number(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _reading(v: Any) -> bool:
    return isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) <= READING_MAX_STR)


def parse_heartbeat(line: str) -> Heartbeat | None:
    """The heartbeat on a console line; None for any other line; BadInput for a malformed heartbeat."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None  # a print that merely starts with a brace, or nests past what a heartbeat could
    if not isinstance(obj, dict) or obj.get("type") != "heartbeat":
        return None
    dev, version, uptime = obj.get("id"), obj.get("version"), obj.get("uptime_s")
    if not is_device_id(dev):
        raise BadInput(f"heartbeat: bad device id {dev!r}")
    if not isinstance(version, str) or not version:
        raise BadInput(f"heartbeat from {dev}: version must be a non-empty string")
    if not _number(uptime) or uptime < 0:
        raise BadInput(f"heartbeat from {dev}: uptime_s must be a non-negative number, got {uptime!r}")
    mem_free, rssi = obj.get("mem_free"), obj.get("rssi")
    for key, value in (("mem_free", mem_free), ("rssi", rssi)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise BadInput(f"heartbeat from {dev}: {key} must be an integer, got {value!r}")
    readings = obj.get("readings", {})
    if not isinstance(readings, dict) or not all(isinstance(k, str) and _reading(v) for k, v in readings.items()):
        raise BadInput(f"heartbeat from {dev}: readings must map names to numbers, booleans "
                       f"or strings of at most {READING_MAX_STR} characters")
    return Heartbeat(dev, version, uptime, mem_free, rssi, readings)


def post_heartbeat(cfg: FleetConfig, hb: Heartbeat, client: HubClient | None = None) -> None:
    """Record `hb` in the hub; PicoctlError naming the cause when the hub does not take it."""
    try:
        if client is None:
            with HubClient.from_config(cfg, timeout=TIMEOUT_S) as own:
                own.relay_heartbeat(hb.device_id, hb.body())
        else:
            client.relay_heartbeat(hb.device_id, hb.body())
    except HubError as exc:
        raise PicoctlError(f"hub refused the heartbeat of {hb.device_id}: HTTP {exc.status} {exc.message}") from None


class HeartbeatForwarder:
    """A per-line callback for SerialLog: posts each heartbeat; remembers the last error."""

    def __init__(self, cfg: FleetConfig) -> None:
        self.cfg = cfg
        self.client = HubClient.from_config(cfg, timeout=TIMEOUT_S)
        self.sent = 0
        self.last_error = ""

    def __call__(self, line: str) -> None:
        try:
            hb = parse_heartbeat(line)
            if hb is not None:
                post_heartbeat(self.cfg, hb, self.client)
                self.sent += 1
        except PicoctlError as exc:
            self.last_error = str(exc)

    def close(self) -> None:
        self.client.close()
