"""`picoctl release remove`: a release no device runs and no rollout needs leaves the hub with the
blobs only it used; one in use stays and the hub says why; a hub starting drops blobs no release lists."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from picoctl.hub.db import BLOBS
from picoctl.sim.fleet import SimDevice
from conftest import Hub, running

PUMP = b"PUMP = 1\n" * 40  # shared by both releases: its blob stays while 1.1.0 lists it
V1 = {"main.py": b"print('v1')\n", "lib/pump.py": PUMP}
V2 = {"main.py": b"print('v2')\n", "lib/pump.py": PUMP}
CANARY_THEN_ALL: list[dict[str, Any]] = [{"name": "canary", "channel": "canary"}, {"name": "100%", "percent": 100}]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blobs(hub: Hub) -> set[str]:
    return {p.name for p in (hub.cfg.data_dir / "blobs").glob("??/*")}


def _cli(hub: Hub, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "picoctl", "--config", str(hub.site / "fleet.toml"), *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PICOCTL_HUB_URL": hub.url})


def _delete(hub: Hub, target: str, version: str, **headers: str) -> httpx.Response:
    return httpx.delete(f"{hub.url}/api/v1/releases/{target}/{version}", headers=headers or hub.auth, timeout=10)


def _two_releases(hub: Hub) -> tuple[dict[str, Any], dict[str, Any]]:
    old = hub.publish(hub.build_release("1.0.0", V1))["meta"]
    new = hub.publish(hub.build_release("1.1.0", V2))["meta"]
    return old, new


def test_a_release_no_one_needs_goes_with_the_blobs_only_it_used(hub: Hub) -> None:
    old, new = _two_releases(hub)
    only_old = {old["sha256"], _sha(V1["main.py"])}
    assert only_old | {new["sha256"], _sha(PUMP), _sha(V2["main.py"])} == _blobs(hub)

    run = _cli(hub, "release", "remove", "picow", "1.0.0")
    assert run.returncode == 0, run.stderr
    assert "removed picow 1.0.0 from the hub: 2 blob(s) only it used" in run.stdout
    assert _blobs(hub) == {new["sha256"], _sha(PUMP), _sha(V2["main.py"])}
    assert [r["version"] for r in hub.client.releases("picow")] == ["1.1.0"]
    for sha in only_old:
        assert httpx.get(f"{hub.url}/artifacts/{sha}", timeout=10).status_code == 404
    assert httpx.get(f"{hub.url}/artifacts/{_sha(PUMP)}", timeout=10).content == PUMP
    event = hub.client.history(kind="release_removed")[0]
    assert (event["version"], event["actor"], event["detail"]) == ("1.0.0", "operator", "target=picow")

    again = _delete(hub, "picow", "1.0.0")
    assert again.status_code == 404 and again.json()["error"] == "no release picow 1.0.0 on the hub"
    hub.publish(hub.site / "releases" / "picow-1.0.0")  # the same release may be published again
    assert httpx.get(f"{hub.url}/artifacts/{old['sha256']}", timeout=10).status_code == 200


def test_a_release_in_use_stays_and_the_hub_says_why(hub: Hub) -> None:
    _two_releases(hub)
    devs = {i: SimDevice(i, hub.register(i, channel=ch), files=dict(V1))
            for i, ch in (("can-1", "canary"), ("st-1", "stable"), ("st-2", "stable"), ("st-3", "stable"),
                          ("st-4", "stable"))}
    with httpx.Client(base_url=hub.url) as c:
        for d in devs.values():
            d.step(c)  # each reports 1.0.0
        refused = _delete(hub, "picow", "1.0.0")
        assert refused.status_code == 409
        assert refused.json()["error"] == ("release picow 1.0.0 is in use, so it stays: "
                                           "can-1, st-1, st-2 and 2 more run it")

        ro = hub.client.start_rollout("picow", "1.1.0", CANARY_THEN_ALL, 1, 1)
        assert _delete(hub, "picow", "1.1.0").json()["error"] == (
            f"release picow 1.1.0 is in use, so it stays: rollout {ro['id']} (active) moves devices to it")
        for d in devs.values():
            assert d.step(c) == "committed"
        assert hub.client.rollout(ro["id"])["state"] == "completed"

        run = _cli(hub, "release", "remove", "picow", "1.0.0")
        assert run.returncode != 0 and "Traceback" not in run.stderr
        assert f"rollout {ro['id']} may still be rolled back to it" in run.stderr
        assert _delete(hub, "picow", "1.1.0").json()["error"].endswith("can-1, st-1, st-2 and 2 more run it")
    assert [r["version"] for r in hub.client.releases("picow")] == ["1.0.0", "1.1.0"]
    assert hub.client.history(kind="release_removed") == []


@pytest.mark.parametrize(("target", "version", "status", "error"), [
    ("picow", "9.9.9", 404, "no release picow 9.9.9 on the hub"),
    ("esp32", "1.0.0", 400, "no release target 'esp32': one of pi, picow, pico"),
    ("picow", "1.0", 400, "version '1.0' is not a semantic version (expected X.Y.Z, e.g. 1.4.0)"),
    ("picow", "1.0.0%00", 400, "a NUL in the request's path or query"),
])
def test_a_removal_of_what_is_not_there_is_refused_clearly(hub: Hub, target: str, version: str, status: int,
                                                           error: str) -> None:
    hub.publish(hub.build_release("1.0.0", V1))
    r = _delete(hub, target, version)
    assert (r.status_code, r.json()["error"]) == (status, error)
    assert _delete(hub, "picow", "1.0.0", Authorization="Bearer wrong").status_code == 401
    assert [r["version"] for r in hub.client.releases()] == ["1.0.0"]


def test_a_hub_starting_drops_blobs_no_release_lists_and_nothing_else(hub: Hub) -> None:
    meta = hub.publish(hub.build_release("1.0.0", V1))["meta"]
    kept = _blobs(hub)
    root = hub.cfg.data_dir / "blobs"
    orphan = _sha(b"an upload a killed hub did not record")
    (root / orphan[:2]).mkdir(exist_ok=True)
    (root / orphan[:2] / orphan).write_bytes(b"an upload a killed hub did not record")
    strangers = [root / "README", root / orphan[:2] / "notes.txt", root / "zz" / orphan]
    for p in strangers:
        p.parent.mkdir(exist_ok=True)
        p.write_text("not a blob")
    hub.restart()
    assert _blobs(hub) == kept | {"notes.txt", orphan}  # zz/<sha> is not where a blob lives: not one
    assert not (root / orphan[:2] / orphan).exists() and all(p.exists() for p in strangers)
    assert "removed 1 blob(s) no release lists" in hub.log_path.read_text()
    assert httpx.get(f"{hub.url}/artifacts/{meta['sha256']}", timeout=10).status_code == 200


def test_on_a_shared_database_the_blobs_go_from_it_too(tmp_path: Path, pg_url: str) -> None:
    import psycopg

    a = Hub.create(tmp_path / "site", database_url=pg_url)
    with running(a, a.replica()) as (_, b):
        old, new = _two_releases(a)
        assert b.client.remove_release("picow", "1.0.0")["blobs_removed"] == 2
        with psycopg.connect(pg_url) as db:
            stored = {r[0] for r in db.execute(f"SELECT DISTINCT sha256 FROM {BLOBS}")}
        assert stored == {new["sha256"], _sha(PUMP), _sha(V2["main.py"])}
        (a.cfg.data_dir / "blobs" / _sha(PUMP)[:2] / _sha(PUMP)).unlink()  # a replica that never held it
        for h in (a, b):
            assert httpx.get(f"{h.url}/artifacts/{_sha(PUMP)}", timeout=10).content == PUMP
            assert httpx.get(f"{h.url}/artifacts/{old['sha256']}", timeout=10).status_code == 404
