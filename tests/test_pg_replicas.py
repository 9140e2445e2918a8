"""Two `picoctl serve` replicas on one PostgreSQL database: devices known to both, counters accepted
exactly once, one event stream, one rollout engine that moves when its replica is SIGKILLed, the
database lost and back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import httpx
import psycopg
import pytest

from picoctl import config
from picoctl.hub.blobs import FETCH_PREFIX
from picoctl.hub.db import BLOBS, LEADER_LOCK
from picoctl.sim.fleet import DeviceProtocolError, SimDevice
from picoctl.sim.postgres import TempPostgres
from conftest import Hub, running
from waiting import wait_for

TRIAL_TIMEOUT_S = 2


def _pair(site: Path, url: str) -> tuple[Hub, Hub]:
    a = Hub.create(site, database_url=url)
    cfg = config.load(site / "fleet.toml")
    cfg.rollout.trial_timeout_s = TRIAL_TIMEOUT_S
    config.save(cfg, site / "fleet.toml")
    a.cfg = cfg
    return a, a.replica()


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str) -> Iterator[tuple[Hub, Hub]]:
    a, b = _pair(tmp_path / "site", pg_url)
    with running(a, b):
        yield a, b


def _post(url: str, raw: bytes, headers: dict[str, str]) -> int:
    return httpx.post(f"{url}/heartbeat", content=raw, headers=headers, timeout=10).status_code


def test_a_device_registered_through_one_is_served_by_the_other(replicas: tuple[Hub, Hub]) -> None:
    a, b = replicas
    device = SimDevice("gh-01", a.register("gh-01"))
    with httpx.Client(base_url=b.url) as c:
        assert device.heartbeat(c)["check_now"] is False
    a.client.check_now("gh-01")
    with httpx.Client(base_url=b.url) as c:
        assert device.heartbeat(c)["check_now"] is True  # asked through A, told by B, once
        assert device.heartbeat(c)["check_now"] is False
    assert b.client.device("gh-01")["heartbeats"][-1]["uptime_s"] == device.uptime_s


def test_racing_and_replayed_counters_are_accepted_exactly_once(replicas: tuple[Hub, Hub]) -> None:
    a, b = replicas
    device = SimDevice("gh-01", a.register("gh-01"))
    sent: list[tuple[bytes, dict[str, str]]] = []
    for _ in range(40):
        _, raw, headers = device.heartbeat_request()
        sent.append((raw, headers))
        barrier = threading.Barrier(2)
        codes: list[int] = []

        def race(url: str, raw: bytes = raw, headers: dict[str, str] = headers,
                 barrier: threading.Barrier = barrier, codes: list[int] = codes) -> None:
            barrier.wait()
            codes.append(_post(url, raw, headers))

        threads = [threading.Thread(target=race, args=(h.url,)) for h in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(codes) == [200, 403], codes
    for raw, headers in sent[::7]:  # replays, later, through either replica
        assert _post(a.url, raw, headers) == 403 and _post(b.url, raw, headers) == 403
    dev = b.client.device("gh-01")
    assert len(dev["heartbeats"]) == 40
    assert [h["uptime_s"] for h in dev["heartbeats"]] == sorted({h["uptime_s"] for h in dev["heartbeats"]})


def test_a_device_removed_through_one_is_unknown_to_the_other(replicas: tuple[Hub, Hub]) -> None:
    a, b = replicas
    device = SimDevice("gh-01", a.register("gh-01"))
    with httpx.Client(base_url=b.url) as c:
        device.heartbeat(c)  # B holds its key now
        a.client.remove_device("gh-01")
        for _ in range(2):
            _, raw, headers = device.heartbeat_request()
            r = c.post("/heartbeat", content=raw, headers=headers)
            assert r.status_code == 403 and r.json()["error"] == "unknown device 'gh-01'"
    def refusals() -> list[str]:  # security events are written after the answer, not before it
        found = [e["detail"] for e in a.client.history(kind="security")]
        return found if len(found) >= 2 else []

    found = wait_for(refusals, 30, "both refusals in the security log")
    assert len(found) == 2 and all("unknown device 'gh-01'" in d for d in found), found


def test_a_log_posted_through_one_is_answered_on_the_other(replicas: tuple[Hub, Hub]) -> None:
    a, b = replicas
    device = SimDevice("gh-01", a.register("gh-01"))
    assert a.client.device_logs("gh-01")["answered_at"] == 0
    a.client.request_log("gh-01", 60)
    with httpx.Client(base_url=b.url) as c:
        assert device.heartbeat(c)["log_s"] > 0  # asked through A, told by B
        before = time.time()
        device.post(c, "/logs", {"id": "gh-01", "counter": device.counter(), "lines": [[0, "hello"]]}, True)
    shown = a.client.device_logs("gh-01")
    assert shown["answered_at"] >= before and [x["line"] for x in shown["lines"]] == ["hello"]


def _stream(hub: Hub, out: list[tuple[str, dict]], ready: threading.Event, stop: threading.Event) -> None:
    try:
        _read_stream(hub, out, ready, stop)
    except httpx.HTTPError:  # the hub stopped at the end of the test
        pass


def _read_stream(hub: Hub, out: list[tuple[str, dict]], ready: threading.Event, stop: threading.Event) -> None:
    with httpx.stream("GET", f"{hub.url}/api/v1/events", headers=hub.auth,
                      timeout=httpx.Timeout(5, read=None)) as r:
        event = ""
        for line in r.iter_lines():
            if line.startswith(":"):
                ready.set()
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
            if stop.is_set():
                return


def test_the_event_stream_of_each_carries_changes_made_through_the_other(replicas: tuple[Hub, Hub]) -> None:
    a, b = replicas
    seen: list[tuple[str, dict]] = []
    ready, stop = threading.Event(), threading.Event()
    reader = threading.Thread(target=_stream, args=(b, seen, ready, stop), daemon=True)
    reader.start()
    assert ready.wait(10)
    device = SimDevice("gh-01", a.register("gh-01"))
    with httpx.Client(base_url=a.url) as c:
        device.heartbeat(c)
    files = {"main.py": b"print('hi')\n"} | {f"lib/module_{i:03d}.py": b"X = %d\n" % i for i in range(60)}
    rel = a.build_release("1.1.0", files)
    a.publish(rel)  # its meta (60 files) is larger than one notification: sent in parts, heard whole
    wait_for(lambda: {"device", "heartbeat", "release"} <= {e for e, _ in seen}, 15, "a device, a heartbeat and a release event")
    stop.set()
    assert any(e == "device" and d["id"] == "gh-01" for e, d in seen)
    assert any(e == "heartbeat" and d["device_id"] == "gh-01" for e, d in seen)
    published = next(d for e, d in seen if e == "release")
    assert len(published["meta"]["files"]) == 61


class _Events:
    """One client's event stream from a hub, read line by line with a bound on every wait."""

    def __init__(self, hub: Hub, last_event_id: str | None = None) -> None:
        headers = hub.auth | ({"Last-Event-ID": last_event_id} if last_event_id else {})
        self._cm = httpx.stream("GET", f"{hub.url}/api/v1/events", headers=headers, timeout=httpx.Timeout(20))
        self._lines = self._cm.__enter__().iter_lines()
        assert next(self._lines) == ": connected"

    def until(self, done: Callable[[list[tuple[str, str, dict]]], bool]) -> list[tuple[str, str, dict]]:
        """(id, event, data) of each message until `done` says the ones so far are enough."""
        got: list[tuple[str, str, dict]] = []
        message_id = event = ""
        deadline = time.monotonic() + 30  # checked at each line: the hub pings an idle stream every 15 s
        while not done(got):
            assert time.monotonic() < deadline, f"the stream stopped short: {got}"
            line = next(self._lines)
            if line.startswith("id: "):
                message_id = line[4:]
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                got.append((message_id, event, json.loads(line[6:])))
                message_id = ""
        return got

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


