"""USB Pico telemetry: JSON lines on the serial console; heartbeats are forwarded to the hub.

A heartbeat line, as device_code/pico/main.py prints it:

    {"type": "heartbeat", "id": "pico-e6614c31", "version": "1.2.0", "uptime_s": 42,
     "mem_free": 151232, "readings": {"temp_c": 24.5}}

It becomes `POST /api/v1/devices/{id}/heartbeat` (picoctl.client's relay_heartbeat) with the body
{version, uptime_s, mem_free, rssi, readings}, so USB boards show in the fleet like Pico-Ws. A line
the hub would refuse (a number out of range, NaN, a NUL) is refused here and never sent.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeGuard

from .. import strict_json
from ..client import AsyncHubClient, HubError, trust
from ..config import FleetConfig
from ..errors import BadInput, PicoctlError
from ..protocol import READING_MAX_STR, UPTIME_MAX_S, is_device_id

POST_S = 5.0  # the longest one relayed heartbeat may take, however slowly the hub answers
QUEUE = 16  # heartbeats waiting for a slow hub; past that the oldest is dropped


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
        raise BadInput(f"heartbeat: bad device id {str(dev)[:80]!r}")
    obj = strict_json.loads(text, f"heartbeat from {dev}")  # what the hub could store, or BadInput
    if not isinstance(version, str) or not version:
        raise BadInput(f"heartbeat from {dev}: version must be a non-empty string")
    if not _number(uptime) or not 0 <= uptime <= UPTIME_MAX_S:
        raise BadInput(f"heartbeat from {dev}: uptime_s must be a number from 0 to {UPTIME_MAX_S}, got {uptime!r}")
    mem_free, rssi = obj.get("mem_free"), obj.get("rssi")
    for key, value in (("mem_free", mem_free), ("rssi", rssi)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise BadInput(f"heartbeat from {dev}: {key} must be an integer, got {value!r}")
    readings = obj.get("readings", {})
    if not isinstance(readings, dict) or not all(isinstance(k, str) and _reading(v) for k, v in readings.items()):
        raise BadInput(f"heartbeat from {dev}: readings must map names to numbers, booleans "
                       f"or strings of at most {READING_MAX_STR} characters")
    return Heartbeat(dev, version, uptime, mem_free, rssi, readings)


class HeartbeatForwarder:
    """A per-line callback for SerialLog: parses each line at once and posts its heartbeats from a
    thread of its own, so a hub that is down, slow or dripping its answer never holds up the console.
    Each post ends within POST_S; at most QUEUE heartbeats wait (the oldest dropped first, counted in
    `dropped`, as are those close() does not get to); each error is kept in `last_error` and said
    through `on_error` when it changes."""

    def __init__(self, cfg: FleetConfig, on_error: Callable[[str], None] | None = None) -> None:
        self.client = AsyncHubClient(cfg.hub_url, cfg.read_token(), 2 * POST_S, trust(cfg))  # each post is cut at POST_S
        self.on_error = on_error
        self.sent = 0
        self.dropped = 0
        self.last_error = ""
        self._waiting: collections.deque[Heartbeat] = collections.deque()
        self._wake = threading.Condition()
        self._closed_at: float | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._send_all(),), name="heartbeats", daemon=True)
        self._thread.start()

    def __call__(self, line: str) -> None:
        try:
            hb = parse_heartbeat(line)
        except PicoctlError as exc:
            self._error(str(exc))
            return
        if hb is not None:
            with self._wake:
                if self._closed_at is not None:
                    return
                if len(self._waiting) == QUEUE:
                    self._waiting.popleft()
                    self.dropped += 1
                self._waiting.append(hb)
                self._wake.notify()

    def close(self, wait_s: float = POST_S + 1) -> None:
        """Take no more lines; send what waits for at most POST_S more, waiting here `wait_s` for it
        (0: a screen or a follower that must not block goes on at once)."""
        with self._wake:
            self._closed_at = time.monotonic()
            self._wake.notify()
        self._thread.join(timeout=wait_s)

    def _error(self, message: str) -> None:
        if message != self.last_error:
            self.last_error = message
            if self.on_error:
                self.on_error(message)

    def _next(self) -> tuple[Heartbeat, float] | None:
        """The oldest waiting heartbeat and the seconds its post may take; None once closed and done."""
        with self._wake:
            while not self._waiting and self._closed_at is None:
                self._wake.wait()
            left = POST_S if self._closed_at is None else self._closed_at + POST_S - time.monotonic()
            if not self._waiting or left <= 0:
                return None
            return self._waiting.popleft(), min(POST_S, left)

    async def _send_all(self) -> None:
        try:
            while (job := self._next()) is not None:  # blocks this thread's loop, which has nothing else to do
                hb, limit = job
                try:
                    async with asyncio.timeout(limit):
                        await self.client.relay_heartbeat(hb.device_id, hb.body())
                    self.sent += 1
                except HubError as exc:
                    self._error(f"hub refused the heartbeat of {hb.device_id}: HTTP {exc.status} {exc.message}")
                except PicoctlError as exc:
                    self._error(str(exc))
                except TimeoutError:
                    if limit < POST_S:  # cut short by close(): not the hub's fault to report
                        self.dropped += 1
                    else:
                        self._error(f"hub did not take the heartbeat of {hb.device_id} within {POST_S:g} s")
        finally:
            await self.client.aclose()
