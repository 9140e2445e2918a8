"""SQLite store: migrations, durability seen from a second connection, append-only events."""

import sqlite3
import time
from pathlib import Path

import pytest

from picoctl import store as store_mod
from picoctl.store import Store


def test_migrates_fresh_and_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    s = Store(db)
    assert s.schema_version == len(store_mod.MIGRATIONS)
    s.close()
    s2 = Store(db)  # reopening applies nothing twice
    assert s2.schema_version == len(store_mod.MIGRATIONS)
    assert s2.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migration_from_older_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "fleet.db"
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:1])
    Store(db).close()
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS + ["CREATE TABLE later (x INTEGER);"])
    s = Store(db)
    assert s.schema_version == len(store_mod.MIGRATIONS)
    s.conn.execute("INSERT INTO later VALUES (1)")


def test_failed_migration_leaves_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "fleet.db"
    Store(db).close()
    before = len(store_mod.MIGRATIONS)
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS + ["CREATE TABLE ok (x); SELECT no_such_fn();"])
    with pytest.raises(sqlite3.OperationalError):
        Store(db)
    c = sqlite3.connect(db)
    assert c.execute("PRAGMA user_version").fetchone()[0] == before
    assert not c.execute("SELECT name FROM sqlite_master WHERE name = 'ok'").fetchall()


def test_every_acknowledged_write_is_visible_to_a_second_connection(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    s = Store(db)
    s.add_device("gh-01", "picow", "00" * 32)
    beats = [
        {"device_id": "gh-01", "counter": i, "at": time.time(), "version": "1.0.0", "uptime_s": i,
         "mem_free": 1000, "rssi": -60, "readings": {"moisture": 40 + i}}
        for i in range(1, 6)
    ]
    s.record_heartbeats(beats)
    event_id = s.append_event("test", "probe", device_id="gh-01", detail="x")
    other = sqlite3.connect(db)
    assert other.execute("SELECT COUNT(*) FROM heartbeats").fetchone()[0] == 5
    assert other.execute("SELECT last_counter FROM devices").fetchone()[0] == 5
    assert other.execute("SELECT kind FROM events WHERE id = ?", (event_id,)).fetchone()[0] == "probe"


def test_heartbeat_history_is_bounded(tmp_path: Path) -> None:
    s = Store(tmp_path / "fleet.db", heartbeat_history=10)
    s.add_device("gh-01", "picow", "00" * 32)
    for i in range(1, 26):
        s.record_heartbeats([{"device_id": "gh-01", "counter": i, "at": float(i)}])
    hist = s.heartbeats("gh-01", limit=100)
    assert len(hist) == 10 and hist[-1]["at"] == 25.0 and hist[0]["at"] == 16.0


def test_event_log_is_append_only(tmp_path: Path) -> None:
    s = Store(tmp_path / "fleet.db")
    s.append_event("op", "note")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        s.conn.execute("UPDATE events SET kind = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        s.conn.execute("DELETE FROM events")


def test_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path / "fleet.db")
    with pytest.raises(RuntimeError):
        with s.transaction() as c:
            c.execute("INSERT INTO events (at, actor, kind) VALUES (1, 'a', 'k')")
            raise RuntimeError("boom")
    assert s.events() == []
