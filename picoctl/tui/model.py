"""What the TUI shows, as plain data: parsed from the operator API's JSON and kept current by its SSE events.

No Textual here. `FleetModel.apply(kind, data)` takes one event of the hub's stream and records what
changed (`dirty_devices`, `dirty`), so the screens update only the rows and panels that need it.
Every string the hub sends is made visible (picoctl.tui.text.cleaned) as it enters, events and lists alike.
Liveness (online/stale/offline) and ages are computed from `last_seen` and an injected clock, so they
move between events and render the same in every snapshot.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from .. import diagnostics, protocol
from ..config import FleetConfig
from .format import plural
from .text import cleaned

COUNT_KEYS = ("offered", "downloading", "trial", "committed", "failed")
MAX_EVENTS = 5000  # event log kept in memory; older entries are reloaded from the hub on demand
MAX_HEARTBEATS = 120  # per opened device, for the sparklines
MAX_DEVICE_EVENTS = 200  # per opened device
SUMMARY_VERSIONS = 4  # (type, version) pairs named in the summary line, the most common first


def _num(value: Any) -> float | None:
    """A finite number, else None (JSON from outside may say 1e400)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    n = float(value)
    return n if math.isfinite(n) else None


def _int(value: Any) -> int | None:
    n = _num(value)
    return None if n is None else int(n)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass
class Offer:
    rollout_id: int | None
    version: str
    seq: int
    phase: str
    retrying: bool = False  # a transient failure: the hub offers the release again after its backoff
    detail: str = ""
    retry_at: float | None = None  # when (the hub's API says, while the rollout is active; a status event does not)

    @property
    def shown_phase(self) -> str:
        """The phase as the rollout counts it: `retrying` for a transient failure."""
        return "retrying" if self.retrying else self.phase

    @property
    def failed(self) -> bool:
        """Failed for good or rolled back (the rollout counts it as a failure)."""
        return self.shown_phase in ("failed", "rolled_back")

    @classmethod
    def from_json(cls, d: Any) -> Offer | None:
        if not isinstance(d, Mapping) or not _str(d.get("version")):
            return None
        phase = _str(d.get("phase")) or "offered"
        return cls(_int(d.get("rollout_id")), d["version"], _int(d.get("seq")) or 0, phase,
                   phase == "failed" and d.get("transient") is True, _str(d.get("detail")) or "", _num(d.get("retry_at")))


@dataclass
class Heartbeat:
    at: float
    version: str | None = None
    uptime_s: int | None = None
    mem_free: int | None = None
    rssi: int | None = None
    keys: int | None = None
    readings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any], now: float) -> Heartbeat:
        readings = d.get("readings")
        return cls(_num(d.get("at")) or now, _str(d.get("version")), **{k: _int(d.get(k)) for k in protocol.BEAT_STATE},
                   readings=dict(readings) if isinstance(readings, Mapping) else {})


@dataclass
class Device:
    id: str
    type: str
    channel: str = "stable"
    version: str | None = None
    status: str = "new"  # the hub's word; liveness() recomputes it against the clock
    last_seen: float | None = None
    rssi: int | None = None
    mem_free: int | None = None
    uptime_s: int | None = None
    keys: int | None = None  # the version of the release key set the board reports trusting
    readings: dict[str, Any] = field(default_factory=dict)
    offer: Offer | None = None
    # Why it failed, as the board reports it (picoctl.diagnostics): its last crash, reset cause, boot
    # number and firmware (MicroPython version, .mpy ABI, board, unique id).
    last_error: dict[str, Any] | None = None
    error_summary: str = ""
    reset_cause: str = ""
    boots: int | None = None
    firmware: dict[str, Any] = field(default_factory=dict)
    # History, kept only once the device's detail was loaded (its screen opened): 2,000 devices' worth
    # of heartbeats would cost far more memory than the fleet table needs.
    detailed: bool = False
    heartbeats: collections.deque[Heartbeat] = field(default_factory=lambda: collections.deque(maxlen=MAX_HEARTBEATS))
    events: collections.deque[Event] = field(default_factory=lambda: collections.deque(maxlen=MAX_DEVICE_EVENTS))

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Device:
        dev = cls(id=str(d["id"]), type=_str(d.get("type")) or "?")
        dev.update(d)
        return dev

    def update(self, d: Mapping[str, Any]) -> None:
        """Take the fields present in `d` (a device object, or part of one)."""
        for key in ("channel", "version", "status"):
            if key in d:
                setattr(self, key, _str(d[key]) or getattr(self, key))
        if "type" in d and _str(d["type"]):
            self.type = d["type"]
        for key in protocol.BEAT_STATE:
            if key in d:
                setattr(self, key, _int(d[key]))
        if "last_seen" in d:
            self.last_seen = _num(d["last_seen"])
        if isinstance(d.get("readings"), Mapping):
            self.readings = dict(d["readings"])
        if "offer" in d:
            self.offer = Offer.from_json(d["offer"])
        self.take_diagnostics(d)

    def take_diagnostics(self, d: Mapping[str, Any]) -> None:
        """The crash and inventory fields of a device object or a heartbeat, when it has them."""
        if "boots" not in d:
            return
        self.boots = _int(d.get("boots"))
        self.reset_cause = _str(d.get("reset_cause")) or ""
        error = d.get("last_error")
        self.last_error = dict(error) if isinstance(error, Mapping) and error else None
        self.error_summary = _str(d.get("error_summary")) or diagnostics.error_summary(self.last_error)
        if isinstance(d.get("firmware"), Mapping):
            self.firmware = dict(d["firmware"])
            mpy = _int(self.firmware.get("mpy"))
            if mpy is not None:
                self.firmware["mpy_abi"] = diagnostics.mpy_abi(mpy)

    def take_heartbeat(self, hb: Heartbeat) -> None:
        self.last_seen = max(self.last_seen or 0.0, hb.at)
        self.version = hb.version or self.version
        for key in protocol.BEAT_STATE:  # as the hub keeps them: the beat's word, none if it said none
            setattr(self, key, getattr(hb, key))
        self.readings = hb.readings or self.readings
        if self.detailed:
            self.heartbeats.append(hb)

    def reading(self, name: str) -> Any:
        return self.readings.get(name)


