"""Staged rollouts as pure policy: cohorts, which offer a device gets, counts, halt/promote/complete.

No I/O and no clock: the hub passes plain dataclasses and `now` in and acts on the decisions out.
A rollout moves a release through stages (e.g. canary, 10%, 50%, 100%); each stage's cohort adds to
the earlier ones, so a device once in never drops out. A device succeeds only when it confirmed its
trial boot (`committed`); it fails when it reported a non-transient failure, rolled itself back, or
went silent after switching to the new app.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from .errors import BadInput
from .protocol import DEVICE_ID_RULE, ROLLOUT_STATES, is_device_id

PHASES = ("offered", "checking", "downloading", "staged", "switching", "trial",
          "committed", "failed", "rolled_back")
STATES = ROLLOUT_STATES
KINDS = ("update", "rollback")
DEFAULT_STAGES = "canary,10%,50%,100%"

PRE_SWITCH = frozenset(("offered", "checking", "downloading", "staged"))
DOWNLOADING = frozenset(("checking", "downloading", "staged", "switching"))
SWITCHED = frozenset(("switching", "trial"))
TOOK_RELEASE = frozenset(("switching", "trial", "committed", "rolled_back"))
MAX_BACKOFF_DOUBLINGS = 10  # the retry delay stops growing at retry_backoff_s * 1024

_PERCENT_STAGE = re.compile(r"(\d+(?:\.\d+)?)%")
_STAGE_KEYS = ("name", "ids", "device_type", "percent", "channel")


def some(ids: Sequence[str], most: int) -> str:
    """`gh-01, gh-02 and 3 more`: the first `most` of `ids` named, the rest counted."""
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


@functools.lru_cache(maxsize=1 << 16)
def bucket(device_id: str) -> float:
    """A stable position in [0, 100) for the device: the first 8 bytes of sha256(id), scaled."""
    head = hashlib.sha256(device_id.encode()).digest()[:8]
    return (int.from_bytes(head, "big") >> 11) * 100.0 / 2**53  # 53 bits: exact in a float, below 100


def check_percent(value: float, what: str = "percent") -> float:
    """`value` as a float in (0, 100], else BadInput."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0 < value <= 100:
        raise BadInput(f"{what}: expected a number above 0 and at most 100, got {value!r}")
    return float(value)


def device_count(text: str, what: str) -> int:
    """A number of devices as an operator types it (halt after N failures, promote after N successes):
    a whole number, 0 or more, else BadInput naming `what`."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise BadInput(f"{what}: expected a whole number of devices (0 or more), got {text!r}")
    return n


def check_device_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """Device ids, de-duplicated in order, each checked against the protocol's id syntax."""
    out: dict[str, None] = {}
    for i in ids:
        if not is_device_id(i):
            raise BadInput(f"device id {i!r}: expected {DEVICE_ID_RULE}")
        out[i] = None
    return tuple(out)


@dataclass(frozen=True)
class DeviceInfo:
    id: str
    type: str
    channel: str
    version: str | None
    seq: int
    last_seen: float | None


@dataclass(frozen=True)
class Cohort:
    """Who a stage covers. Every non-empty field must match; all empty means every device."""

    ids: tuple[str, ...] = ()
    device_type: str | None = None
    percent: float | None = None  # 0 < p <= 100, by bucket(device_id)
    channel: str | None = None  # e.g. "canary": devices whose channel is canary
    _id_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(self.ids))
        object.__setattr__(self, "_id_set", frozenset(self.ids))

    def contains(self, device: DeviceInfo) -> bool:
        return (
            (not self._id_set or device.id in self._id_set)
            and (self.device_type is None or device.type == self.device_type)
            and (self.channel is None or device.channel == self.channel)
            and (self.percent is None or self.percent >= 100 or bucket(device.id) < self.percent)
        )

    def describe(self) -> str:
        """One line for people, e.g. "ids gh-01,gh-02" or "10% of devices"."""
        parts = []
        if self.ids:
            parts.append("ids " + ",".join(self.ids))
        if self.device_type is not None:
            parts.append(f"type {self.device_type}")
        if self.channel is not None:
            parts.append(f"channel {self.channel}")
        if self.percent is not None:
            parts.append(f"{self.percent:g}% of devices")
        return ", ".join(parts) or "every device"


