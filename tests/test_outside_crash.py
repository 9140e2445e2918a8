"""`picoctl serve` SIGKILLed at random instants while boards post (heartbeats, checks, updates) and an
operator publishes, starts rollouts, promotes, halts, resumes and rolls back. After each kill the
store, read as the dead hub left it, shows nothing half-written: a release has its whole artifact and
its `release_published` entry, a rollout's last audit entry is its state, no entry names a change that
is not there; and after the restart every change the operator was told of is there."""

from __future__ import annotations

import hashlib
import json
import random
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from picoctl import signing
from picoctl.client import HubClient
from picoctl.errors import PicoctlError
from picoctl.hub.db import BLOBS
from picoctl.sim.fleet import DeviceProtocolError, SimDevice
from picoctl.sim.local_hub import LocalHub

KILLS = 6
BOARDS = 6
STAGES = [{"name": "canary", "percent": 50}, {"name": "all", "percent": 100}]
ROLLOUT_EVENT = re.compile(r"rollout (\d+) stage (\S+): ")


def _boards(hub: LocalHub, boards: list[SimDevice], stop: threading.Event) -> None:
    """Each board's agent cycle, over and over, until the hub goes away."""
    with httpx.Client(base_url=hub.url, timeout=5) as c:
        while not stop.is_set():
            for board in boards:
                try:
                    board.step(c)
                except (httpx.HTTPError, DeviceProtocolError):
                    return


def _operator(hub: LocalHub, rng: random.Random, releases: list[Path], told: dict[str, Any], stop: threading.Event) -> None:
    """Publishes the next release, rolls it out and acts on the rollout at random; what the hub took
    (answered 2xx) goes into `told`. A refusal (409: not in a state for that) is part of the game."""
    with HubClient(hub.url, hub.token, timeout=5) as client:
        while not stop.is_set():
            try:
                live = [r for r in client.rollouts() if r["state"] in ("active", "halted")]
                if not live and releases:
                    rel = releases.pop(0)
                    meta = client.publish(rel)["meta"]
                    told["releases"].add(meta["version"])
                    r = client.start_rollout("picow", meta["version"], STAGES, 0, 0)
                    told["rollouts"][r["id"]] = r["state"]
                elif live:
                    action = rng.choice(("promote", "halt", "resume", "rollback"))
                    r = client.rollout_action(live[0]["id"], action, "chaos")
                    told["rollouts"][r["id"]] = r["state"]
                else:
                    return
            except PicoctlError as exc:
                if "HTTP 409" not in str(exc) and "refused" not in str(exc):
                    return  # the hub went away


def _as_left(hub: LocalHub) -> dict[str, Any]:
    """The store's releases, rollouts and events, and (PostgreSQL) the sha256 of each blob it holds."""
    queries = {"releases": "SELECT * FROM releases", "rollouts": "SELECT * FROM rollouts",
               "events": "SELECT * FROM events ORDER BY id"}
    url = hub.cfg.hub.database_url
    if url:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(url, row_factory=dict_row) as db:
            out: dict[str, Any] = {k: db.execute(q).fetchall() for k, q in queries.items()}
            chunks: dict[str, Any] = {}
            for row in db.execute(f"SELECT sha256, data FROM {BLOBS} ORDER BY sha256, n"):
                chunks.setdefault(row["sha256"], hashlib.sha256()).update(row["data"])
            out["shared"] = {sha: h.hexdigest() for sha, h in chunks.items()}
            return out
    db = sqlite3.connect(hub.cfg.data_dir / "fleet.db")
    db.row_factory = sqlite3.Row
    try:
        return {k: [dict(r) for r in db.execute(q)] for k, q in queries.items()} | {"shared": None}
    finally:
        db.close()


def _assert_nothing_half_written(hub: LocalHub) -> None:
    left = _as_left(hub)
    published = {e["version"] for e in left["events"] if e["kind"] == "release_published"}
    for rel in left["releases"]:
        blob = hub.cfg.data_dir / "blobs" / rel["sha256"][:2] / rel["sha256"]
        assert blob.is_file() and signing.sha256_file(blob) == rel["sha256"], f"release {rel['version']} without its whole artifact"
        assert rel["version"] in published, f"release {rel['version']} without its audit entry"
        if left["shared"] is not None:  # what the other replicas serve it from
            assert left["shared"].get(rel["sha256"]) == rel["sha256"], f"release {rel['version']} without its shared blob"
    assert published == {r["version"] for r in left["releases"]}, "an audit entry of a release that is not there"
    rollouts = {r["id"]: r for r in left["rollouts"]}
    last: dict[int, dict[str, Any]] = {}
    for e in left["events"]:
        m = ROLLOUT_EVENT.match(e["detail"] or "")
        if e["kind"].startswith("rollout_") and m:
            assert int(m.group(1)) in rollouts, f"{e['kind']} of rollout {m.group(1)}, which is not there"
            last[int(m.group(1))] = {"state": e["result"], "stage": m.group(2)}
    for rid, row in rollouts.items():
        stage = json.loads(row["stages"])[row["stage_index"]]["name"]
        assert last.get(rid) == {"state": row["state"], "stage": stage}, (rid, row["state"], stage, last.get(rid))


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_hub_killed_at_random_instants_leaves_nothing_half_written(tmp_path: Path, store: str,
                                                                    request: pytest.FixtureRequest) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    settings = {"database_url": request.getfixturevalue("pg_url")} if store == "postgresql" else {}
    hub = LocalHub.create(tmp_path / "site", **settings)
    versions = [f"1.{i}.0" for i in range(KILLS * 3)]
    releases = [hub.build_release(v, {"main.py": f"print('{v}')\n".encode(), "lib/data.bin": rng.randbytes(200_000)})
                for v in versions]
    hub.start()
    try:
        boards = [SimDevice(f"kb-{i:02d}", hub.register(f"kb-{i:02d}")) for i in range(BOARDS)]
        hub.publish(releases.pop(0))
        told: dict[str, Any] = {"releases": {"1.0.0"}, "rollouts": {}}
        for _ in range(KILLS):
            stop = threading.Event()
            threads = [threading.Thread(target=_boards, args=(hub, boards[i::2], stop)) for i in range(2)]
            threads.append(threading.Thread(target=_operator, args=(hub, rng, releases, told, stop)))
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 2.5))
            hub.kill()
            stop.set()
            for t in threads:
                t.join(20)
                assert not t.is_alive(), f"seed {seed}: a client hung on a dead hub"
            _assert_nothing_half_written(hub)
            hub.start()
            on_hub = {r["version"] for r in hub.client.releases()}
            assert told["releases"] <= on_hub, (seed, told["releases"] - on_hub)
            kept = {r["id"] for r in hub.client.rollouts()}
            assert set(told["rollouts"]) <= kept, (seed, set(told["rollouts"]) - kept)  # their states may move on
            assert not list((hub.cfg.data_dir / "tmp").iterdir()), f"seed {seed}: an upload left behind"
        assert len(told["rollouts"]) >= 2, f"seed {seed}: the operator hardly got going"
        assert store == "sqlite" or len(_as_left(hub)["shared"]) >= 2  # the shared blobs were looked at
    finally:
        hub.close()
