"""A replica's event stream under the fleet's ids (picoctl.hub.events with `fleet`): a client that
reconnects with its Last-Event-ID gets what it missed, waits for what this replica has not heard
yet without getting anything twice, and is told to reload when the replica cannot know."""

from __future__ import annotations

import asyncio

from picoctl.hub.events import Broadcaster, Subscription


def _ids(sub: Subscription) -> list[int | None]:
    return [sub.queue.get_nowait().id for _ in range(sub.queue.qsize())]


def _replica(next_id: int = 101) -> Broadcaster:
    b = Broadcaster(backlog=10, fleet=True)
    b.join(next_id, missed=False)
    return b


def test_a_client_gets_what_it_missed_then_what_comes() -> None:
    async def scenario() -> None:
        b = _replica()
        for n in range(101, 106):
            b.publish("heartbeat", {"n": n}, n)
        sub = b.subscribe("102")
        b.publish("heartbeat", {}, 106)
        assert _ids(sub) == [103, 104, 105, 106]
        assert _ids(b.subscribe("105")) == [106] and _ids(b.subscribe("106")) == []

    asyncio.run(scenario())


def test_a_client_ahead_of_this_replica_gets_only_what_comes_after_its_id() -> None:
    async def scenario() -> None:
        b = _replica()
        b.publish("heartbeat", {}, 101)
        sub = b.subscribe("103")  # it heard 102 and 103 through the other replica; this one has not yet
        for n in (102, 103, 104):
            b.publish("heartbeat", {}, n)
        assert _ids(sub) == [104]

    asyncio.run(scenario())


def test_a_replica_that_cannot_know_says_reload() -> None:
    async def scenario() -> None:
        fresh = Broadcaster(fleet=True)
        assert _ids(fresh.subscribe("5")) == [None]  # not listening yet: the resync (it has no id)
        b = _replica(101)
        assert _ids(b.subscribe("100")) == []  # the last change before it started: nothing missed
        assert _ids(b.subscribe("99")) == [None]  # one before it started: not held
        assert _ids(b.subscribe(str(10**18))) == [None]  # an id no fleet of this database gave
        assert _ids(b.subscribe("not a number")) == [None]
        for n in range(101, 104):
            b.publish("heartbeat", {}, n)
        live = b.subscribe()
        b.join(150, missed=True)  # the listener lost its connection: 104-149 went unheard
        assert _ids(live) == [None]
        assert _ids(b.subscribe("102")) == [None] and _ids(b.subscribe("149")) == []

    asyncio.run(scenario())
