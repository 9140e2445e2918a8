"""SQLite store: migrations, durability seen from a second connection, append-only events."""

import sqlite3
import time
from pathlib import Path

import pytest

from picoctl.hub import store
from picoctl.hub.db import Store


def test_migrates_fresh_and_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    s = Store(db)
    assert s.schema_version == len(store.MIGRATIONS)
    s.close()
    s2 = Store(db)  # reopening applies nothing twice
    assert s2.schema_version == len(store.MIGRATIONS)
    assert s2.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migration_from_older_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "fleet.db"
    monkeypatch.setattr(store, "MIGRATIONS", store.MIGRATIONS[:1])
    Store(db).close()
    monkeypatch.setattr(store, "MIGRATIONS", store.MIGRATIONS + ["CREATE TABLE later (x INTEGER);"])
    s = Store(db)
    assert s.schema_version == len(store.MIGRATIONS)
    s.conn.execute("INSERT INTO later VALUES (1)")


def test_failed_migration_leaves_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "fleet.db"
    Store(db).close()
    before = len(store.MIGRATIONS)
    monkeypatch.setattr(store, "MIGRATIONS", store.MIGRATIONS + ["CREATE TABLE ok (x); SELECT no_such_fn();"])
    with pytest.raises(sqlite3.OperationalError):
        Store(db)
    c = sqlite3.connect(db)
    assert c.execute("PRAGMA user_version").fetchone()[0] == before
    assert not c.execute("SELECT name FROM sqlite_master WHERE name = 'ok'").fetchall()


def _register(s: Store, device_id: str) -> None:
    with s.transaction() as c:
        store.register_device(c, "operator", device_id, "picow", "stable", "00" * 32, time.time())


def test_every_acknowledged_write_is_visible_to_a_second_connection(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    s = Store(db)
    _register(s, "gh-01")
    beats = [
        {"device_id": "gh-01", "counter": i, "at": time.time(), "version": "1.0.0", "uptime_s": i,
         "mem_free": 1000, "rssi": -60, "readings": {"moisture": 40 + i}}
        for i in range(1, 6)
    ]
    with s.transaction() as c:
        assert all(store.record_heartbeats(c, beats, [b["counter"] for b in beats])[0])
    with s.transaction() as c:
        event_id = store.add_event(c, "test", "probe", device_id="gh-01", detail="x").id
    other = sqlite3.connect(db)
    assert other.execute("SELECT COUNT(*) FROM heartbeats").fetchone()[0] == 5
    assert other.execute("SELECT last_counter FROM devices").fetchone()[0] == 5
    assert other.execute("SELECT kind FROM events WHERE id = ?", (event_id,)).fetchone()[0] == "probe"


def test_registering_records_its_event_and_refuses_a_taken_id(tmp_path: Path) -> None:
    s = Store(tmp_path / "fleet.db")
    _register(s, "gh-01")
    with s.transaction() as c:
        assert store.register_device(c, "operator", "gh-01", "picow", "canary", "11" * 32, time.time()) is None
    with s.reading() as c:
        assert store.device(c, "gh-01")["channel"] == "stable"
        assert [(e.kind, e.device_id) for e in store.events(c)] == [("device_registered", "gh-01")]


def test_heartbeat_history_is_bounded(tmp_path: Path) -> None:
    s = Store(tmp_path / "fleet.db")
    _register(s, "gh-01")
    for i in range(1, 26):
        with s.transaction() as c:
            store.record_heartbeats(c, [{"device_id": "gh-01", "at": float(i)}], [i])
            store.prune_heartbeats(c, ["gh-01"], 10)
    with s.reading() as c:
        hist = store.heartbeats(c, "gh-01", limit=100)
    assert len(hist) == 10 and hist[-1]["at"] == 25.0 and hist[0]["at"] == 16.0


def test_event_log_is_append_only(tmp_path: Path) -> None:
    s = Store(tmp_path / "fleet.db")
    with s.transaction() as c:
        store.add_event(c, "op", "note")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        s.conn.execute("UPDATE events SET kind = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        s.conn.execute("DELETE FROM events")


def test_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path / "fleet.db")
    with pytest.raises(RuntimeError):
        with s.transaction() as c:
            store.add_event(c, "a", "k", at=1.0)
            raise RuntimeError("boom")
    with s.reading() as c:
        assert store.events(c) == []