def _beats_of(n: int, device_id: str) -> Callable[[list[tuple[str, str, dict]]], bool]:
    return lambda got: sum(e == "heartbeat" and d["device_id"] == device_id for _, e, d in got) >= n


def test_a_client_resumes_its_event_stream_on_the_other_replica_without_loss_or_duplicates(
        replicas: tuple[Hub, Hub]) -> None:
    a, b = replicas
    whole = _Events(a)  # the stream as a client that never left sees it
    one, two = SimDevice("gh-01", a.register("gh-01")), SimDevice("gh-02", b.register("gh-02"))
    clients = [httpx.Client(base_url=h.url, timeout=10) for h in (a, b)]
    client = _Events(a)
    for i in range(4):  # through both replicas in turn
        one.heartbeat(clients[i % 2])
        two.heartbeat(clients[(i + 1) % 2])
    first = client.until(_beats_of(4, "gh-02"))
    client.close()  # the client's link to A drops; it reconnects, through the balancer, to B
    last = first[-1][0]
    for i in range(3):  # changes made while it was away, through both
        one.heartbeat(clients[i % 2])
        two.heartbeat(clients[(i + 1) % 2])
    b.client.set_channel("gh-01", "canary")
    resumed = _Events(b, last)
    after = resumed.until(lambda got: any(e == "device" and d.get("channel") == "canary" for _, e, d in got))
    resumed.close()
    seen = whole.until(lambda got: bool(got) and got[-1] == after[-1])
    whole.close()
    for c in clients:
        c.close()

    assert all(e != "resync" for _, e, _ in first + after)
    start = seen.index(first[0])  # the client connected after the devices were registered
    assert first + after == seen[start:]  # the same messages under the same ids: none lost, none twice
    ids = [int(i) for i, _, _ in seen]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # the fleet's ids: one after another, in commit order
    assert _beats_of(7, "gh-01")(first + after) and _beats_of(7, "gh-02")(first + after)


