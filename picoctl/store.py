"""SQLite store of the fleet: devices, heartbeats, releases, rollouts, offers and the event log.

WAL mode with `synchronous=FULL`: a write method returns only after its transaction is committed
and durable. The schema evolves through `MIGRATIONS`, tracked by `PRAGMA user_version`.
The hub is the single writer; readers (CLI, tests) may open their own connections.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

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
]


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


def _row_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for k in ("info", "readings", "meta", "stages"):
        if k in d and isinstance(d[k], str):
            d[k] = json.loads(d[k])
    return d


class Store:
    """One connection to the fleet database; methods are serialised by a lock."""

    def __init__(self, path: Path | str, heartbeat_history: int = 500) -> None:
        self.path = Path(path)
        self.heartbeat_history = heartbeat_history
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Apply every migration past `user_version`, each in its own transaction."""
        with self._lock:
            current = self.schema_version
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                self.conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed (durably) when the block leaves without error."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # a failed COMMIT (e.g. a full disk) leaves it open
                    self.conn.execute("ROLLBACK")
                raise

    def batch(self, jobs: Sequence[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
        """Run `jobs` in one durable transaction, each inside its own savepoint.

        Returns one entry per job: its result, or the exception it raised (its writes undone while
        the others' stay). An error of the transaction itself (e.g. a full disk at COMMIT) is raised.
        """
        out: list[Any] = []
        with self.transaction() as c:
            for job in jobs:
                c.execute("SAVEPOINT job")
                try:
                    out.append(job(c))
                except Exception as exc:  # noqa: BLE001 - handed back to the job's caller
                    c.execute("ROLLBACK TO job")
                    out.append(exc)
                c.execute("RELEASE job")
        return out

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, held for several reads in a row (one consistent view)."""
        with self._lock:
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                self.conn.execute("COMMIT")

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [_row_dict(r) for r in self.conn.execute(sql, tuple(args))]

    # --- devices ---------------------------------------------------------------------------

    def add_device(self, device_id: str, type_: str, key: str, channel: str = "stable") -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO devices (id, type, channel, key, registered_at) VALUES (?, ?, ?, ?, ?)",
                (device_id, type_, channel, key, time.time()),
            )
            add_event(c, "operator", "device_registered", device_id=device_id, detail=f"type={type_} channel={channel}")

    def device(self, device_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM devices WHERE id = ?", (device_id,))
        return rows[0] if rows else None

    def devices(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM devices ORDER BY id")

    def set_device_fields(self, device_id: str, **values: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        args = [json.dumps(v) if k == "info" else v for k, v in values.items()]
        with self.transaction() as c:
            c.execute(f"UPDATE devices SET {cols} WHERE id = ?", (*args, device_id))

    # --- heartbeats ------------------------------------------------------------------------

    def record_heartbeats(self, beats: list[dict[str, Any]]) -> None:
        """Store a batch of authenticated heartbeats in one transaction (group commit).

        Each beat: device_id, counter, at, and optionally version, seq, phase, uptime_s, mem_free,
        rssi, readings.
        """
        with self.transaction() as c:
            insert_heartbeats(c, beats, self.heartbeat_history)

    def heartbeats(self, device_id: str, limit: int = 200) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT * FROM heartbeats WHERE device_id = ? ORDER BY id DESC LIMIT ?", (device_id, limit)
        )
        return rows[::-1]

    # --- releases --------------------------------------------------------------------------

    def add_release(self, meta: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO releases (target, version, sha256, meta, published_at) VALUES (?, ?, ?, ?, ?)",
                (meta["target"], meta["version"], meta["sha256"], json.dumps(meta, sort_keys=True), time.time()),
            )
            add_event(c, "operator", "release_published", version=meta["version"], detail=f"target={meta['target']}")

    def release(self, target: str, version: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM releases WHERE target = ? AND version = ?", (target, version))
        return rows[0] if rows else None

    def releases(self, target: str | None = None) -> list[dict[str, Any]]:
        if target:
            return self.query("SELECT * FROM releases WHERE target = ? ORDER BY published_at", (target,))
        return self.query("SELECT * FROM releases ORDER BY target, published_at")

    # --- events ----------------------------------------------------------------------------

    def append_event(self, actor: str, kind: str, **fields: Any) -> int:
        """Append one event to the audit log; returns its id."""
        with self.transaction() as c:
            return add_event(c, actor, kind, **fields).id

    def events(
        self,
        device_id: str | None = None,
        version: str | None = None,
        kind: str | None = None,
        after_id: int = 0,
        limit: int = 500,
    ) -> list[Event]:
        where, args = ["id > ?"], [after_id]
        for col, val in (("device_id", device_id), ("version", version), ("kind", kind)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self.conn.execute(sql, (*args, limit)).fetchall()
        return [Event(**dict(r)) for r in reversed(rows)]


# --- writes on the connection of an open transaction (the hub's writer batches these) ---------

def insert_heartbeats(c: sqlite3.Connection, beats: Sequence[dict[str, Any]], history: int) -> None:
    """Append heartbeats, update each device's live fields, keep `history` beats per device."""
    for b in beats:
        readings = b.get("readings") or {}
        c.execute(
            "INSERT INTO heartbeats (device_id, at, version, uptime_s, mem_free, rssi, phase, readings)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (b["device_id"], b["at"], b.get("version"), b.get("uptime_s"), b.get("mem_free"), b.get("rssi"),
             b.get("phase"), json.dumps(readings)),
        )
        info = {k: b.get(k) for k in ("uptime_s", "mem_free", "rssi", "keys")} | {"readings": readings}
        c.execute(
            "UPDATE devices SET last_seen = ?, version = COALESCE(?, version), seq = MAX(seq, COALESCE(?, seq)),"
            " phase = COALESCE(?, phase), last_counter = MAX(last_counter, ?), info = ? WHERE id = ?",
            (b["at"], b.get("version"), b.get("seq"), b.get("phase"), b["counter"], json.dumps(info), b["device_id"]),
        )
    for device_id in {b["device_id"] for b in beats}:
        c.execute(
            "DELETE FROM heartbeats WHERE device_id = ? AND id <= ("
            " SELECT id FROM heartbeats WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (device_id, device_id, history),
        )


def add_event(
    c: sqlite3.Connection,
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
    cur = c.execute(
        "INSERT INTO events (at, actor, device_id, version, kind, result, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at, actor, device_id, version, kind, result, detail),
    )
    return Event(int(cur.lastrowid or 0), at, actor, device_id, version, kind, result, detail)


def one(c: sqlite3.Connection, sql: str, args: Iterable[Any] = ()) -> dict[str, Any] | None:
    """The first row of a query as a dict (JSON columns decoded), or None."""
    row = c.execute(sql, tuple(args)).fetchone()
    return _row_dict(row) if row is not None else None


def rows(c: sqlite3.Connection, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
    return [_row_dict(r) for r in c.execute(sql, tuple(args))]
