"""The store on a real PostgreSQL server: the same schema as SQLite, append-only events, atomic counters,
refusals at start (unreachable, schema too new), and `picoctl hub migrate`."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from picoctl.errors import PicoctlError
from picoctl.hub import store
from picoctl.hub.db import BLOBS, EVENT_IDS, Store
from picoctl.sim.fleet import SimDevice
from conftest import Hub, free_port


def _register(s: Store, device_id: str) -> None:
    with s.transaction() as c:
        store.register_device(c, "operator", device_id, "picow", "stable", "00" * 32, time.time())


def _columns_sqlite(db: Path) -> dict[str, list[str]]:
    c = sqlite3.connect(db)
    tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                      " AND name NOT LIKE 'sqlite_%'")]
    return {t: [r[1] for r in c.execute(f"PRAGMA table_info({t})")] for t in tables}


def _columns_pg(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT table_name, column_name FROM information_schema.columns"
                         " WHERE table_schema = 'public' AND table_name NOT IN ('schema_version', %s, %s)"
                         " ORDER BY table_name, ordinal_position", (EVENT_IDS, BLOBS)).fetchall()  # PostgreSQL's own
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def test_the_same_schema_on_both(tmp_path: Path, pg_url: str) -> None:
    Store(tmp_path / "fleet.db").close()
    s = Store(pg_url)
    assert s.schema_version == len(store.MIGRATIONS)
    assert _columns_pg(pg_url) == _columns_sqlite(tmp_path / "fleet.db")
    s.close()
    assert Store(pg_url).schema_version == len(store.MIGRATIONS)  # reopening applies nothing twice


def test_event_log_is_append_only(pg_url: str) -> None:
    s = Store(pg_url)
    with s.transaction() as c:
        store.add_event(c, "op", "note")
    for sql in ("UPDATE events SET kind = 'x'", "DELETE FROM events", "TRUNCATE events"):
        with pytest.raises(psycopg.Error, match="append-only"):
            with s.transaction() as c:
                c.execute(sql)
    with s.reading() as c:
        assert [e.kind for e in store.events(c)] == ["note"]


def test_times_keep_their_precision(pg_url: str) -> None:
    s = Store(pg_url)
    at = 1796116562.3398643
    with s.transaction() as c:
        store.add_event(c, "op", "note", at=at)
    with s.reading() as c:
        assert store.events(c)[0].at == at


def test_two_hubs_taking_one_counter_at_once_only_one_succeeds(pg_url: str) -> None:
    stores = [Store(pg_url) for _ in range(2)]
    _register(stores[0], "gh-01")
    for counter in range(1, 31):
        barrier = threading.Barrier(2)
        won: list[bool] = []

        def take(s: Store, counter: int = counter, barrier: threading.Barrier = barrier,
                 won: list[bool] = won) -> None:
            with s.transaction() as c:
                barrier.wait()
                won.append(store.claim_counters(c, [("gh-01", counter)])[0] is not None)
                time.sleep(0.005)  # hold the row a moment: the other one waits for this commit

        threads = [threading.Thread(target=take, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(won) == [False, True], counter


def test_one_offer_per_seq_of_a_device(pg_url: str) -> None:
    s = Store(pg_url)
    _register(s, "gh-01")
    with s.transaction() as c:
        a = store.insert_rollout(c, "picow", "1.1.0", None, "update", [], 0, 0, 1.0)
        b = store.insert_rollout(c, "picow", "1.2.0", None, "update", [], 0, 0, 1.0)
        seq = store.make_offer(c, "gh-01", a, "1.1.0", 1.0)
    with pytest.raises(psycopg.errors.UniqueViolation):
        with s.transaction() as c:
            c.execute("INSERT INTO offers (device_id, rollout_id, version, seq, phase, updated_at)"
                      " VALUES (?, ?, ?, ?, 'offered', 1)", ("gh-01", b, "1.2.0", seq))


def test_schema_newer_than_the_code_is_refused(tmp_path: Path, pg_url: str) -> None:
    Store(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("UPDATE schema_version SET version = 99")
    known = len(store.MIGRATIONS)
    with pytest.raises(PicoctlError, match=f"schema is version 99, newer than this picoctl knows \\({known}\\)"):
        Store(pg_url)
    db = tmp_path / "fleet.db"
    Store(db).close()
    sqlite3.connect(db).execute("PRAGMA user_version = 42")
    with pytest.raises(PicoctlError, match=f"version 42, newer than this picoctl knows \\({known}\\)"):
        Store(db)


def _serve(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "picoctl", "--config", str(site / "fleet.toml"), "serve",
                           "--host", "127.0.0.1", "--port", str(free_port()), *args],
                          capture_output=True, text=True, timeout=60)


def test_an_unreachable_database_at_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    hub = Hub.create(tmp_path / "site", database_url=f"postgresql://picoctl:secret@127.0.0.1:{free_port()}/fleet")
    done = _serve(hub.site)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "postgresql://picoctl:***@127.0.0.1" in lines[0], done.stderr
    assert "cannot open the hub's store" in lines[0]
    assert "Connection refused" in lines[0]
    assert "secret" not in done.stderr and "Traceback" not in done.stderr


def test_a_too_new_schema_stops_the_hub_at_start(tmp_path: Path, pg_url: str) -> None:
    Store(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("UPDATE schema_version SET version = 99")
    hub = Hub.create(tmp_path / "site", database_url=pg_url)
    done = _serve(hub.site)
    assert done.returncode == 1 and "version 99, newer than this picoctl knows" in done.stderr, done.stderr


# --- picoctl hub migrate ---------------------------------------------------------------------------

def _picoctl(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "picoctl", "--config", str(site / "fleet.toml"), *args],
                          capture_output=True, text=True, timeout=120)


def test_migrate_copies_state_and_history_and_the_hub_serves_it(tmp_path: Path, pg_url: str) -> None:
    hub = Hub.create(tmp_path / "site")
    hub.start()
    try:
        key = hub.register("gh-01", channel="canary")
        device = SimDevice("gh-01", key)
        with httpx.Client(base_url=hub.url) as c:
            for _ in range(5):
                device.heartbeat(c)
        hub.client.check_now("gh-01")
        artifact = hub.publish(hub.build_release("1.1.0", {"main.py": b"print('v2')\n"}))["meta"]["sha256"]
        before = {"devices": hub.client.devices(), "history": hub.client.history(limit=1000)}
    finally:
        hub.kill()
    done = _picoctl(hub.site, "hub", "migrate", "--to", pg_url, "--json")
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts["devices"] == 1 and counts["heartbeats"] == 5 and counts["events"] == len(before["history"])

    moved = Hub.create(tmp_path / "moved", database_url=pg_url)
    moved.start()
    try:
        after = moved.client.devices()
        assert [(d["id"], d["seq"], d["check_now"], d["last_seen"]) for d in after] == \
               [(d["id"], d["seq"], d["check_now"], d["last_seen"]) for d in before["devices"]]
        assert moved.client.history(limit=1000) == before["history"]
        _, raw, headers = device.heartbeat_request()
        with httpx.Client(base_url=moved.url) as c:
            assert c.post("/heartbeat", content=raw, headers=headers).status_code == 200  # the device goes on
            assert c.post("/heartbeat", content=raw, headers=headers).status_code == 403  # a replay does not
        assert moved.client.device("gh-01")["heartbeats"][-1]["at"] > before["devices"][0]["last_seen"]
        served = httpx.get(f"{moved.url}/artifacts/{artifact}")  # from the database: its data folder is new
        assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == artifact
    finally:
        moved.close()
        hub.close()

    again = _picoctl(hub.site, "hub", "migrate", "--to", pg_url)
    assert again.returncode == 1 and "is not empty" in again.stderr and "Traceback" not in again.stderr


def test_migrate_refuses_while_a_hub_serves_the_site(hub: Hub, pg_url: str) -> None:
    done = _picoctl(hub.site, "hub", "migrate", "--to", pg_url)
    assert done.returncode == 1 and "another hub is already serving" in done.stderr, done.stderr