def _leaders(url: str) -> int:
    with psycopg.connect(url) as c:
        return c.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                         " AND classid = %s AND objid = %s", (LEADER_LOCK >> 32, LEADER_LOCK & 0xFFFFFFFF)
                         ).fetchone()[0]


def _load(hubs: list[Hub], devices: list[SimDevice], acked: dict[str, int], stop: threading.Event) -> None:
    """Heartbeats from `devices`, each through the replicas in turn, until `stop`."""
    clients = [httpx.Client(base_url=h.url, timeout=5) for h in hubs]
    n = 0
    while not stop.is_set():
        for d in devices:
            n += 1
            try:
                d.heartbeat(clients[n % len(clients)])
                acked[d.id] += 1
            except (httpx.HTTPError, DeviceProtocolError):
                pass
    for c in clients:
        c.close()


def test_a_killed_replica_loses_no_acknowledged_write_and_the_other_takes_over_the_engine(
        replicas: tuple[Hub, Hub], pg_url: str) -> None:
    a, b = replicas
    wait_for(lambda: _leaders(pg_url) == 1, 15, "one leader")
    devices = [SimDevice(f"gh-{i:02d}", a.register(f"gh-{i:02d}", channel="canary")) for i in range(12)]
    acked = {d.id: 0 for d in devices}
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=([a, b], devices[i::3], acked, stop)) for i in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: sum(acked.values()) > 150, 15, "150 acked heartbeats")
    a.kill()  # SIGKILL under load
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    stored = {d["id"]: len(b.client.device(d["id"])["heartbeats"]) for d in b.client.devices()}
    assert all(stored[k] >= acked[k] for k in acked), (stored, acked)
    wait_for(lambda: _leaders(pg_url) == 1, 15, "one leader: the survivor holds the engine")

    # and runs its timers: a device silent after switching halts the rollout with no request made
    b.publish(b.build_release("1.1.0", {"main.py": b"print(1)\n"}))
    stage = {"name": "canary", "ids": ["gh-00"], "device_type": None, "percent": None, "channel": None}
    rollout = b.client.start_rollout("picow", "1.1.0", [stage], 1, 0)
    with httpx.Client(base_url=b.url) as c:
        offer = devices[0].check(c)
        assert offer is not None
        devices[0].status(c, offer, "trial", "1.0.0")
    wait_for(lambda: b.client.rollout(rollout["id"])["state"] == "halted", TRIAL_TIMEOUT_S + 10, "the halt")


