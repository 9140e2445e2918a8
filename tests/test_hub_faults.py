"""Faults: the hub SIGKILLed under load, and a disk that fills during writes. Nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import httpx
import pytest

from picoctl import config
from picoctl.client import HubError
from picoctl.sim.fleet import DeviceProtocolError, SimDevice
from waiting import wait_for

DEVICES = 24
THREADS = 4


def _stored(hub) -> tuple[dict[str, int], dict[str, int]]:
    db = sqlite3.connect(hub.cfg.data_dir / "fleet.db")
    beats = dict(db.execute("SELECT device_id, COUNT(*) FROM heartbeats GROUP BY device_id").fetchall())
    statuses = dict(db.execute("SELECT device_id, COUNT(*) FROM events WHERE kind = 'deploy_status'"
                               " GROUP BY device_id").fetchall())
    return beats, statuses


def _load(hub, devices: list[SimDevice], acked: dict[str, list[int]], stop: threading.Event) -> None:
    """Heartbeats, and a status report every third round, until the hub stops answering."""
    offer = {"seq": 0, "version": "1.0.0"}
    with httpx.Client(base_url=hub.url, timeout=5) as c:
        n = 0
        while not stop.is_set():
            for d in devices:
                try:
                    d.heartbeat(c)
                    acked[d.id][0] += 1
                    if n % 3 == 0:
                        d.status(c, offer, "checking", "1.0.0")
                        acked[d.id][1] += 1
                except (httpx.HTTPError, DeviceProtocolError):
                    return
            n += 1


def test_sigkill_under_load_loses_no_acknowledged_heartbeat_or_status(hub) -> None:
    devices = [SimDevice(f"gh-{i:02d}", hub.register(f"gh-{i:02d}")) for i in range(DEVICES)]
    acked = {d.id: [0, 0] for d in devices}
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(hub, devices[i::THREADS], acked, stop)) for i in range(THREADS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while sum(a[0] for a in acked.values()) <= 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    hub.kill()
    stop.set()
    for t in threads:
        t.join(10)
    assert sum(a[0] for a in acked.values()) > 100, "the load never got going"
    hub.start()
    beats, statuses = _stored(hub)
    for d in devices:
        hb_acked, st_acked = acked[d.id]
        # acknowledged ones are all there; at most the one in flight at the kill is there unacknowledged
        assert hb_acked <= beats.get(d.id, 0) <= hb_acked + 1, d.id
        assert st_acked <= statuses.get(d.id, 0) <= st_acked + 1, d.id
    # the devices carry on with their counters after the restart
    with httpx.Client(base_url=hub.url) as c:
        for d in devices[:3]:
            d.heartbeat(c)


def test_a_full_disk_answers_503_keeps_what_was_acknowledged_and_recovers(hub) -> None:
    dev = SimDevice("gh-01", hub.register("gh-01"))
    with httpx.Client(base_url=hub.url) as c:
        dev.heartbeat(c)
    files = [p for p in hub.cfg.data_dir.iterdir() if p.is_file()]
    hub.file_size_limit = max(p.stat().st_size for p in files) + 64 * 1024
    hub.restart()
    acked, refusal = 1, None
    with httpx.Client(base_url=hub.url) as c:
        for _ in range(500):
            try:
                dev.heartbeat(c)
                acked += 1
            except DeviceProtocolError as exc:
                refusal = str(exc)
                break
        assert refusal is not None, "the file size limit never bit"
        assert "HTTP 503" in refusal and "store write failed, nothing was saved" in refusal
        # the hub is still up and answers reads
        assert httpx.get(hub.url + "/healthz").status_code in (200, 503)
        assert hub.client.device("gh-01")["id"] == "gh-01"
        big = hub.build_release("1.1.0", {"main.py": b"print(1)\n", "data.bin": bytes(300 * 1024)})
        with pytest.raises(HubError) as exc:
            hub.publish(big)
        assert exc.value.status == 503 and "nothing was kept" in exc.value.message
    hub.file_size_limit = None
    hub.restart()
    beats, _ = _stored(hub)
    assert beats["gh-01"] == acked
    assert hub.client.releases() == [] and not any((hub.cfg.data_dir / "tmp").iterdir())
    with httpx.Client(base_url=hub.url) as c:
        dev.heartbeat(c)
    assert _stored(hub)[0]["gh-01"] == acked + 1


def test_a_failing_rollout_tick_is_logged_at_most_once_a_minute(hub) -> None:
    hub.cfg.rollout.trial_timeout_s = 2  # the tick runs every 0.5 s
    config.save(hub.cfg, hub.site / "fleet.toml")
    hub.restart()
    db = sqlite3.connect(hub.cfg.data_dir / "fleet.db")
    with db:  # an active rollout whose stage index is outside its stages: evaluating it raises
        db.execute("INSERT INTO rollouts (target, version, state, kind, stage_index, stages, halt_after_failures,"
                   " promote_after_successes, created_at, updated_at)"
                   " VALUES ('picow', '1.1.0', 'active', 'update', 3, '[]', 0, 0, 0, 0)")
    db.close()
    wait_for(lambda: "rollout tick failed" in hub.log_path.read_text(), 30, "the tick's failure in the log", every=0.1)
    time.sleep(2.0)  # four more ticks fail meanwhile
    log = hub.log_path.read_text()
    assert log.count("rollout tick failed") == 1 and "Traceback" in log and "expected a non-empty list of stages" in log


def test_a_relay_heartbeat_the_store_refuses_registers_nothing(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from picoctl.hub import store
    from picoctl.hub.app import create_app
    from picoctl.sim.local_hub import LocalHub

    site = LocalHub.create(tmp_path / "site")
    site.client.close()
    bearer = {"Authorization": f"Bearer {site.token}"}
    url = "/api/v1/devices/usb-e66038b7/heartbeat"

    def disk_error(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    async def scenario() -> None:
        app = create_app(site.cfg)  # in this process, so the store's insert can be made to fail
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://hub", headers=bearer) as c:
            monkeypatch.setattr(store, "record_heartbeats", disk_error)  # the beat fails after the registration
            r = await c.post(url, json={"version": "1.0.0"})
            assert r.status_code == 503 and "nothing was saved" in r.json()["error"]
            assert (await c.get("/api/v1/devices")).json() == []
            monkeypatch.undo()
            assert (await c.post(url, json={"version": "1.0.0"})).status_code == 200
            assert [d["id"] for d in (await c.get("/api/v1/devices")).json()] == ["usb-e66038b7"]

    asyncio.run(scenario())