@dataclass
class Release:
    target: str
    version: str
    sha256: str = ""
    published_at: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Release:
        raw = d.get("meta")
        meta: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        return cls(str(d.get("target") or meta.get("target") or "?"), str(d.get("version") or meta.get("version")),
                   _str(d.get("sha256")) or _str(meta.get("sha256")) or "", _num(d.get("published_at")), dict(meta))

    @property
    def key(self) -> str:
        return f"{self.target}/{self.version}"


@dataclass
class Rollout:
    id: int
    target: str
    version: str
    state: str
    previous_version: str | None = None
    kind: str = "update"
    stage_index: int = 0
    stages: list[dict[str, Any]] = field(default_factory=list)
    halt_after_failures: int = 0
    promote_after_successes: int = 0
    created_at: float | None = None
    reason: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)  # device_id, phase, reason, error

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Rollout:
        raw = d.get("counts")
        counts: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        stages = [s for s in d.get("stages") or [] if isinstance(s, Mapping)]
        return cls(int(d["id"]), str(d.get("target")), str(d.get("version")), str(d.get("state")),
                   _str(d.get("previous_version")), _str(d.get("kind")) or "update", _int(d.get("stage_index")) or 0,
                   [dict(s) for s in stages], _int(d.get("halt_after_failures")) or 0,
                   _int(d.get("promote_after_successes")) or 0, _num(d.get("created_at")), d.get("reason") or "",
                   {k: int(v) for k, v in counts.items() if _int(v) is not None},
                   [dict(f) for f in d.get("failures") or [] if isinstance(f, Mapping) and _str(f.get("device_id"))])

    def why(self) -> str:
        """`gh-03 rolled_back: AttributeError: … (app/main.py:12)` for each failed device, or ''."""
        return "; ".join(f"{f['device_id']} {f.get('reason') or f.get('phase')}" for f in self.failures)

    @property
    def stage_name(self) -> str:
        if 0 <= self.stage_index < len(self.stages):
            return str(self.stages[self.stage_index].get("name", self.stage_index))
        return "-"

    @property
    def progress(self) -> tuple[int, int]:
        """(committed or already current, eligible) at the current stage."""
        c = self.counts
        return c.get("committed", 0) + c.get("current", 0), max(c.get("eligible", 0), c.get("offered", 0))


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    actor: str
    kind: str
    device_id: str | None = None
    version: str | None = None
    result: str = ""
    detail: str = ""

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Event:
        return cls(int(d.get("id") or 0), _num(d.get("at")) or 0.0, str(d.get("actor") or ""), str(d.get("kind") or "?"),
                   _str(d.get("device_id")), _str(d.get("version")), str(d.get("result") or ""), str(d.get("detail") or ""))

    def matches(self, text: str) -> bool:
        """Case-insensitive match of `text` (or `field:value`) against device, version, kind, actor, detail."""
        text = text.strip().lower()
        if not text:
            return True
        key, _, value = text.partition(":")
        if value and key in ("device", "version", "kind"):
            got = {"device": self.device_id, "version": self.version, "kind": self.kind}[key] or ""
            return value in got.lower()
        return any(text in (v or "").lower() for v in (self.device_id, self.version, self.kind, self.actor,
                                                        self.result, self.detail))