def test_the_database_lost_while_serving_is_503_then_the_hub_recovers(tmp_path: Path, postgres: TempPostgres) -> None:
    server = TempPostgres(postgres.bindir)  # a server of its own, to stop and start
    hub = Hub.create(tmp_path / "site", database_url=server.create_database("fleet"))
    try:
        hub.start()
        device = SimDevice("gh-01", hub.register("gh-01"))
        with httpx.Client(base_url=hub.url, timeout=15) as c:
            device.heartbeat(c)
            server.stop()
            _, raw, headers = device.heartbeat_request()
            lost = c.post("/heartbeat", content=raw, headers=headers)
            assert lost.status_code == 503 and "nothing was saved" in lost.json()["error"], lost.text
            assert c.get("/healthz").status_code == 503
            server.start()
            wait_for(lambda: c.get("/healthz").status_code == 200, 15, "the replica healthy")
            device.heartbeat(c)
        beats = hub.client.device("gh-01")["heartbeats"]
        assert len(beats) == 2  # the refused one left nothing behind
    finally:
        hub.close()
        server.close()


def test_a_release_published_through_one_is_served_by_the_other_from_the_database(tmp_path: Path,
                                                                                  pg_url: str) -> None:
    """Replicas with data folders of their own, as on machines of their own, and no artifact_base_url."""
    a, _ = _pair(tmp_path / "a", pg_url)
    shutil.copytree(a.site, tmp_path / "b", ignore=shutil.ignore_patterns("data", "*.log"))
    b = replace(a.replica(), site=tmp_path / "b")
    left = tmp_path / "b" / "data" / "blobs" / ".fetch-killed"  # a fetch a SIGKILL interrupted
    left.mkdir(parents=True)
    (left / ".lock").touch()
    (left / "work").mkdir()
    a.start()
    b.start()
    try:
        assert not left.exists()
        big = bytes(range(256)) * 3000  # 750 KiB: several chunks in the database
        meta = a.publish(a.build_release("1.1.0", {"main.py": b"print('v2')\n", "lib/table.py": big}))["meta"]
        held = tmp_path / "b" / "data" / "blobs"
        assert not any(held.glob("??/*"))
        device = SimDevice("gh-01", a.register("gh-01", channel="canary"))
        stage = {"name": "canary", "ids": ["gh-01"], "device_type": None, "percent": None, "channel": None}
        a.client.start_rollout("picow", "1.1.0", [stage], 1, 0)
        with httpx.Client(base_url=b.url, timeout=10) as c:
            assert device.step(c) == "committed"  # every file by Range from B, which never saw the release
            assert device.version == "1.1.0"
            whole = c.get(f"/artifacts/{meta['sha256']}")
            assert whole.status_code == 200 and hashlib.sha256(whole.content).hexdigest() == meta["sha256"]
            assert c.get(f"/artifacts/{'0' * 64}").status_code == 404  # in neither the folder nor the database
        kept = {p.name for p in held.glob("??/*")}
        assert meta["sha256"] in kept and hashlib.sha256(big).hexdigest() in kept  # fetched once, then B's own
        forged = "1" * 64
        with psycopg.connect(pg_url, autocommit=True) as db:
            db.execute(f"INSERT INTO {BLOBS} (sha256, n, data) VALUES (%s, 0, %s)", (forged, b"not its content"))
        assert httpx.get(f"{b.url}/artifacts/{forged}", timeout=10).status_code == 404  # checked, refused
        assert not (held / forged[:2] / forged).exists() and not list(held.glob(f"{FETCH_PREFIX}*"))
    finally:
        a.close()
        b.close()


def test_a_blob_is_fetched_from_the_database_one_chunk_in_memory_at_a_time(tmp_path: Path, pg_url: str) -> None:
    """A replica's first request for a large artifact must not hold the whole of it in RAM."""
    from picoctl.hub.blobs import CHUNK, BlobStore

    data = os.urandom(16 * CHUNK)  # 4 MiB
    first = BlobStore(tmp_path / "a", shared=pg_url)
    sha = first.put(data)
    first.share([sha])
    other = BlobStore(tmp_path / "b", shared=pg_url)
    try:
        tracemalloc.start()
        assert other.fetch(sha)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        first.close()
        other.close()
    assert other.path(sha).read_bytes() == data
    assert peak < 4 * CHUNK, f"fetching a {len(data)}-byte blob took {peak} bytes at its peak"
