"""The writer's heartbeat batches, on both stores: heartbeats queued together are stored together,
each refused or failing alone without costing the others their write."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import pytest

from picoctl.hub import store
from picoctl.hub.auth import Refused, UnknownDevice
from picoctl.hub.db import Store
from picoctl.hub.state import Hub, store_location
from picoctl.sim.local_hub import LocalHub


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LocalHub, Store]]:
    url = "" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    site = LocalHub.create(tmp_path / "site", database_url=url)
    site.client.close()
    db = Store(store_location(site.cfg))
    with db.transaction() as c:
        for device_id in ("gh-01", "gh-02", "gh-03"):
            store.register_device(c, "operator", device_id, "picow", "stable", "00" * 32, 1000.0)
    try:
        yield site, db
    finally:
        db.close()


def _beat(device_id: str, counter: int, **fields: Any) -> dict[str, Any]:
    return {"device_id": device_id, "counter": counter, "at": 1000.0 + counter, "version": "1.0.0",
            "uptime_s": counter * 60, "mem_free": 1000, "rssi": -60, "readings": {"n": counter}} | fields


def _one_batch(site: LocalHub, beats: list[tuple[dict[str, Any], bool]]) -> list[Any]:
    """Each (beat, from the board) stored by one hub's writer in a single batch: the results."""
    async def scenario() -> list[Any]:
        hub = Hub(site.cfg)
        await hub.start()
        try:
            before = hub.writer.batches
            futures = [hub.record_heartbeat(beat, authenticated) for beat, authenticated in beats]
            results = await asyncio.gather(*futures, return_exceptions=True)
            assert hub.writer.batches == before + 1, "the heartbeats were not written in one batch"
            return results
        finally:
            await hub.stop()

    return asyncio.run(scenario())


def test_a_batch_takes_each_counter_once_and_in_order(site: tuple[LocalHub, Store]) -> None:
    hub, db = site
    results = _one_batch(hub, [(_beat("gh-01", 5), True), (_beat("gh-02", 3), True),
                               (_beat("gh-01", 5), True),  # a replay of the first, in the same batch
                               (_beat("gh-01", 7, version="1.1.0"), True),  # the device's next one
                               (_beat("gh-01", 6), True),  # late: 7 was taken
                               (_beat("gh-09", 1), True)])  # never registered
    assert results[0] == results[1] == results[3] == (False, 0.0)
    assert [type(r) for r in (results[2], results[4])] == [Refused, Refused]
    assert [r.message for r in (results[2], results[4])] == ["replayed counter"] * 2
    assert isinstance(results[5], UnknownDevice)
    with db.reading() as c:
        assert [(b["version"], b["uptime_s"]) for b in store.heartbeats(c, "gh-01")] == [("1.0.0", 300),
                                                                                       ("1.1.0", 420)]
        assert store.device(c, "gh-01")["last_counter"] == 7 and store.device(c, "gh-01")["version"] == "1.1.0"
        assert len(store.heartbeats(c, "gh-02")) == 1


def test_a_beat_the_store_refuses_costs_no_other_beat_of_its_batch(site: tuple[LocalHub, Store]) -> None:
    hub, db = site
    results = _one_batch(hub, [(_beat("gh-01", 1), True), (_beat("gh-02", 1), True),
                               (_beat("usb-0bad", 0), False),  # relayed, its device not registered: refused
                               (_beat("gh-03", 1), True)])
    assert results[0] == results[1] == results[3] == (False, 0.0)
    assert isinstance(results[2], Exception) and not isinstance(results[2], Refused)
    with db.reading() as c:
        assert [len(store.heartbeats(c, d)) for d in ("gh-01", "gh-02", "gh-03", "usb-0bad")] == [1, 1, 1, 0]
        assert store.device(c, "usb-0bad") is None
