"""A serial console viewer: SerialLog's reader thread appends to a bounded buffer, a 10 Hz timer draws
what is new. Follow or pause, search (only lines holding a text), clear, save to a file."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Sequence

from textual.app import ComposeResult

from ..format import plural
from ..text import visible
from textual.containers import Vertical
from textual.widgets import RichLog, Static

MAX_LINES = 5000
DRAIN_S = 0.1


class SerialView(Vertical):
    def __init__(self, what: str = "serial", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.what = what  # what the lines come over: "serial", or "wireless" for a Pico W's log
        self.lines: collections.deque[str] = collections.deque(maxlen=MAX_LINES)
        self.incoming: collections.deque[str] = collections.deque(maxlen=MAX_LINES)  # written by the reader thread
        self.port = ""
        self.following = True
        self.search = ""
        self.connected = False
        self.reader: Any = None
        self.dropped = 0

    def compose(self) -> ComposeResult:
        yield Static(id="serial-status", markup=False)
        yield RichLog(id="serial-log", max_lines=MAX_LINES, markup=False, wrap=False, auto_scroll=True)

    def on_mount(self) -> None:
        self.set_interval(DRAIN_S, self.drain)
        self._status()

    def on_unmount(self) -> None:
        self.stop()

    # --- fed from the reader thread (deque appends are thread-safe) -------------------------
    def feed(self, line: str) -> None:
        if len(self.incoming) == self.incoming.maxlen:
            self.dropped += 1
        self.incoming.append(line)

    def link(self, connected: bool, why: str) -> None:
        self.connected = connected

    # --- on the event loop -----------------------------------------------------------------
    def follow(self, port: str, reader: Any, backlog: Sequence[str] = ()) -> None:
        """Show `port`: the lines of `backlog`, then what `reader` (a SerialLog feeding `feed`) reads."""
        self.stop()
        self.port, self.reader = port, reader
        self.lines.clear()
        self.incoming.clear()
        self.incoming.extend(backlog)
        self.query_one(RichLog).clear()
        self.following = True
        if reader is not None:
            reader.start()
        self._status()

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.stop()
            self.reader = None

    def resume(self, reader: Any) -> None:
        """Follow the same port again with a new reader (after a transfer had it), keeping the lines."""
        self.stop()
        self.reader = reader
        if reader is not None:
            reader.start()
        self._status()

    def drain(self) -> None:
        if not self.incoming:
            self._status()
            return
        new = []
        while self.incoming:
            new.append(self.incoming.popleft())
        self.lines.extend(new)
        if self.following:
            log = self.query_one(RichLog)
            for line in new:
                if self.search.lower() in line.lower():
                    log.write(visible(line))
        self._status()

    def redraw(self) -> None:
        log = self.query_one(RichLog)
        log.clear()
        needle = self.search.lower()
        for line in self.lines:
            if needle in line.lower():
                log.write(visible(line))
        self._status()

    def toggle_pause(self) -> None:
        self.following = not self.following
        if self.following:
            self.redraw()
        self._status()

    def set_search(self, text: str) -> None:
        self.search = text
        self.redraw()

    def clear(self) -> None:
        self.lines.clear()
        self.query_one(RichLog).clear()
        self._status()

    def save(self, path: Path) -> int:
        path.write_text("".join(line + "\n" for line in self.lines))
        return len(self.lines)

    def _status(self) -> None:
        if not self.port:
            text = "serial log: select a board and press l (then space pauses, / searches, x clears, w saves)"
        else:
            # the state first: at 80 columns a long port name must not push it off the line
            state = "▶ following" if self.following else "⏸ paused (space follows)"
            link = "  waiting for the port…" if self.reader is not None and not self.connected else ""
            where = f"  search {self.search!r}" if self.search else ""
            text = f"{state}{where}{link}  {self.what} {Path(self.port).name}  {plural(len(self.lines), 'line')}"
        self.query_one("#serial-status", Static).update(visible(text))
