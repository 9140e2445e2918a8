"""Server-Sent Events: an in-process broadcaster of committed changes.

Each subscriber has a bounded queue. A subscriber that falls behind is never waited for: its queue
is emptied and it gets one `resync` event, telling it to reload its lists. Recent messages are kept
so a client reconnecting with `Last-Event-ID` gets what it missed.

A single hub numbers its messages itself. Replicas on PostgreSQL publish the fleet's messages under
the ids the database gave them (picoctl.hub.db), the same on every replica, so a client may
reconnect to any replica with its `Last-Event-ID`: one that has not heard that id yet sends what
comes after it as it hears it, no message twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncIterator

from ..protocol import SSE_PING_S


@dataclass(frozen=True)
class Message:
    id: int | None
    event: str
    data: str  # one line of JSON

    def encode(self) -> bytes:
        head = f"id: {self.id}\n" if self.id is not None else ""
        return f"{head}event: {self.event}\ndata: {self.data}\n\n".encode()


RESYNC = Message(None, "resync", "{}")


class Subscription:
    def __init__(self, size: int, after: int | None = None) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue(size)
        self.after = after  # messages up to this id were delivered before (through another replica)

    def offer(self, message: Message) -> None:
        if self.after is not None and message.id is not None and message.id <= self.after:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)


class Broadcaster:
    """Publishes messages to every subscriber. A single hub's ids grow across restarts (they start at
    the clock in µs); a replica's (`fleet`) are the database's, and it holds none until `join`."""

    def __init__(self, backlog: int = 2000, queue_size: int = 1000, fleet: bool = False) -> None:
        self._next: int | None = None if fleet else time.time_ns() // 1000
        self._recent: deque[Message] = deque(maxlen=backlog)
        self._subscribers: set[Subscription] = set()
        self._queue_size = queue_size
        self._fleet = fleet

    def publish(self, event: str, data: Any, message_id: int | None = None) -> Message:
        """Send a message to every subscriber: under `message_id` (the fleet's), else the next of this hub's."""
        given = message_id if message_id is not None else self._next
        message = Message(given, event, json.dumps(data, separators=(",", ":"), default=str))
        if given is not None:
            self._next = max(self._next or 0, given + 1)
            self._recent.append(message)
        for sub in self._subscribers:
            sub.offer(message)
        return message

    def resync(self) -> None:
        """Tell every subscriber to reload its lists (changes may have been missed)."""
        for sub in self._subscribers:
            sub.offer(RESYNC)

    def join(self, next_id: int, missed: bool) -> None:
        """A replica hears the fleet's messages from `next_id` on; what it held before is no longer
        known to be whole (`missed`: tell the subscribers to reload)."""
        self._recent.clear()
        self._next = next_id
        if missed:
            self.resync()

    def subscribe(self, last_event_id: str | None = None) -> Subscription:
        missed, after = self._missed(last_event_id) if last_event_id is not None else ([], None)
        sub = Subscription(self._queue_size, after)
        for message in missed:
            sub.offer(message)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def _missed(self, last_event_id: str) -> tuple[list[Message], int | None]:
        """What a client that last got `last_event_id` missed, and the id it got up to when it is
        ahead of this replica (it heard it through another: what comes after is sent as heard)."""
        try:
            last = int(last_event_id)
        except ValueError:
            return [RESYNC], None
        if self._next is None:
            return [RESYNC], None
        held = list(self._recent)
        if held and held[0].id is not None and held[0].id <= last + 1 and last < self._next:
            return [m for m in held if m.id is not None and m.id > last], None
        if last == self._next - 1:
            return [], None
        if self._fleet and self._next <= last < self._next + (self._recent.maxlen or 0):
            return [], last
        return [RESYNC], None

    async def stream(self, last_event_id: str | None, ping_s: float = SSE_PING_S) -> AsyncIterator[bytes]:
        """The bytes of an SSE response: missed messages, then live ones, with a ping when idle."""
        sub = self.subscribe(last_event_id)
        try:
            yield b": connected\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(sub.queue.get(), ping_s)
                except asyncio.TimeoutError:
                    yield b": ping\n\n"
                    continue
                yield message.encode()
        finally:
            self.unsubscribe(sub)
