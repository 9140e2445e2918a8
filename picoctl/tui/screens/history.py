"""History: the hub's event log, appended live; `/` filters (words, or device:, version:, kind:)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import Footer, Input, Static

from .. import keymap
from ..format import RESULT_STYLE, hms, plural
from ..model import Event
from ..widgets.modals import EventDetail
from ..widgets.table import Cell, KeyedTable, RowChosen
from .base import ModelScreen

COLUMNS = (("at", "TIME", 8), ("kind", "KIND", 17), ("device", "DEVICE", 8), ("version", "VERSION", 7),
           ("result", "RESULT", 11), ("detail", "DETAIL", None))


def matches(e: Event, text: str) -> bool:
    """Every word of `text` matches (see Event.matches)."""
    return all(e.matches(word) for word in text.split())


class HistoryScreen(ModelScreen):
    MODE = "history"
    BINDINGS = [*keymap.HISTORY]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.follow = True

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield Static(id="history-status", markup=False)
        yield Input(placeholder="filter: words, or device:ID version:V kind:K", id="filter")
        yield KeyedTable(COLUMNS, id="events")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.query_one("#events").focus()

    def _row(self, e: Event) -> tuple[Cell, ...]:
        return (hms(e.at), e.kind, e.device_id or "-", e.version or "-",
                Text(e.result or "-", style=RESULT_STYLE.get(e.result, "")), e.detail)

    def sync(self) -> None:
        table = self.query_one("#events", KeyedTable)
        shown = [e for e in self.model.events if matches(e, self.filter_text)]
        keys = {str(e.id) for e in shown}
        table.keep_only(keys)
        for e in shown:
            table.put(str(e.id), self._row(e))
        self._status(len(shown))
        self._follow()

    def apply_changes(self, changed: set[str], removed: set[str], events: list[Event], topics: set[str]) -> None:
        table = self.query_one("#events", KeyedTable)
        added = 0
        for e in events:
            if matches(e, self.filter_text):
                table.put(str(e.id), self._row(e))
                added += 1
        if added:
            self._status(table.row_count)
            self._follow()

    def _follow(self) -> None:
        table = self.query_one("#events", KeyedTable)
        if self.follow and table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)

    def _status(self, n: int) -> None:
        where = f" matching {self.filter_text!r}" if self.filter_text else ""
        follow = "following" if self.follow else "paused (f follows)"
        self.query_one("#history-status", Static).update(f"{plural(n, 'event')}{where}  {follow}")

    def filter_changed(self, text: str) -> None:
        self.filter_text = text.strip()
        self.sync()

    @on(RowChosen, "#events")
    def _selected(self, _: RowChosen) -> None:
        self.action_open_event()

    def action_open_event(self) -> None:
        key = self.query_one("#events", KeyedTable).selected_key()
        event = next((e for e in reversed(self.model.events) if str(e.id) == key), None)
        if event is not None:
            self.app.push_screen(EventDetail(event))

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        self._status(self.query_one("#events", KeyedTable).row_count)
        self._follow()
