"""One progress interface for every long transfer: UF2 copy, serial push, esptool, Pi deploy.

A producer gets a `Progress` and calls `start`, `advance`, `phase`, then `finish` or `fail`; each call
emits an immutable `ProgressEvent` to a sink (a rich progress bar in the CLI, a message in the TUI).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Literal

State = Literal["started", "running", "finished", "failed"]


@dataclass(frozen=True)
class ProgressEvent:
    task: str
    state: State
    phase: str = ""
    done: int = 0
    total: int | None = None
    item: str = ""
    reason: str = ""
    at: float = field(default_factory=time.monotonic)


Sink = Callable[[ProgressEvent], None]


def discard(_: ProgressEvent) -> None:
    """A sink for callers that do not watch progress."""


class Progress:
    """Tracks one task and reports each change to `sink`."""

    def __init__(self, task: str, sink: Sink = discard) -> None:
        self._sink = sink
        self._event = ProgressEvent(task=task, state="started")
        self.events_sent = 0

    @property
    def event(self) -> ProgressEvent:
        return self._event

    def _emit(self, **changes: object) -> None:
        self._event = replace(self._event, at=time.monotonic(), **changes)  # type: ignore[arg-type]
        self.events_sent += 1
        self._sink(self._event)

    def start(self, total: int | None = None, phase: str = "") -> None:
        self._emit(state="started", total=total, done=0, phase=phase)

    def phase(self, phase: str, total: int | None = None, item: str = "") -> None:
        """Enter a new phase; `total` given resets the byte count for it."""
        if total is not None:
            self._emit(state="running", phase=phase, total=total, done=0, item=item)
        else:
            self._emit(state="running", phase=phase, item=item)

    def advance(self, n: int, item: str | None = None) -> None:
        self._emit(state="running", done=self._event.done + n, item=item if item is not None else self._event.item)

    def update(self, done: int, total: int | None = None) -> None:
        self._emit(state="running", done=done, total=total if total is not None else self._event.total)

    def finish(self, phase: str = "done") -> None:
        self._emit(state="finished", phase=phase, done=self._event.total or self._event.done)

    def fail(self, reason: str) -> None:
        self._emit(state="failed", reason=reason)
