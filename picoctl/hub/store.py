"""The hub's store: the schema, every query, and the one write path of each change.

The hub is the only writer; everything it writes goes through the functions below, run on the
connection of an open transaction (the hub's writer batches them; picoctl.hub.db opens SQLite or
PostgreSQL). Readers (tests, benchmarks) use the same functions. The schema evolves through
`MIGRATIONS`, written in SQLite's dialect (picoctl.hub.db.postgres_sql translates them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Mapping, Protocol, Sequence, TypeVar

from ..diagnostics import error_summary
from ..protocol import BEAT_STATE
from ..release import blobs_of

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE devices (
        id            TEXT PRIMARY KEY,
        type          TEXT NOT NULL,
        channel       TEXT NOT NULL DEFAULT 'stable',
        key           TEXT NOT NULL,
        registered_at REAL NOT NULL,
        last_seen     REAL,
        version       TEXT,
        seq           INTEGER NOT NULL DEFAULT 0,
        offer_seq     INTEGER NOT NULL DEFAULT 0,
        phase         TEXT NOT NULL DEFAULT '',
        check_now     INTEGER NOT NULL DEFAULT 0,
        last_counter  INTEGER NOT NULL DEFAULT 0,
        info          TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE heartbeats (
        id        INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        at        REAL NOT NULL,
        version   TEXT,
        uptime_s  INTEGER,
        mem_free  INTEGER,
        rssi      INTEGER,
        phase     TEXT,
        readings  TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX heartbeats_device ON heartbeats(device_id, id);
    CREATE TABLE releases (
        target       TEXT NOT NULL,
        version      TEXT NOT NULL,
        sha256       TEXT NOT NULL,
        meta         TEXT NOT NULL,
        published_at REAL NOT NULL,
        PRIMARY KEY (target, version)
    );
    CREATE TABLE rollouts (
        id                      INTEGER PRIMARY KEY,
        target                  TEXT NOT NULL,
        version                 TEXT NOT NULL,
        previous_version        TEXT,
        state                   TEXT NOT NULL,
        kind                    TEXT NOT NULL DEFAULT 'update',
        stage_index             INTEGER NOT NULL DEFAULT 0,
        stages                  TEXT NOT NULL,
        halt_after_failures     INTEGER NOT NULL,
        promote_after_successes INTEGER NOT NULL,
        reason                  TEXT NOT NULL DEFAULT '',
        created_at              REAL NOT NULL,
        updated_at              REAL NOT NULL
    );
    CREATE TABLE offers (
        device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
        version    TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        phase      TEXT NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        transient  INTEGER NOT NULL DEFAULT 0,
        detail     TEXT NOT NULL DEFAULT '',
        updated_at REAL NOT NULL,
        PRIMARY KEY (device_id, rollout_id)
    );
    CREATE TABLE events (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        REAL NOT NULL,
        actor     TEXT NOT NULL,
        device_id TEXT,
        version   TEXT,
        kind      TEXT NOT NULL,
        result    TEXT NOT NULL DEFAULT '',
        detail    TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_device ON events(device_id, id);
    CREATE INDEX events_version ON events(version, id);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    """,
    # 2: why a board failed (its last crash record, reset cause, boot count, firmware inventory),
    # each offer's error, and the boards' wireless logs
    """
    ALTER TABLE devices ADD COLUMN last_error  TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE devices ADD COLUMN reset_cause TEXT NOT NULL DEFAULT '';
    ALTER TABLE devices ADD COLUMN boots       INTEGER;
    ALTER TABLE devices ADD COLUMN firmware    TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE devices ADD COLUMN log_until   REAL NOT NULL DEFAULT 0;
    ALTER TABLE offers  ADD COLUMN error       TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE device_logs (
        id        INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        at        REAL NOT NULL,
        line      TEXT NOT NULL
    );
    CREATE INDEX device_logs_device ON device_logs(device_id, id);
    """,
    # 3: one offer per seq of a device, whichever hub made it
    """
    CREATE UNIQUE INDEX offers_seq ON offers(device_id, seq);
    """,
    # 4: a finished rollout's figures (its counts and failures when it completed or was rolled back)
    """
    ALTER TABLE rollouts ADD COLUMN figures TEXT NOT NULL DEFAULT '{}';
    """,
    # 5: when a board last posted its log, whichever hub it posted to
    """
    ALTER TABLE devices ADD COLUMN log_seen REAL NOT NULL DEFAULT 0;
    """,
]

