"""Removing a release, attacked from outside: a removal racing a rollout of the same release on another
replica; what a replica killed mid-upload left in the shared database; a blobs folder removed under a
hub; a very long version."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path
from typing import Callable, Iterator

import httpx
import psycopg
import pytest

from picoctl.hub.db import BLOBS
from picoctl.release import blobs_of
from picoctl.sim.fleet import SimDevice
from conftest import Hub, running
from waiting import wait_for

STAGES = [{"name": "all", "percent": 100}]


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str) -> Iterator[tuple[Hub, Hub]]:
    a = Hub.create(tmp_path / "site", database_url=pg_url)
    with running(a, a.replica()) as (_, b):
        yield a, b


def _waiting_locks(pg_url: str) -> int:
    with psycopg.connect(pg_url, autocommit=True) as c:
        row = c.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()
        return int(row[0]) if row else 0


def _race(pg_url: str, remove: Callable[[], httpx.Response], other: Callable[[], httpx.Response]
          ) -> list[httpx.Response]:
    """`remove` (a removal on one replica) held at the blobs' lock once its checks are done, `other` (a
    change on the other replica) sent meanwhile, then both let go; their answers."""
    answers: dict[int, httpx.Response] = {}

    def run(n: int, call: Callable[[], httpx.Response]) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.__setitem__(n, call()))
        thread.start()
        return thread

    with psycopg.connect(pg_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(2, 0)")
        removing = run(0, remove)
        wait_for(lambda: _waiting_locks(pg_url) == 1, 10, "the removal waiting for the blobs' lock")
        changing = run(1, other)
        wait_for(lambda: 1 in answers or _waiting_locks(pg_url) == 2, 10, "the change answered or waiting")
        holder.rollback()
        removing.join(30)
        changing.join(30)
    return [answers[0], answers[1]]


def test_a_rollout_started_on_one_replica_while_another_removes_its_release_never_both(
        replicas: tuple[Hub, Hub], pg_url: str) -> None:
    a, b = replicas
    a.publish(a.build_release("1.0.0", {"main.py": b"print(1)\n"}))
    answers = _race(pg_url, lambda: httpx.delete(f"{a.url}/api/v1/releases/picow/1.0.0", headers=a.auth, timeout=30),
                    lambda: httpx.post(f"{b.url}/api/v1/rollouts", headers=b.auth, timeout=30,
                                       json={"target": "picow", "version": "1.0.0", "stages": STAGES}))
    removed, started = answers[0].status_code == 200, answers[1].status_code == 201
    assert removed != started, (answers[0].text, answers[1].text)
    releases = [r["version"] for r in a.client.releases("picow")]
    active = [r for r in a.client.rollouts() if r["state"] == "active"]
    assert bool(releases) == bool(active), (releases, active)
    if removed:
        assert answers[1].status_code == 404, answers[1].text


def test_a_rollback_on_one_replica_to_a_release_another_removes_never_both(
        replicas: tuple[Hub, Hub], pg_url: str) -> None:
    a, b = replicas
    files = {"main.py": b"print(0)\n"}
    for n in range(3):
        a.publish(a.build_release(f"1.{n}.0", {"main.py": b"print(%d)\n" % n}))
    device = SimDevice("gh-01", a.register("gh-01"), files=files, version="1.0.0")
    done = []
    with httpx.Client(base_url=a.url) as c:
        device.step(c)
        for version in ("1.1.0", "1.2.0"):  # two rollouts completed: 1.0.0 is no longer the newest's to go back to
            done.append(a.client.start_rollout("picow", version, STAGES, 1, 0)["id"])
            assert device.step(c) == "committed"
            assert a.client.rollout(done[-1])["state"] == "completed"
    answers = _race(pg_url, lambda: httpx.delete(f"{a.url}/api/v1/releases/picow/1.0.0", headers=a.auth, timeout=30),
                    lambda: httpx.post(f"{b.url}/api/v1/rollouts/{done[0]}/rollback", headers=b.auth, timeout=30,
                                       json={"reason": "by hand"}))
    removed, rolled_back = answers[0].status_code == 200, answers[1].status_code == 200
    assert removed != rolled_back, (answers[0].text, answers[1].text)
    active = [r for r in a.client.rollouts() if r["state"] == "active"]
    assert [r["version"] for r in active] == ([] if removed else ["1.0.0"]), active


def test_a_blob_a_killed_replica_shared_but_never_recorded_leaves_the_database_at_a_start(
        replicas: tuple[Hub, Hub], pg_url: str) -> None:
    a, b = replicas
    meta = a.publish(a.build_release("1.0.0", {"main.py": b"print(1)\n"}))["meta"]
    orphan = hashlib.sha256(b"an upload's artifact").hexdigest()
    with psycopg.connect(pg_url) as c:  # what a replica killed between sharing and recording leaves
        c.execute(f"INSERT INTO {BLOBS} (sha256, n, data) VALUES (%s, 0, %s)", (orphan, b"an upload's artifact"))
    b.restart()
    with psycopg.connect(pg_url) as c:
        held = {r[0] for r in c.execute(f"SELECT DISTINCT sha256 FROM {BLOBS}")}
    assert held == blobs_of(meta), held
    for sha in blobs_of(meta):  # both serve the release from the database still
        (a.cfg.data_dir / "blobs" / sha[:2] / sha).unlink()
    for hub in (a, b):
        for sha in blobs_of(meta):
            got = httpx.get(f"{hub.url}/artifacts/{sha}", timeout=10)
            assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == sha


def test_a_blobs_folder_someone_removed_is_made_again_as_it_is_needed(replicas: tuple[Hub, Hub]) -> None:
    a, b = replicas
    meta = a.publish(a.build_release("1.0.0", {"main.py": b"print(1)\n"}))["meta"]
    shutil.rmtree(a.cfg.data_dir / "blobs")
    for sha in blobs_of(meta):  # fetched from the database again
        got = httpx.get(f"{b.url}/artifacts/{sha}", timeout=10)
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == sha
    shutil.rmtree(a.cfg.data_dir / "blobs")
    assert a.publish(a.build_release("1.1.0", {"main.py": b"print(2)\n"}))["added"] is True
    assert "Traceback" not in a.log_path.read_text() + b.log_path.read_text()


def test_a_very_long_version_is_refused_in_a_short_line(hub: Hub) -> None:
    got = httpx.delete(f"{hub.url}/api/v1/releases/picow/{'1' * 5000}", headers=hub.auth, timeout=10)
    assert got.status_code == 400 and got.json()["error"] == (
        f"version '{'1' * 80}'… is not a semantic version (expected X.Y.Z, e.g. 1.4.0)")
