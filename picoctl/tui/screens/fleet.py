"""Fleet: every device, live; `/` filters, `s` sorts by the next column, enter opens a device."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import Footer, Input, Static

from .. import keymap
from ..format import FAILED, PHASE_STYLE, age, kib, reading_cell, status_cell
from ..model import Device, Event
from ..widgets.fast_table import FastTable
from ..widgets.table import Cell, RowChosen, sort_key
from .base import ModelScreen

# What a row must show at 80 columns comes first (id, state, version, rollout phase), the rest to the right;
# the ID stays in place when the table scrolls sideways.
COLUMNS = (("id", "ID", 10), ("state", "STATE", 9), ("version", "VERSION", 8), ("offer", "OFFER", 18),
           ("seen", "SEEN", 5), ("channel", "CHAN", 6), ("type", "TYPE", 5), ("moisture", "MOIST", 6),
           ("pump", "PUMP", 5), ("rssi", "RSSI", 5), ("mem", "MEM", 5))

NO_DEVICES = ("No devices yet. Provision a Pico W on the USB screen (5, then v on its port), or register one\n"
              "with `picoctl device provision ID --port PORT` or `picoctl devices add ID`; it shows here when it\n"
              "first reports.")


class FleetScreen(ModelScreen):
    MODE = "fleet"
    BINDINGS = [*keymap.FLEET]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.sort_column = "id"
        self.sort_reverse = False

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield Static(id="summary", markup=False)
        yield Input(placeholder="filter: id, type, channel, version or state", id="filter")
        yield FastTable(COLUMNS, id="devices")
        yield Static(id="fleet-empty", classes="empty", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.query_one("#devices").focus()

    @property
    def table(self) -> FastTable:
        return self.query_one("#devices", FastTable)

    def cells(self, d: Device, now: float) -> Sequence[Cell]:
        state = status_cell(self.model.liveness(d, now), last_known=self.model.link.down)
        shown = d.offer.shown_phase if d.offer else ""
        offer = Text(f"{d.offer.version} {shown}", style=PHASE_STYLE.get(shown, "")) if d.offer else "-"
        ident = Text.assemble(d.id, (" !", FAILED)) if d.last_error else d.id  # an unresolved error
        return (ident, state, d.version or "-", offer, age(None if d.last_seen is None else now - d.last_seen),
                d.channel, d.type, reading_cell(d.reading("moisture")), reading_cell(d.reading("pump")),
                d.rssi if d.rssi is not None else "-", kib(d.mem_free))

    def passes_filter(self, d: Device, now: float) -> bool:
        f = self.filter_text
        if not f:
            return True
        return any(f in (v or "").lower() for v in (d.id, d.type, d.channel, d.version, self.model.liveness(d, now)))

    def sync(self) -> None:
        self._update(self.model.devices, set())
        self._summary()

    def apply_changes(self, changed: set[str], removed: set[str], events: list[Event], topics: set[str]) -> None:
        if "devices" in topics:
            self.sync()
        elif changed or removed:
            self._update(changed, removed)
        if topics & {"devices", "rollouts"}:
            self._summary()

    def _update(self, ids: Iterable[str], removed: set[str]) -> None:
        """Put the rows of `ids` (only their changed cells are written); re-sort only when the sort column moved."""
        now = self.model.clock()
        table = self.table
        devices = self.model.devices
        resort = False
        for did in removed:
            table.drop(did)
        for did in ids:
            d = devices.get(did)
            if d is None:
                continue
            if self.passes_filter(d, now):
                resort |= self.sort_column in table.put(did, self.cells(d, now))
            else:
                table.drop(did)
        if resort:
            self._sort()

    def tick(self) -> None:
        """Ages and liveness move with the clock: rewrite the cells whose text changed, in the rows on
        screen (a row scrolled into view is at most one tick behind), and the summary."""
        super().tick()
        self._update(self.table.keys_in_view(), set())
        self._summary()

    def _summary(self) -> None:
        self.query_one("#summary", Static).update(self.model.summary())
        empty = self.query_one("#fleet-empty", Static)
        empty.display = not self.table.row_count
        if not self.model.devices:
            empty.update(NO_DEVICES)
        elif not self.table.row_count:
            empty.update(f"no device matches {self.filter_text!r}: esc clears the filter")

    def filter_changed(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        now = self.model.clock()
        self.table.keep_only(did for did, d in self.model.devices.items() if self.passes_filter(d, now))
        self.sync()

    def _sort(self) -> None:
        self.table.sort_by(self.sort_column, self.sort_reverse, self._sort_value(self.sort_column))

    def _sort_value(self, column: str) -> Callable[[str], Any] | None:
        """Columns whose text does not sort as their value does: ages and sizes, by the number."""
        devices = self.model.devices
        if column == "seen":
            return lambda did: sort_key(-(devices[did].last_seen or float("-inf")) if did in devices else "-")
        if column == "mem":
            return lambda did: sort_key(devices[did].mem_free if did in devices else "-")
        return None

    def action_sort_next(self) -> None:
        keys = [c[0] for c in COLUMNS]
        self.sort_column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self._sort()
        self._said_sort()

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._sort()
        self._said_sort()

    def _said_sort(self) -> None:
        label = next(label for key, label, _ in COLUMNS if key == self.sort_column)
        self.notify(f"sorted by {label} {'descending ▼' if self.sort_reverse else 'ascending ▲'}", timeout=2)

    @on(RowChosen, "#devices")
    def _selected(self, event: RowChosen) -> None:
        self.open(event.key)

    def action_open_device(self) -> None:
        self.open(self.table.selected_key())

    def action_log(self) -> None:
        device_id = self.table.selected_key()
        if device_id:
            self.app.open_device_log(device_id)

    def open(self, device_id: str | None) -> None:
        if device_id:
            self.app.open_device(device_id)

    def action_check_now(self) -> None:
        device_id = self.table.selected_key()
        if device_id:
            self.check_now(device_id, "fleet-action")