JSON_COLUMNS = ("info", "readings", "meta", "stages", "last_error", "firmware", "error", "figures")


class Db(Protocol):
    """What every query runs on: one connection (`dialect` "sqlite" or "postgresql") in a transaction."""

    dialect: str

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> Any: ...


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    actor: str
    device_id: str | None
    version: str | None
    kind: str
    result: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _row_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    d = dict(row)
    for k in JSON_COLUMNS:
        if k in d and isinstance(d[k], str):
            d[k] = json.loads(d[k])
    return d


def _one(c: Db, sql: str, args: Iterable[Any] = ()) -> dict[str, Any] | None:
    found = c.execute(sql, tuple(args)).fetchall()  # all: a statement with RETURNING runs to its end
    return _row_dict(found[0]) if found else None


def _rows(c: Db, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
    return [_row_dict(r) for r in c.execute(sql, tuple(args))]


def table(c: Db, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
    """`rows` as a table to select from in one statement: its SQL (alias it) and arguments.

    `columns`: (name, PostgreSQL type). PostgreSQL gets an array per column, so the statement's text
    is the same for any number of rows (prepared once); SQLite a list of VALUES. At least one row.
    """
    names = ", ".join(name for name, _ in columns)
    if c.dialect == "postgresql":
        arrays = ", ".join(f"CAST(? AS {kind}[])" for _, kind in columns)
        return (f"(SELECT * FROM unnest({arrays}) AS t({names}))",
                [[None if v is None else _PG_TYPES[kind](v) for v in values]
                 for (_, kind), values in zip(columns, zip(*rows, strict=True), strict=True)])
    picked = ", ".join(f"column{i} AS {name}" for i, (name, _) in enumerate(columns, start=1))
    marks = ", ".join(["(" + ", ".join("?" * len(columns)) + ")"] * len(rows))
    return f"(SELECT {picked} FROM (VALUES {marks}))", [v for row in rows for v in row]


_PG_TYPES: dict[str, Callable[[Any], Any]] = {"TEXT": str, "BIGINT": int, "DOUBLE PRECISION": float}
K = TypeVar("K")


def one_per_device(items: Iterable[K], key: Callable[[K], str]) -> list[list[K]]:
    """`items` in turns where each device appears once: its first item in the first turn, and so on."""
    turns: list[list[K]] = []
    seen: dict[str, int] = {}
    for item in items:
        n = seen[key(item)] = seen.get(key(item), -1) + 1
        if n == len(turns):
            turns.append([])
        turns[n].append(item)
    return turns


def ping(c: Db) -> None:
    """A query that fails when the store is unreachable."""
    c.execute("SELECT 1").fetchall()


# --- devices -------------------------------------------------------------------------------------

def device(c: Db, device_id: str) -> dict[str, Any] | None:
    return _one(c, "SELECT * FROM devices WHERE id = ?", (device_id,))


def devices(c: Db, type_: str | None = None) -> list[dict[str, Any]]:
    if type_ is not None:
        return _rows(c, "SELECT * FROM devices WHERE type = ? ORDER BY id", (type_,))
    return _rows(c, "SELECT * FROM devices ORDER BY id")


def register_device(c: Db, actor: str, device_id: str, type_: str, channel: str, key: str, at: float) -> Event | None:
    """Add a device and its `device_registered` event; None when the id is already taken."""
    if c.execute("INSERT INTO devices (id, type, channel, key, registered_at) VALUES (?, ?, ?, ?, ?)"
                 " ON CONFLICT (id) DO NOTHING", (device_id, type_, channel, key, at)).rowcount == 0:
        return None
    return add_event(c, actor, "device_registered", device_id=device_id, detail=f"type={type_} channel={channel}",
                     at=at)


def set_channel(c: Db, device_id: str, channel: str) -> bool:
    """Move a device to `channel`; False when there is no such device."""
    return c.execute("UPDATE devices SET channel = ? WHERE id = ?", (channel, device_id)).rowcount > 0


def remove_device(c: Db, device_id: str) -> dict[str, Any] | None:
    """Forget a device (its key, heartbeats and offers go; its events stay); what it was, or None."""
    row = _one(c, "SELECT type, channel, version FROM devices WHERE id = ?", (device_id,))
    if row is None:
        return None
    c.execute("DELETE FROM devices WHERE id = ?", (device_id,))
    return row


def claim_counters(c: Db, claims: Sequence[tuple[str, int]]) -> list[dict[str, Any] | None]:
    """Take device requests' counters (device id, counter), in a statement or two for all of them
    (a heartbeat's is taken by `record_heartbeats`, with the rest of it).

    For each: what an operator asked of the device (check_now, log_until, for `take_requests`), or
    None when the counter is not above the last one taken (a replay) or the device is gone. One
    conditional update, so of two hubs taking the same counter at once exactly one succeeds; several
    counters of one device are taken in their order.
    """
    out: list[dict[str, Any] | None] = [None] * len(claims)
    for turn in one_per_device(list(enumerate(claims)), key=lambda item: item[1][0]):
        rows, args = table(c, (("id", "TEXT"), ("counter", "BIGINT")), [claim for _, claim in turn])
        taken = {r["id"]: dict(r) for r in c.execute(
            f"UPDATE devices SET last_counter = v.counter FROM {rows} AS v"
            " WHERE devices.id = v.id AND devices.last_counter < v.counter"
            " RETURNING devices.id, devices.check_now, devices.log_until", args).fetchall()}
        for i, (device_id, _) in turn:
            out[i] = taken.get(device_id)
    return out


def missing_devices(c: Db, device_ids: Collection[str]) -> set[str]:
    """Those of `device_ids` the store does not know (removed, perhaps through another hub)."""
    rows, args = table(c, (("id", "TEXT"),), [(d,) for d in device_ids])
    return set(device_ids) - {r["id"] for r in c.execute(
        f"SELECT devices.id FROM devices JOIN {rows} AS v ON devices.id = v.id", args).fetchall()}


def set_check_now(c: Db, device_id: str) -> bool:
    """Ask a device to check at its next heartbeat; False when there is no such device."""
    return c.execute("UPDATE devices SET check_now = 1 WHERE id = ?", (device_id,)).rowcount > 0


def take_requests(c: Db, asked: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[bool, float]]:
    """What an operator asked of each device (device id, what claim_counters returned), whichever hub
    they asked: check now (the request is used up) and the time until which its log is wanted."""
    checking = [(device_id,) for device_id, a in asked if a["check_now"]]
    if checking:
        rows, args = table(c, (("id", "TEXT"),), checking)
        c.execute(f"UPDATE devices SET check_now = 0 WHERE id IN (SELECT id FROM {rows} AS v)", args)
    return [(bool(a["check_now"]), float(a["log_until"])) for _, a in asked]


def record_check(c: Db, device_id: str, at: float, version: str, seq: int) -> None:
    """What a device's check tells about it: alive, running `version` at `seq`."""
    c.execute("UPDATE devices SET last_seen = ?, version = ?, seq = GREATEST(seq, ?) WHERE id = ?",
              (at, version, seq, device_id))


def record_deploy_phase(c: Db, device_id: str, at: float, phase: str, version: str | None = None,
                        seq: int | None = None) -> None:
    """A device's reported deploy phase; `version` (and `seq`) when it now runs another release."""
    if version is not None:
        c.execute("UPDATE devices SET version = ?, seq = GREATEST(seq, COALESCE(?, seq)) WHERE id = ?",
                  (version, seq, device_id))
    c.execute("UPDATE devices SET last_seen = ?, phase = ? WHERE id = ?", (at, phase, device_id))


def record_log_post(c: Db, device_id: str, at: float) -> None:
    """A device posted its log (so it was heard from too)."""
    c.execute("UPDATE devices SET last_seen = ?, log_seen = ? WHERE id = ?", (at, at, device_id))


def versions_running(c: Db, type_: str, other_than: str) -> list[str]:
    """The version of every device of `type_` that reported one other than `other_than`."""
    return [r["version"] for r in _rows(c, "SELECT version FROM devices WHERE type = ? AND version IS NOT NULL"
                                           " AND version != ?", (type_, other_than))]


# --- heartbeats ----------------------------------------------------------------------------------

def record_heartbeats(c: Db, beats: Sequence[dict[str, Any]], counters: Sequence[int | None]
                      ) -> tuple[list[dict[str, Any] | None], list[Event]]:
    """Store heartbeats in a few statements for all of them: an update takes each beat's counter (None:
    a beat relayed by an operator, with none to take) and sets its device's live fields, then one
    insert appends the beats taken.

    Each beat: device_id, at, and optionally version, seq, phase, uptime_s, mem_free, rssi, readings.
    For each: what an operator asked of its device (check_now, log_until, for `take_requests`), or
    None when its counter is not above the last one taken (a replay, or the device is gone): nothing
    of it is stored. Several beats of one device count in their order. A beat that carries `boots`
    also replaces the device's last error (None: it has none), reset cause and firmware; a crash
    record not reported before is logged as a `device_error` event, and those events are returned.
    """
    asked: list[dict[str, Any] | None] = [None] * len(beats)
    for indexes in one_per_device(range(len(beats)), key=lambda i: beats[i]["device_id"]):
        rows, args = table(c, _LIVE_COLUMNS, [(*_live_fields(beats[i]), counters[i]) for i in indexes])
        taken = {r["id"]: dict(r) for r in c.execute(
            "UPDATE devices SET last_counter = COALESCE(v.counter, devices.last_counter), last_seen = v.at,"
            " version = COALESCE(v.version, devices.version), seq = GREATEST(devices.seq, COALESCE(v.seq, devices.seq)),"
            " phase = COALESCE(v.phase, devices.phase), info = v.info,"
            " reset_cause = COALESCE(v.reset_cause, devices.reset_cause), boots = COALESCE(v.boots, devices.boots),"
            f" firmware = COALESCE(v.firmware, devices.firmware) FROM {rows} AS v"
            " WHERE devices.id = v.id AND (v.counter IS NULL OR devices.last_counter < v.counter)"
            " RETURNING devices.id, devices.check_now, devices.log_until", args).fetchall()}
        for i in indexes:
            asked[i] = taken.get(beats[i]["device_id"])
    stored = [b for b, n, a in zip(beats, counters, asked, strict=True) if n is None or a is not None]
    if stored:  # a relayed beat whose device is missing fails here, on the heartbeat's foreign key
        rows, args = table(c, _BEAT_COLUMNS, [
            (b["device_id"], b["at"], b.get("version"), b.get("uptime_s"), b.get("mem_free"), b.get("rssi"),
             b.get("phase"), json.dumps(b.get("readings") or {})) for b in stored])
        c.execute(f"INSERT INTO heartbeats (device_id, at, version, uptime_s, mem_free, rssi, phase, readings)"
                  f" SELECT device_id, at, version, uptime_s, mem_free, rssi, phase, readings FROM {rows} AS v", args)
    events: list[Event] = []
    for turn in one_per_device([b for b in stored if b.get("boots") is not None], key=lambda b: b["device_id"]):
        events += _record_errors(c, turn)
    return asked, events


_BEAT_COLUMNS = (("device_id", "TEXT"), ("at", "DOUBLE PRECISION"), ("version", "TEXT"),
                 ("uptime_s", "DOUBLE PRECISION"), ("mem_free", "BIGINT"), ("rssi", "BIGINT"), ("phase", "TEXT"),
                 ("readings", "TEXT"))
_LIVE_COLUMNS = (("id", "TEXT"), ("at", "DOUBLE PRECISION"), ("version", "TEXT"), ("seq", "BIGINT"),
                 ("phase", "TEXT"), ("info", "TEXT"), ("reset_cause", "TEXT"), ("boots", "BIGINT"),
                 ("firmware", "TEXT"), ("counter", "BIGINT"))


def _live_fields(b: dict[str, Any]) -> tuple[Any, ...]:
    """A beat's row for the device update: what the beat tells, None for what it leaves as it was."""
    info = {k: b.get(k) for k in BEAT_STATE} | {"readings": b.get("readings") or {}}
    diagnosed = b.get("boots") is not None
    return (b["device_id"], b["at"], b.get("version"), b.get("seq"), b.get("phase"), json.dumps(info),
            (b.get("reset_cause") or "") if diagnosed else None, b.get("boots"),
            json.dumps(b.get("firmware") or {}, sort_keys=True) if diagnosed else None)


def _record_errors(c: Db, beats: Sequence[dict[str, Any]]) -> list[Event]:
    """Replace the last crash record of each device that sent one (one beat per device); a new one is an event."""
    if not beats:
        return []
    stored = {b["device_id"]: json.dumps(b.get("last_error") or {}, sort_keys=True) for b in beats}
    rows, args = table(c, (("id", "TEXT"), ("last_error", "TEXT")), list(stored.items()))
    changed = {r["id"] for r in c.execute(
        f"UPDATE devices SET last_error = v.last_error FROM {rows} AS v"
        " WHERE devices.id = v.id AND devices.last_error != v.last_error RETURNING devices.id", args).fetchall()}
    return [add_event(c, "device", "device_error", device_id=b["device_id"], version=b.get("version"),
                      result=b["last_error"].get("reset_cause") or "error",
                      detail=f"boot {b['last_error'].get('boot')}: {error_summary(b['last_error'])}", at=b["at"])
            for b in beats if b["device_id"] in changed and b.get("last_error")]


def prune_heartbeats(c: Db, device_ids: Iterable[str], history: int) -> None:
    """Keep the last `history` heartbeats of each device."""
    rows = [(d, d, history) for d in device_ids]
    if rows:
        c.executemany("DELETE FROM heartbeats WHERE device_id = ? AND id <= ("
                      " SELECT id FROM heartbeats WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)", rows)


def set_last_error(c: Db, device_id: str, error: dict[str, Any]) -> bool:
    """Replace the device's last crash record ({}: none); True when it changed."""
    stored = json.dumps(error, sort_keys=True)
    return c.execute("UPDATE devices SET last_error = ? WHERE id = ? AND last_error != ?",
                     (stored, device_id, stored)).rowcount > 0


def heartbeats(c: Db, device_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The device's last `limit` heartbeats, oldest first."""
    return _rows(c, "SELECT * FROM heartbeats WHERE device_id = ? ORDER BY id DESC LIMIT ?", (device_id, limit))[::-1]


# --- releases ------------------------------------------------------------------------------------

def release(c: Db, target: str, version: str) -> dict[str, Any] | None:
    return _one(c, "SELECT * FROM releases WHERE target = ? AND version = ?", (target, version))


def releases(c: Db, target: str | None = None) -> list[dict[str, Any]]:
    if target:
        return _rows(c, "SELECT * FROM releases WHERE target = ? ORDER BY published_at", (target,))
    return _rows(c, "SELECT * FROM releases ORDER BY target, published_at")


def publish_release(c: Db, actor: str, meta: dict[str, Any], at: float) -> Event:
    """Record a verified release and its `release_published` event."""
    c.execute("INSERT INTO releases (target, version, sha256, meta, published_at) VALUES (?, ?, ?, ?, ?)",
              (meta["target"], meta["version"], meta["sha256"], json.dumps(meta, sort_keys=True), at))
    return add_event(c, actor, "release_published", version=meta["version"], result="ok",
                     detail=f"target={meta['target']} sha256={meta['sha256'][:16]}", at=at)


def remove_release(c: Db, actor: str, target: str, version: str, at: float) -> Event:
    """Forget a release (its rollouts and their offers stay, naming its version) with a
    `release_removed` event."""
    c.execute("DELETE FROM releases WHERE target = ? AND version = ?", (target, version))
    return add_event(c, actor, "release_removed", version=version, result="ok", detail=f"target={target}", at=at)


def referenced_blobs(c: Db) -> set[str]:
    """Every blob a release recorded on the hub is served from (release.blobs_of)."""
    return set().union(*(blobs_of(r["meta"]) for r in _rows(c, "SELECT meta FROM releases")))


def devices_running(c: Db, type_: str, version: str) -> list[str]:
    """Sorted ids of the devices of `type_` that last reported running `version`."""
    return [r["id"] for r in c.execute("SELECT id FROM devices WHERE type = ? AND version = ? ORDER BY id",
                                       (type_, version))]


def rollouts_of_version(c: Db, target: str, version: str) -> list[dict[str, Any]]:
    """The rollouts of `target` that move devices to `version` or from it, newest first."""
    return _rows(c, "SELECT * FROM rollouts WHERE target = ? AND (version = ? OR previous_version = ?)"
                    " ORDER BY id DESC", (target, version, version))


def lock_blobs(c: Db) -> None:
    """Make hubs recording a release and hubs removing one take turns over the shared blobs (PostgreSQL;
    SQLite has one writer anyway)."""
    if c.dialect == "postgresql":
        c.execute("SELECT pg_advisory_xact_lock(2, 0)")


# --- rollouts ------------------------------------------------------------------------------------

def rollout(c: Db, rollout_id: int, lock: bool = False) -> dict[str, Any] | None:
    """A rollout; `lock`: held until the transaction ends, so two hubs deciding on it take turns."""
    suffix = " FOR UPDATE" if lock and c.dialect == "postgresql" else ""
    return _one(c, f"SELECT * FROM rollouts WHERE id = ?{suffix}", (rollout_id,))


def lock_target(c: Db, target: str) -> None:
    """Make hubs starting a rollout of `target` (or a rollback) and hubs removing one of its releases
    take turns (SQLite has one writer anyway); taken before the release is read."""
    if c.dialect == "postgresql":
        c.execute("SELECT pg_advisory_xact_lock(1, hashtext(?))", (target,))


def rollouts(c: Db) -> list[dict[str, Any]]:
    return _rows(c, "SELECT * FROM rollouts ORDER BY id")


def active_rollout_ids(c: Db, target: str | None = None) -> list[int]:
    if target is not None:
        found = _rows(c, "SELECT id FROM rollouts WHERE target = ? AND state = 'active' ORDER BY id", (target,))
    else:
        found = _rows(c, "SELECT id FROM rollouts WHERE state = 'active' ORDER BY id")
    return [r["id"] for r in found]


def latest_rollout(c: Db, target: str) -> dict[str, Any] | None:
    """The newest rollout of `target`, whatever its state."""
    return _one(c, "SELECT * FROM rollouts WHERE target = ? ORDER BY id DESC LIMIT 1", (target,))


def rollouts_for_device(c: Db, type_: str, device_id: str) -> list[dict[str, Any]]:
    """The rollouts that may concern a device: the active ones of its type and those it was offered."""
    return _rows(c, "SELECT * FROM rollouts WHERE target = ? AND (state = 'active' OR id IN"
                    " (SELECT rollout_id FROM offers WHERE device_id = ?)) ORDER BY id", (type_, device_id))


def last_completed_version(c: Db, target: str, other_than: str) -> str | None:
    done = _one(c, "SELECT version FROM rollouts WHERE target = ? AND state = 'completed' AND version != ?"
                   " ORDER BY id DESC LIMIT 1", (target, other_than))
    return done["version"] if done else None


def insert_rollout(c: Db, target: str, version: str, previous_version: str | None, kind: str,
                   stages: list[dict[str, Any]], halt_after_failures: int, promote_after_successes: int,
                   at: float) -> int:
    """A new active rollout; returns its id (its `rollout_started` event is the caller's)."""
    return int(c.execute(
        "INSERT INTO rollouts (target, version, previous_version, state, kind, stage_index, stages,"
        " halt_after_failures, promote_after_successes, created_at, updated_at)"
        " VALUES (?, ?, ?, 'active', ?, 0, ?, ?, ?, ?, ?) RETURNING id",
        (target, version, previous_version, kind, json.dumps(stages), halt_after_failures, promote_after_successes,
         at, at),
    ).fetchall()[0]["id"])


ROLLOUT_FIELDS = frozenset(("state", "stage_index", "halt_after_failures", "stages", "figures"))


def update_rollout(c: Db, rollout_id: int, reason: str, at: float, **values: Any) -> None:
    """Set a rollout's state, stage, threshold or figures (`values`), with the reason why."""
    assert values.keys() <= ROLLOUT_FIELDS
    cols = "".join(f"{k} = ?, " for k in values)
    args = [json.dumps(v, sort_keys=True) if k in JSON_COLUMNS else v for k, v in values.items()]
    c.execute(f"UPDATE rollouts SET {cols}reason = ?, updated_at = ? WHERE id = ?", (*args, reason, at, rollout_id))


# --- offers --------------------------------------------------------------------------------------

def offers_of_device(c: Db, device_id: str) -> list[dict[str, Any]]:
    return _rows(c, "SELECT * FROM offers WHERE device_id = ?", (device_id,))


def offers_of_rollout(c: Db, rollout_id: int) -> list[dict[str, Any]]:
    return _rows(c, "SELECT * FROM offers WHERE rollout_id = ?", (rollout_id,))


def offer_by_seq(c: Db, device_id: str, seq: int) -> dict[str, Any] | None:
    return _one(c, "SELECT * FROM offers WHERE device_id = ? AND seq = ?", (device_id, seq))


def latest_offer(c: Db, device_id: str) -> dict[str, Any] | None:
    return _one(c, "SELECT * FROM offers WHERE device_id = ? ORDER BY seq DESC LIMIT 1", (device_id,))


def latest_offers(c: Db) -> dict[str, dict[str, Any]]:
    """Each device's newest offer, by device id."""
    return {o["device_id"]: o for o in _rows(
        c, "SELECT o.* FROM offers o JOIN (SELECT device_id, MAX(seq) AS seq FROM offers GROUP BY device_id) m"
           " ON o.device_id = m.device_id AND o.seq = m.seq")}


def make_offer(c: Db, device_id: str, rollout_id: int, version: str, at: float) -> int:
    """A fresh offer of a rollout to a device, under the next seq of the device; returns that seq.

    The device's row is already held by this transaction (its counter was claimed), so two hubs
    answering two checks of one device take turns and never hand out one seq twice.
    """
    dev = device(c, device_id)
    assert dev is not None
    seq = max(dev["offer_seq"], dev["seq"]) + 1
    c.execute("UPDATE devices SET offer_seq = ?, check_now = 0 WHERE id = ?", (seq, device_id))
    c.execute(
        "INSERT INTO offers (device_id, rollout_id, version, seq, phase, updated_at) VALUES (?, ?, ?, ?, 'offered', ?)"
        " ON CONFLICT (device_id, rollout_id) DO UPDATE SET seq = excluded.seq, phase = 'offered', transient = 0,"
        " detail = '', updated_at = excluded.updated_at",
        (device_id, rollout_id, version, seq, at),
    )
    return seq


def record_offer_phase(c: Db, device_id: str, rollout_id: int, phase: str, transient: bool, detail: str,
                       at: float, error: dict[str, Any] | None = None) -> None:
    """Move an offer to the phase its device reported (a transient failure counts an attempt), with
    the crash record that explains it, if any."""
    c.execute("UPDATE offers SET phase = ?, transient = ?, attempts = attempts + ?, detail = ?, error = ?,"
              " updated_at = ? WHERE device_id = ? AND rollout_id = ?",
              (phase, int(transient), int(transient), detail, json.dumps(error or {}, sort_keys=True), at, device_id,
               rollout_id))


def record_not_offered(c: Db, device_id: str, rollout_id: int, version: str, reason: str, at: float) -> None:
    """A rollout's release the device cannot run: its record fails for good, without a seq."""
    c.execute(
        "INSERT INTO offers (device_id, rollout_id, version, seq, phase, detail, updated_at)"
        " VALUES (?, ?, ?, 0, 'failed', ?, ?) ON CONFLICT (device_id, rollout_id) DO UPDATE SET phase = 'failed',"
        " transient = 0, detail = excluded.detail, updated_at = excluded.updated_at",
        (device_id, rollout_id, version, reason, at),
    )


def devices_of_rollout(c: Db, rollout_id: int) -> list[dict[str, Any]]:
    """The devices that have a record in a rollout."""
    return _rows(c, "SELECT * FROM devices WHERE id IN (SELECT device_id FROM offers WHERE rollout_id = ?)",
                 (rollout_id,))


# --- device logs ---------------------------------------------------------------------------------

def set_log_until(c: Db, device_id: str, until: float) -> bool:
    """Want the device's log until `until`; False when there is no such device."""
    return c.execute("UPDATE devices SET log_until = ? WHERE id = ?", (until, device_id)).rowcount > 0


def insert_log_lines(c: Db, device_id: str, lines: Sequence[tuple[float, str]], keep: int) -> list[dict[str, Any]]:
    """Append a device's log lines, keep its last `keep`; returns the stored lines (id, at, line)."""
    stored = []
    for at, line in lines:
        line_id = c.execute("INSERT INTO device_logs (device_id, at, line) VALUES (?, ?, ?) RETURNING id",
                            (device_id, at, line)).fetchall()[0]["id"]
        stored.append({"id": int(line_id), "at": at, "line": line})
    c.execute("DELETE FROM device_logs WHERE device_id = ? AND id <= ("
              " SELECT id FROM device_logs WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
              (device_id, device_id, keep))
    return stored


def log_lines(c: Db, device_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """The device's last `limit` log lines after id `after`, oldest first."""
    return _rows(c, "SELECT id, at, line FROM device_logs WHERE device_id = ? AND id > ? ORDER BY id DESC LIMIT ?",
                 (device_id, after, limit))[::-1]


def last_log_id(c: Db, device_id: str) -> int:
    row = _one(c, "SELECT MAX(id) AS id FROM device_logs WHERE device_id = ?", (device_id,))
    return int((row or {}).get("id") or 0)


# --- events --------------------------------------------------------------------------------------

def add_event(
    c: Db,
    actor: str,
    kind: str,
    device_id: str | None = None,
    version: str | None = None,
    result: str = "",
    detail: str = "",
    at: float | None = None,
) -> Event:
    """Append one event to the audit log inside the open transaction."""
    at = at if at is not None else time.time()
    event_id = c.execute(
        "INSERT INTO events (at, actor, device_id, version, kind, result, detail) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " RETURNING id", (at, actor, device_id, version, kind, result, detail),
    ).fetchall()[0]["id"]
    return Event(int(event_id), at, actor, device_id, version, kind, result, detail)


def events(
    c: Db,
    device_id: str | None = None,
    version: str | None = None,
    kind: str | None = None,
    after_id: int = 0,
    limit: int = 500,
) -> list[Event]:
    """The last `limit` events after `after_id` matching the filters, oldest first."""
    where: list[str] = ["id > ?"]
    args: list[Any] = [after_id]
    for col, val in (("device_id", device_id), ("version", version), ("kind", kind)):
        if val is not None:
            where.append(f"{col} = ?")
            args.append(val)
    sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
    return [Event(**dict(r)) for r in reversed(c.execute(sql, (*args, limit)).fetchall())]