@dataclass(frozen=True)
class Link:
    """The TUI's link to the hub: connecting, live, or down (since `since`, by the app's clock, and why)."""

    state: str = "connecting"  # "connecting", "live" or "down"
    why: str = ""
    since: float | None = None
    answered: bool = False  # down though something answered, with another shape than the hub's answers
    slow: bool = False  # down though the hub took the connection: its answer broke a bound (picoctl.client)

    @property
    def down(self) -> bool:
        return self.state == "down"


Liveness = Callable[[str], tuple[float, float]]  # device type -> (stale after s, offline after s)


def thresholds_from(cfg: FleetConfig) -> Liveness:
    def limits(device_type: str) -> tuple[float, float]:
        dt = cfg.device_type(device_type)
        return float(dt.stale_after()), float(dt.offline_after())
    return limits


class FleetModel:
    """Devices, releases, rollouts and the event log, as last heard from the hub."""

    def __init__(self, limits: Liveness, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.clock = clock
        self.devices: dict[str, Device] = {}
        self.releases: dict[str, Release] = {}
        self.rollouts: dict[int, Rollout] = {}
        self.events: collections.deque[Event] = collections.deque(maxlen=MAX_EVENTS)
        self.dirty_devices: set[str] = set()
        self.removed_devices: set[str] = set()
        self.new_events: list[Event] = []
        self.dirty: set[str] = set()  # "devices" (whole list), "releases", "rollouts", "events"
        self.applied = 0
        self.skipped = 0  # events of a shape the model cannot read
        self.oldest_unshown: float | None = None  # hub time of the oldest heartbeat not yet taken by a screen
        # A device's deploy status moves its rollout's counts, which the stream does not carry: reload them.
        self.counts_stale = False
        self.link = Link()

    # --- whole lists, from the API ---------------------------------------------------------
    def load_devices(self, items: Iterable[Mapping[str, Any]]) -> None:
        fresh = {}
        for d in map(cleaned, items):
            dev = self.devices.get(str(d["id"])) or Device.from_json(d)
            dev.update(d)
            fresh[dev.id] = dev
        self.removed_devices |= set(self.devices) - set(fresh)
        self.devices = fresh
        self.dirty_devices |= set(fresh)
        self.dirty.add("devices")

    def load_device_detail(self, d: Mapping[str, Any]) -> Device:
        """One device with its heartbeat history and its events (GET /api/v1/devices/{id})."""
        d = cleaned(d)
        dev = self.devices.get(str(d["id"]))
        if dev is None:
            dev = self.devices[str(d["id"])] = Device.from_json(d)
        dev.update(d)
        now = self.clock()
        beats = [Heartbeat.from_json(h, now) for h in d.get("heartbeats") or [] if isinstance(h, Mapping)]
        dev.heartbeats.clear()
        dev.heartbeats.extend(sorted(beats, key=lambda h: h.at))
        dev.events.clear()
        dev.events.extend(Event.from_json(e) for e in d.get("events") or [] if isinstance(e, Mapping))
        dev.detailed = True
        self.dirty_devices.add(dev.id)
        return dev

    def load_releases(self, items: Iterable[Mapping[str, Any]]) -> None:
        self.releases = {r.key: r for r in map(Release.from_json, map(cleaned, items))}
        self.dirty.add("releases")

    def load_rollouts(self, items: Iterable[Mapping[str, Any]]) -> None:
        self.rollouts = {r.id: r for r in map(Rollout.from_json, map(cleaned, items))}
        self.dirty.add("rollouts")

    def load_events(self, items: Iterable[Mapping[str, Any]]) -> None:
        self.events.clear()
        self.events.extend(map(Event.from_json, map(cleaned, items)))
        self.new_events.clear()
        self.dirty.add("events")

    # --- one SSE event ---------------------------------------------------------------------
    def apply(self, kind: str, data: Any) -> None:
        """Apply one event of the stream; unknown kinds and malformed data are ignored (counted in `skipped`):
        an event the TUI cannot read must not end the stream, which would only replay it."""
        if not isinstance(data, Mapping):
            self.skipped += 1
            return
        try:
            self._apply(kind, cleaned(data))
        except (TypeError, ValueError, KeyError, OverflowError):
            self.skipped += 1

    def _apply(self, kind: str, data: Mapping[str, Any]) -> None:
        self.applied += 1
        if kind == "heartbeat":
            dev = self.devices.get(str(data.get("device_id") or data.get("id")))
            if dev is None:
                return
            hb = Heartbeat.from_json(data, self.clock())
            version = dev.version
            dev.take_heartbeat(hb)
            dev.take_diagnostics(data)
            if dev.version != version:
                self.dirty.add("versions")  # devices per release move
            if self.oldest_unshown is None:
                self.oldest_unshown = hb.at
            self.dirty_devices.add(dev.id)
        elif kind in ("device", "status") and (data.get("id") or data.get("device_id")):
            did = str(data.get("id") or data.get("device_id"))
            dev = self.devices.get(did)
            if dev is None and data.get("type"):
                dev = self.devices[did] = Device.from_json({**data, "id": did})
                self.dirty.add("devices")
            if dev is None:
                return
            if kind == "status" and "phase" in data:
                self.counts_stale = True
                offer = dev.offer or Offer(_int(data.get("rollout_id")), str(data.get("version") or "?"), 0, "offered")
                offer.phase = str(data["phase"])
                offer.retrying = offer.phase == "failed" and data.get("transient") is True
                offer.detail, offer.retry_at = _str(data.get("detail")) or "", None
                offer.version = _str(data.get("version")) or offer.version
                offer.seq = _int(data.get("seq")) or offer.seq
                dev.offer = offer
            else:
                dev.update(data)
            self.dirty_devices.add(did)
        elif kind == "device_removed" and data.get("id"):
            if self.devices.pop(str(data["id"]), None) is not None:
                self.removed_devices.add(str(data["id"]))
                self.dirty.add("versions")
        elif kind == "rollout" and "id" in data:
            self.rollouts[int(data["id"])] = Rollout.from_json(data)
            self.dirty.add("rollouts")
        elif kind == "release" and data.get("version"):
            r = Release.from_json(data)
            self.releases[r.key] = r
            self.dirty.add("releases")
        elif kind == "release_removed":
            if self.releases.pop(f"{data.get('target')}/{data.get('version')}", None) is not None:
                self.dirty.add("releases")
        elif kind == "history":
            e = Event.from_json(data)
            if not self.events or e.id > self.events[-1].id:
                self.events.append(e)
                self.new_events.append(e)
                self.dirty.add("events")
                dev = self.devices.get(e.device_id or "")
                if dev is not None and dev.detailed:
                    dev.events.append(e)

    def take_changes(self) -> tuple[set[str], set[str], list[Event], set[str]]:
        """(changed device ids, removed device ids, appended events, dirty topics), and reset them."""
        out = (self.dirty_devices, self.removed_devices, self.new_events, self.dirty)
        self.dirty_devices, self.removed_devices, self.new_events, self.dirty = set(), set(), [], set()
        self.oldest_unshown = None
        return out

    # --- derived, for the screens -----------------------------------------------------------
    def liveness(self, dev: Device, now: float | None = None) -> str:
        """The hub's rule (picoctl.protocol.liveness) at `now`, or at the moment the link was lost while
        the hub cannot be reached: a board's silence then says nothing about the board."""
        if dev.last_seen is None:
            return dev.status
        at = self.clock() if now is None else now
        if self.link.since is not None:
            at = min(at, self.link.since)
        return protocol.liveness(dev.last_seen, at, *self.limits(dev.type))

    def active_rollout(self) -> Rollout | None:
        live = [r for r in self.rollouts.values() if r.state in protocol.LIVE_ROLLOUT_STATES]
        return max(live, key=lambda r: (r.state == "active", r.id)) if live else None

    def summary(self) -> str:
        now = self.clock()
        n = collections.Counter(self.liveness(d, now) for d in self.devices.values())
        # (type, version): picow 1.0.0 and pico 1.0.0 are different releases; none reported yet: new
        versions = collections.Counter((d.type, d.version) for d in self.devices.values() if d.version)
        parts = [plural(len(self.devices), "device"), f"● {n['online']} online", f"◐ {n['stale']} stale",
                 f"○ {n['offline']} offline"]
        if n["new"]:
            parts.append(f"· {n['new']} new")
        top = versions.most_common(SUMMARY_VERSIONS)
        types = dict.fromkeys(t for (t, _), _ in top)
        vs = "  ".join(f"{t} " + " ".join(f"{v}×{c}" for (tt, v), c in top if tt == t) for t in types)
        lines = ["  ".join(parts), f"versions {vs or 'none reported yet'}" + (" …" if len(versions) > len(top) else "")]
        r = self.active_rollout()
        if r is not None:
            done, total = r.progress
            failed = sorted(d.id for d in self.devices.values()
                            if d.offer and d.offer.rollout_id == r.id and d.offer.failed)
            lines.append(f"rollout #{r.id} {r.target} {r.version} {r.stage_name} {r.state} {done}/{total}" +
                         (f"  failed: {', '.join(failed[:4])}" + (" …" if len(failed) > 4 else "") if failed else ""))
        return "\n".join(lines)
