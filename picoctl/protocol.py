"""The wire contract in one place: what the hub, the CLI, the TUI and the boards agree on.

The board mirrors the facts it needs in device_code/picow/ota/ (a test checks the mirror).
"""

from __future__ import annotations

import re
from typing import TypeGuard

# A device id: a letter or digit first (never `.`, `..` or something that reads as an option), then
# letters, digits, `.`, `_` or `-`; at most 64 characters. Pico W, USB Pico and relayed ids alike.
DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEVICE_ID_RULE = "1-64 letters, digits, '.', '_' or '-', a letter or digit first"  # DEVICE_ID in words

# The headers of the HTTP contract: a board's id and the MAC of its request's (or the hub's answer's)
# body, and a published release's meta.json (base64) beside its artifact.
DEVICE_HEADER = "X-Picoctl-Device"
MAC_HEADER = "X-Picoctl-Mac"
META_HEADER = "X-Picoctl-Meta"

# A SHA-256 digest, or a 32-byte key (an Ed25519 public key, a device's HMAC key), as it is written:
# 64 lowercase hex digits.
HEX64 = re.compile(r"[0-9a-f]{64}")

CHANNELS = ("stable", "canary")

ROLLOUT_STATES = ("active", "halted", "completed", "rolled_back")
# The rollout states each operator action accepts.
ACTION_ACCEPTS: dict[str, tuple[str, ...]] = {
    "promote": ("active",),
    "halt": ("active",),
    "resume": ("halted",),
    "rollback": ("active", "halted", "completed"),
}
LIVE_ROLLOUT_STATES = ("active", "halted")  # a rollout the operator may still act on as "the" rollout

MAX_PENDING_REPORTS = 4  # status reports a board queues on flash while the hub is away
# First path parts a picow release may not use: boot.py puts app/ first on the board's import path, so
# app/ota/... or app/hashlib.py would be imported in place of the agent or of a built-in module it
# relies on (MicroPython lets a file on the path extend these built-ins).
PICOW_RESERVED_NAMES = ("ota", "array", "binascii", "collections", "errno", "gzip", "hashlib", "heapq", "io",
                        "json", "os", "platform", "random", "re", "select", "socket", "ssl", "struct",
                        "time", "zlib")
# What a heartbeat says of its board's present state besides version and readings: the hub keeps them in
# the device (its `info`), its heartbeat event carries them, the TUI takes them from either.
BEAT_STATE = ("uptime_s", "mem_free", "rssi", "keys")  # keys: the version of the key set the board trusts
UPTIME_MAX_S = 2 ** 53  # a heartbeat's uptime_s is 0 to this (a whole number of seconds a double holds exactly)

READING_MAX_STR = 64  # the longest string a heartbeat reading (or phase) may be
# The operator event stream (/api/v1/events) carries a ping at least this often while idle; a client that
# hears nothing, not even a ping, for SSE_SILENT_S takes the stream as lost and connects again.
SSE_PING_S = 15.0
SSE_SILENT_S = 2 * SSE_PING_S + 5

LOG_WINDOW_S = 120  # how long a board streams its log after a request that names no other length


def is_device_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and DEVICE_ID.fullmatch(value) is not None


def liveness(last_seen: float | None, now: float, stale_after: float, offline_after: float) -> str:
    """new (never heard from), online, stale or offline: how long ago the device was last heard."""
    if last_seen is None:
        return "new"
    age = now - last_seen
    return "online" if age <= stale_after else "stale" if age <= offline_after else "offline"
