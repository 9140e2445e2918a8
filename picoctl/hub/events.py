"""Server-Sent Events: an in-process broadcaster of committed changes.

Each subscriber has a bounded queue. A subscriber that falls behind is never waited for: its queue
is emptied and it gets one `resync` event, telling it to reload its lists. Recent messages are kept
so a client reconnecting with `Last-Event-ID` gets what it missed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncIterator

PING_S = 15.0


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
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue(size)

    def offer(self, message: Message) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)


class Broadcaster:
    """Publishes messages to every subscriber; ids grow across restarts (they start at the clock in µs)."""

    def __init__(self, backlog: int = 2000, queue_size: int = 1000) -> None:
        self._next = time.time_ns() // 1000
        self._recent: deque[Message] = deque(maxlen=backlog)
        self._subscribers: set[Subscription] = set()
        self._queue_size = queue_size

    def publish(self, event: str, data: Any) -> Message:
        message = Message(self._next, event, json.dumps(data, separators=(",", ":"), default=str))
        self._next += 1
        self._recent.append(message)
        for sub in self._subscribers:
            sub.offer(message)
        return message

    def resync(self) -> None:
        """Tell every subscriber to reload its lists (changes may have been missed)."""
        for sub in self._subscribers:
            sub.offer(RESYNC)

    def subscribe(self, last_event_id: str | None = None) -> Subscription:
        sub = Subscription(self._queue_size)
        if last_event_id is not None:
            for message in self._missed(last_event_id):
                sub.offer(message)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def _missed(self, last_event_id: str) -> list[Message]:
        try:
            last = int(last_event_id)
        except ValueError:
            return [RESYNC]
        held = list(self._recent)
        if held and held[0].id is not None and held[0].id <= last + 1 and last < self._next:
            return [m for m in held if m.id is not None and m.id > last]
        if not held and last == self._next - 1:
            return []
        return [RESYNC]

    async def stream(self, last_event_id: str | None, ping_s: float = PING_S) -> AsyncIterator[bytes]:
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
