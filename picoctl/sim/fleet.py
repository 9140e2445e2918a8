"""Simulated Pico W boards speaking the device protocol (docs/protocol.md) exactly.

Each `SimDevice` keeps what a real board keeps (version, accepted seq, boot epoch, app files) and
does what the agent does: heartbeat, check with a fresh nonce, verify the offer's MAC, nonce, id,
type and seq, download each changed file by sha256 (resuming with Range after a simulated drop),
report every phase, switch, and confirm its trial with a heartbeat. Behaviours make it fail:
`fail_trial` (the new app never confirms: the board swaps back and reports `rolled_back`),
`transient_failures` (downloads drop that many times, reported as transient), `silent_after_switch`.
Used by the tests, the ingest benchmark and `picoctl demo`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..errors import PicoctlError
from ..protocol import DEVICE_HEADER, MAC_HEADER
from ..hub import store
from ..hub.db import Store
from ..signing import device_mac, new_device_key


class DeviceProtocolError(PicoctlError):
    """The hub answered in a way a real board would refuse."""


@dataclass
class SimDevice:
    id: str
    key: str  # hex
    type: str = "picow"
    version: str = "1.0.0"
    seq: int = 0
    epoch: int = 1
    fail_trial: bool = False
    transient_failures: int = 0
    silent_after_switch: bool = False
    files: dict[str, bytes] = field(default_factory=lambda: {"main.py": b"print('v1')\n"})
    readings: dict[str, Any] = field(default_factory=lambda: {"moisture": 41.5, "pump": False})
    phase: str = ""
    n: int = 0
    uptime_s: int = 0
    log: list[str] = field(default_factory=list)
    last_error: dict[str, Any] | None = None  # the crash record of a failed trial, as the agent keeps it
    keys: int | None = None  # the version of the release key set it trusts (None: it does not say)

    # --- wire --------------------------------------------------------------------------------

    def counter(self) -> int:
        self.n += 1
        return self.epoch * 1_000_000 + self.n

    def reboot(self) -> None:
        """A new boot epoch: counters stay increasing without writing flash on every request."""
        self.epoch += 1
        self.n = 0
        self.uptime_s = 0

    def signed(self, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(body, separators=(",", ":")).encode()
        return raw, {DEVICE_HEADER: self.id, MAC_HEADER: device_mac(self.key, raw),
                     "Content-Type": "application/json"}

    def post(self, client: httpx.Client, path: str, body: dict[str, Any], verify_mac: bool) -> dict[str, Any]:
        raw, headers = self.signed(body)
        return self.send(client, path, raw, headers, verify_mac)

    def send(self, client: httpx.Client, path: str, raw: bytes, headers: dict[str, str],
             verify_mac: bool) -> dict[str, Any]:
        r = client.post(path, content=raw, headers=headers)
        if r.status_code != 200:
            raise DeviceProtocolError(f"{self.id}: {path}: HTTP {r.status_code} {r.text[:200]}")
        if verify_mac:
            mac = r.headers.get(MAC_HEADER, "")
            if not hmac.compare_digest(device_mac(self.key, r.content), mac):
                raise DeviceProtocolError(f"{self.id}: {path}: response MAC does not verify")
        return r.json()

    # --- protocol ------------------------------------------------------------------------------

    def heartbeat_request(self) -> tuple[int, bytes, dict[str, str]]:
        """The next heartbeat: its counter, body bytes and headers (the ingest benchmark sends these raw)."""
        counter = self.counter()
        self.uptime_s += 60
        body = {"id": self.id, "counter": counter, "version": self.version, "seq": self.seq,
                "uptime_s": self.uptime_s, "mem_free": 101232, "rssi": -61, "phase": self.phase or None,
                "readings": self.readings, "keys": self.keys}
        if self.last_error:  # as the agent reports it (docs/protocol.md); otherwise left out
            body |= {"boots": self.epoch, "reset_cause": "soft", "last_error": self.last_error}
        raw, headers = self.signed({k: v for k, v in body.items() if v is not None})
        return counter, raw, headers

    def heartbeat(self, client: httpx.Client) -> dict[str, Any]:
        counter, raw, headers = self.heartbeat_request()
        reply = self.send(client, "/heartbeat", raw, headers, verify_mac=True)
        if reply.get("ok") is not True or reply.get("counter") != counter:
            raise DeviceProtocolError(f"{self.id}: heartbeat not acknowledged: {reply}")
        return reply

    def check(self, client: httpx.Client) -> dict[str, Any] | None:
        """Ask for an update; return the offer only if a real board would accept it."""
        nonce = secrets.token_hex(16)
        reply = self.post(client, "/check", {"id": self.id, "counter": self.counter(), "type": self.type,
                                             "version": self.version, "seq": self.seq, "nonce": nonce},
                          verify_mac=True)
        if reply.get("nonce") != nonce or reply.get("id") != self.id:
            raise DeviceProtocolError(f"{self.id}: check reply for another request")
        offer = reply.get("offer")
        if offer is None:
            return None
        if offer.get("type") != self.type:
            raise DeviceProtocolError(f"{self.id}: offer for type {offer.get('type')}")
        if not isinstance(offer.get("seq"), int) or offer["seq"] <= self.seq:
            raise DeviceProtocolError(f"{self.id}: offer seq {offer.get('seq')} not above {self.seq}")
        return offer

    def status(self, client: httpx.Client, offer: dict[str, Any], phase: str, from_version: str, detail: str = "",
               transient: bool = False, error: dict[str, Any] | None = None) -> None:
        self.phase = phase
        self.log.append(phase)
        body = {"id": self.id, "counter": self.counter(), "seq": offer["seq"], "version": offer["version"],
                "from_version": from_version, "phase": phase, "detail": detail, "transient": transient}
        self.post(client, "/deploy/status", body | ({"error": error} if error else {}), verify_mac=False)

    def _download(self, client: httpx.Client, f: dict[str, Any], drop: bool) -> bytes:
        """One file by sha256: half of it, a drop, then the rest with Range (or a transient failure)."""
        first = client.get(f["url"], headers={"Range": f"bytes=0-{max(0, f['size'] // 2 - 1)}"}) if f["size"] > 1 \
            else client.get(f["url"])
        if first.status_code not in (200, 206):
            raise DeviceProtocolError(f"{self.id}: {f['name']}: HTTP {first.status_code}")
        data = first.content
        if drop:
            raise ConnectionError(f"{f['name']}: link dropped at {len(data)}/{f['size']}")
        if len(data) < f["size"]:
            rest = client.get(f["url"], headers={"Range": f"bytes={len(data)}-"})
            if rest.status_code != 206:
                raise DeviceProtocolError(f"{self.id}: {f['name']}: resume answered HTTP {rest.status_code}")
            data += rest.content
        if hashlib.sha256(data).hexdigest() != f["sha256"]:
            raise DeviceProtocolError(f"{self.id}: {f['name']}: sha256 mismatch")
        return data

    def update(self, client: httpx.Client, offer: dict[str, Any]) -> str:
        """Apply an accepted offer; returns the final phase."""
        old_version, old_files = self.version, self.files
        self.seq = offer["seq"]
        self.status(client, offer, "downloading", old_version)
        staged: dict[str, bytes] = {}
        for f in offer["files"]:
            have = self.files.get(f["name"])
            if have is not None and hashlib.sha256(have).hexdigest() == f["sha256"]:
                staged[f["name"]] = have
                continue
            try:
                staged[f["name"]] = self._download(client, f, drop=self.transient_failures > 0)
            except ConnectionError as exc:
                self.transient_failures -= 1
                self.status(client, offer, "failed", old_version, str(exc), transient=True)
                return "failed"
        self.status(client, offer, "staged", old_version)
        self.status(client, offer, "switching", old_version)
        self.files, self.version = staged, offer["version"]
        self.reboot()
        if self.silent_after_switch:
            self.phase = "silent"
            return "silent"
        self.status(client, offer, "trial", old_version)
        if self.fail_trial:
            self.last_error = {"type": "RuntimeError", "message": f"{offer['version']} failed on this board",
                               "traceback": 'Traceback (most recent call last):\n  File "app/main.py", line 1, '
                                            f"in <module>\nRuntimeError: {offer['version']} failed on this board\n",
                               "boot": self.epoch, "reset_cause": "soft"}
            self.files, self.version = old_files, old_version
            self.reboot()
            self.status(client, offer, "rolled_back", old_version, "new app did not confirm its trial boot",
                        error=self.last_error)
            return "rolled_back"
        self.heartbeat(client)  # the first accepted heartbeat confirms the trial
        self.status(client, offer, "committed", old_version)
        return "committed"

    def step(self, client: httpx.Client) -> str | None:
        """One cycle of the agent: heartbeat, check, apply an offer. Returns the update's outcome."""
        if self.phase == "silent":
            return None
        self.heartbeat(client)
        offer = self.check(client)
        return self.update(client, offer) if offer else None



def register_many(db: Path | str, n: int) -> list[tuple[str, str]]:
    """Register `n` Pico W (sim-0000 …) straight into the store at `db` (a path or a database URL), in one
    transaction: (id, key) each."""
    devices = [(f"sim-{i:04d}", new_device_key()) for i in range(n)]
    s = Store(db)
    with s.transaction() as c:
        for device_id, key in devices:
            store.register_device(c, "operator", device_id, "picow", "stable", key, time.time())
    s.close()
    return devices