@dataclass(frozen=True)
class Stage:
    name: str  # "canary", "10%", "50%", "100%"
    cohort: Cohort

    def to_dict(self) -> dict[str, Any]:
        """The wire form: {"name", "ids", "device_type", "percent", "channel"}."""
        c = self.cohort
        return {"name": self.name, "ids": list(c.ids), "device_type": c.device_type,
                "percent": c.percent, "channel": c.channel}

    @classmethod
    def from_dict(cls, data: Any) -> Stage:
        """Parse the wire form, raising BadInput naming the first bad field."""
        if not isinstance(data, dict):
            raise BadInput(f"stage: expected an object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_STAGE_KEYS))
        if unknown:
            raise BadInput(f"stage: unknown field {unknown[0]!r} (expected {', '.join(_STAGE_KEYS)})")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadInput(f"stage name: expected a non-empty string, got {name!r}")
        ids = data.get("ids") or []
        if not isinstance(ids, list):
            raise BadInput(f"stage {name}: ids: expected a list of device ids, got {ids!r}")
        for key in ("device_type", "channel"):
            value = data.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise BadInput(f"stage {name}: {key}: expected a non-empty string or null, got {value!r}")
        percent = data.get("percent")
        cohort = Cohort(
            ids=check_device_ids(ids),
            device_type=data.get("device_type"),
            percent=None if percent is None else check_percent(percent, f"stage {name}: percent"),
            channel=data.get("channel"),
        )
        return cls(name, cohort)


def stages_from_dicts(data: Any) -> tuple[Stage, ...]:
    """A rollout's stages from the wire: a non-empty list with unique names."""
    if not isinstance(data, list) or not data:
        raise BadInput("stages: expected a non-empty list of stages")
    stages = tuple(Stage.from_dict(d) for d in data)
    _check_unique_names(stages)
    return stages


def _check_unique_names(stages: Sequence[Stage]) -> None:
    seen: set[str] = set()
    for s in stages:
        if s.name in seen:
            raise BadInput(f"stages: stage {s.name!r} appears twice")
        seen.add(s.name)


def parse_stages(spec: str | None, *, canary_ids: Sequence[str] = (), device_type: str | None = None,
                 percent: float | None = None) -> list[Stage]:
    """Stages from a spec like "canary,10%,50%,100%" (None: DEFAULT_STAGES).

    "canary" (first only) is the given ids, else the device type, else the percent, else the devices
    whose channel is "canary". Percent stages must grow; eligibility is the union of the stages
    reached so far, so a later stage includes the earlier ones.
    """
    spec = DEFAULT_STAGES if spec is None else spec
    tokens = [t.strip() for t in spec.split(",")]
    if not spec.strip() or any(not t for t in tokens):
        raise BadInput(f"stages {spec!r}: expected comma-separated stages like canary,10%,50%,100%")
    ids = check_device_ids(canary_ids)
    canary_percent = None if percent is None else check_percent(percent, "canary percent")
    has_canary = tokens[0] == "canary"
    if not has_canary and (ids or device_type or canary_percent is not None):
        raise BadInput(f"stages {spec!r}: a canary cohort was given but the stages have no canary stage first")
    stages: list[Stage] = []
    last_percent = 0.0
    for i, token in enumerate(tokens):
        if token == "canary":
            if i:
                raise BadInput(f"stages {spec!r}: canary can only be the first stage")
            stages.append(Stage("canary", _canary_cohort(ids, device_type, canary_percent)))
            last_percent = canary_percent or 0.0
            continue
        m = _PERCENT_STAGE.fullmatch(token)
        if not m:
            raise BadInput(f"stages {spec!r}: unknown stage {token!r} (expected canary or a percentage like 10%)")
        p = check_percent(float(m.group(1)), f"stage {token}")
        if p <= last_percent:
            raise BadInput(f"stages {spec!r}: stage {token} does not grow past the previous stage's {last_percent:g}%")
        stages.append(Stage(f"{p:g}%", Cohort(percent=p)))
        last_percent = p
    return stages


def _canary_cohort(ids: tuple[str, ...], device_type: str | None, percent: float | None) -> Cohort:
    if ids:
        return Cohort(ids=ids)
    if device_type:
        return Cohort(device_type=device_type)
    if percent is not None:
        return Cohort(percent=percent)
    return Cohort(channel="canary")


@dataclass(frozen=True)
class RolloutInfo:
    id: int
    target: str
    version: str
    previous_version: str | None
    state: str  # "active", "halted", "completed", "rolled_back"
    kind: str  # "update" or "rollback"
    stage_index: int
    stages: tuple[Stage, ...]
    halt_after_failures: int
    promote_after_successes: int  # 0 = manual promotion only
    created_at: float
    reason: str = ""  # why it was halted or rolled back

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if self.state not in STATES or self.kind not in KINDS:
            raise ValueError(f"rollout {self.id}: state {self.state!r} / kind {self.kind!r} unknown")
        if not 0 <= self.stage_index < len(self.stages):
            raise ValueError(f"rollout {self.id}: stage_index {self.stage_index} outside its "
                             f"{len(self.stages)} stage(s)")

    @property
    def stage(self) -> Stage:
        return self.stages[self.stage_index]

    @property
    def last_stage(self) -> bool:
        return self.stage_index >= len(self.stages) - 1


@dataclass(frozen=True)
class OfferRecord:
    """One device's progress in one rollout."""

    device_id: str
    rollout_id: int
    version: str
    seq: int
    phase: str
    attempts: int
    transient: bool
    updated_at: float


def stage_of(rollout: RolloutInfo, device: DeviceInfo) -> int | None:
    """Index of the first stage up to the current one whose cohort holds the device, else None."""
    if device.type != rollout.target:
        return None
    for i in range(rollout.stage_index + 1):
        if rollout.stages[i].cohort.contains(device):
            return i
    return None


def eligible(rollout: RolloutInfo, device: DeviceInfo) -> bool:
    """The device's type is the rollout's target and a stage reached so far covers it."""
    return stage_of(rollout, device) is not None


def retrying(record: OfferRecord) -> bool:
    """A transient failure: the release is offered again after the backoff (retry_at)."""
    return record.phase == "failed" and record.transient


def retry_at(record: OfferRecord, retry_backoff_s: float) -> float:
    """When a transient failure may be offered again: backoff doubling with each attempt."""
    doublings = min(max(record.attempts, 1) - 1, MAX_BACKOFF_DOUBLINGS)
    return record.updated_at + retry_backoff_s * 2**doublings


def _offer_now(rollout: RolloutInfo, device: DeviceInfo, record: OfferRecord | None, now: float,
               retry_backoff_s: float) -> bool:
    if rollout.state != "active" or device.version == rollout.version or not eligible(rollout, device):
        return False
    if record is None or record.phase in PRE_SWITCH:
        return True  # a new offer, or one in progress repeated so a lost reply or a reboot resumes it
    if retrying(record):
        return now >= retry_at(record, retry_backoff_s)
    return False


def choose_offer(device: DeviceInfo, rollouts: Sequence[RolloutInfo], records: Mapping[int, OfferRecord],
                 now: float, retry_backoff_s: float) -> RolloutInfo | None:
    """The rollout whose release the device should be offered now, or None.

    The newest rollout the device already has a record in, or is eligible for while active, decides
    alone: a newer rollout wins over older ones, and a halted, finished or rolled-back rollout the
    device took part in keeps older ones from offering it anything. That rollout offers when it is
    active, the device is eligible and not on its version, and the device has no record, a record
    still before the switch (repeated, so a lost reply or a reboot does not strand it), or a transient failure
    whose backoff, retry_backoff_s * 2**(attempts-1), has passed. O(number of rollouts).
    """
    deciding = _deciding(device, rollouts, records)
    if deciding is None:
        return None
    return deciding if _offer_now(deciding, device, records.get(deciding.id), now, retry_backoff_s) else None


def retry_pending(device: DeviceInfo, rollouts: Sequence[RolloutInfo], records: Mapping[int, OfferRecord],
                  now: float, retry_backoff_s: float) -> float | None:
    """When choose_offer will offer the device its release again after its transient failure, while
    that is still to come (the backoff); else None."""
    deciding = _deciding(device, rollouts, records)
    record = records.get(deciding.id) if deciding is not None else None
    if deciding is None or record is None or not retrying(record):
        return None
    at = retry_at(record, retry_backoff_s)
    return at if now < at and _offer_now(deciding, device, record, at, retry_backoff_s) else None


def _deciding(device: DeviceInfo, rollouts: Sequence[RolloutInfo], records: Mapping[int, OfferRecord]
              ) -> RolloutInfo | None:
    """The rollout that decides what the device is offered (choose_offer), or None."""
    deciding: RolloutInfo | None = None
    for r in rollouts:
        if r.target != device.type or (deciding is not None and r.id < deciding.id):
            continue
        if r.id in records or (r.state == "active" and eligible(r, device)):
            deciding = r
    return deciding


@dataclass(frozen=True)
class Counts:
    """Devices of a rollout by progress: the current stage's cohort plus every device with a record.

    offered = all with a record; downloading = checking/downloading/staged/switching; trial = trial;
    failed = non-transient failures, rollbacks, and devices silent after switching; retrying =
    transient failures awaiting a new offer; current = devices already on the version with no
    record; stage_devices / stage_committed = devices that joined at the current stage and how many
    of them committed.
    """

    eligible: int
    offered: int
    downloading: int
    trial: int
    committed: int
    failed: int
    retrying: int = 0
    current: int = 0
    stage_devices: int = 0
    stage_committed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def is_silent(record: OfferRecord, device: DeviceInfo, now: float, trial_timeout_s: float) -> bool:
    """Switched to the new app, then no status or heartbeat for more than trial_timeout_s."""
    if record.phase not in SWITCHED:
        return False
    heard = max(record.updated_at, device.last_seen or 0.0)
    return now - heard > trial_timeout_s


def ended(record: OfferRecord) -> bool:
    """The device is done with this offer: committed, rolled back, or failed for good."""
    return record.phase in ("committed", "rolled_back") or (record.phase == "failed" and not record.transient)


def is_failure(record: OfferRecord, device: DeviceInfo, now: float, trial_timeout_s: float) -> bool:
    """Failed for good, rolled back, or silent after switching."""
    return ((record.phase == "failed" and not record.transient) or record.phase == "rolled_back"
            or is_silent(record, device, now, trial_timeout_s))


def count(rollout: RolloutInfo, devices: Sequence[DeviceInfo], records: Sequence[OfferRecord],
          now: float, trial_timeout_s: float) -> Counts:
    """Counts over the devices eligible at the current stage plus those with a record in this rollout.

    Records of other rollouts or of devices not in `devices` are ignored.
    """
    by_device = {r.device_id: r for r in records if r.rollout_id == rollout.id}
    n = {k: 0 for k in ("eligible", "offered", "downloading", "trial", "committed", "failed",
                        "retrying", "current", "stage_devices", "stage_committed")}
    for d in devices:
        rec = by_device.get(d.id)
        stage = stage_of(rollout, d)
        if rec is None and stage is None:
            continue
        n["eligible"] += 1
        new_here = stage == rollout.stage_index
        n["stage_devices"] += new_here
        if rec is None:
            n["current"] += d.version == rollout.version
            continue
        n["offered"] += 1
        if is_failure(rec, d, now, trial_timeout_s):
            n["failed"] += 1
        elif rec.phase == "committed":
            n["committed"] += 1
            n["stage_committed"] += new_here
        elif rec.phase == "failed":
            n["retrying"] += 1
        elif rec.phase == "trial":
            n["trial"] += 1
        elif rec.phase in DOWNLOADING:
            n["downloading"] += 1
    return Counts(**n)


@dataclass(frozen=True)
class Decision:
    action: str  # "halt", "promote", "complete", or "none"
    reason: str


def evaluate(rollout: RolloutInfo, counts: Counts) -> Decision:
    """What the hub should do next with an active rollout.

    halt: failed >= halt_after_failures (> 0), checked first. complete: the last stage has every
    eligible device (at least one) committed or already on the version. promote (not on the last
    stage, promote_after_successes > 0): as many devices that joined at this stage committed as the
    threshold, or all of them when the stage added fewer; a stage without devices waits for a person.
    """
    stage = rollout.stage.name
    if rollout.state != "active":
        return Decision("none", f"rollout is {rollout.state}")
    if rollout.halt_after_failures > 0 and counts.failed >= rollout.halt_after_failures:
        return Decision("halt", f"{counts.failed} device(s) failed at stage {stage} "
                                f"(halt after {rollout.halt_after_failures})")
    if rollout.last_stage:
        if counts.eligible > 0 and counts.committed + counts.current >= counts.eligible:
            return Decision("complete", f"all {counts.eligible} device(s) run {rollout.version}")
        return Decision("none", f"{counts.committed + counts.current} of {counts.eligible} device(s) "
                                f"run {rollout.version}")
    need = min(rollout.promote_after_successes, counts.stage_devices)
    if rollout.promote_after_successes > 0 and counts.stage_devices > 0 and counts.stage_committed >= need:
        return Decision("promote", f"{counts.stage_committed} of {counts.stage_devices} device(s) of stage "
                                   f"{stage} committed (promote after {rollout.promote_after_successes})")
    return Decision("none", f"stage {stage}: {counts.stage_committed} of {counts.stage_devices} committed")


def rollback_cohort(records: Sequence[OfferRecord]) -> tuple[str, ...]:
    """Sorted ids of devices that took the release: reached switching/trial/committed, or rolled back."""
    return tuple(sorted({r.device_id for r in records if r.phase in TOOK_RELEASE}))


def rollback_joined(rollout: RolloutInfo, device: DeviceInfo) -> tuple[Stage, ...] | None:
    """The stages of rollback `rollout` once `device` joins it; None when the device need not join.

    A device joins when it runs the release being rolled back and the rollback does not cover it yet:
    one still downloading that release when the rollback started finishes, commits and runs it, and
    must be rolled back like the others.
    """
    if (rollout.kind != "rollback" or rollout.state == "rolled_back" or device.type != rollout.target
            or device.version != rollout.previous_version or eligible(rollout, device)):
        return None
    stage = rollout.stages[0]
    joined = Stage(stage.name, replace(stage.cohort, ids=tuple(sorted({*stage.cohort.ids, device.id}))))
    return (joined, *rollout.stages[1:])


def rollback_stages(records: Sequence[OfferRecord]) -> tuple[Stage, ...]:
    """The single stage of a rollback rollout: the devices that took the bad release.

    Raises BadInput when none did (an empty id list would mean every device).
    """
    ids = rollback_cohort(records)
    if not ids:
        raise BadInput("no device took this release; there is nothing to roll back")
    return (Stage("rollback", Cohort(ids=ids)),)
