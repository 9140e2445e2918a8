"""Fleet: every device, live; `/` filters, `s` sorts by the next column, enter opens a device."""

from __future__ import annotations

from typing import Iterable, Sequence

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Footer, Input, Static

from .. import keymap
from ..model import STATUS_SYMBOL, Device, Event, age, kib
from ..widgets.fast_table import FastTable
from ..widgets.table import Cell
from .base import ModelScreen

COLUMNS = (("id", "ID", 10), ("type", "TYPE", 5), ("channel", "CHAN", 6), ("version", "VERSION", 7),
           ("state", "STATE", 9), ("seen", "SEEN", 4), ("rssi", "RSSI", 4), ("mem", "MEM", 5),
           ("moisture", "MOIST", 5), ("pump", "PUMP", 4), ("offer", "OFFER", 18))
STATE_STYLE = {"online": "green", "stale": "yellow", "offline": "bold red", "new": "dim"}


def state_cell(state: str) -> Text:
    return Text(f"{STATUS_SYMBOL.get(state, '?')} {state}", style=STATE_STYLE.get(state, ""), justify="left")


def _reading(value: object) -> Cell:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return Text(f"{value:.1f}", justify="right")
    return str(value) if value is not None else "-"


class FleetScreen(ModelScreen):
    MODE = "fleet"
    BINDINGS = keymap.FLEET

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.sort_column = "id"
        self.sort_reverse = False

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield Static(id="summary")
        yield Input(placeholder="filter: id, type, channel, version or state", id="filter")
        yield FastTable(COLUMNS, id="devices")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.query_one("#devices").focus()

    @property
    def table(self) -> FastTable:
        return self.query_one("#devices", FastTable)

    def cells(self, d: Device, now: float) -> Sequence[Cell]:
        state = self.model.liveness(d, now)
        offer = f"{d.offer.version} {d.offer.phase}" if d.offer else "-"
        return (d.id, d.type, d.channel, d.version or "-", state_cell(state),
                age(None if d.last_seen is None else now - d.last_seen),
                d.rssi if d.rssi is not None else "-", kib(d.mem_free),
                _reading(d.reading("moisture")), _reading(d.reading("pump")), offer)

    def visible(self, d: Device, now: float) -> bool:
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
            if self.visible(d, now):
                resort |= self.sort_column in table.put(did, self.cells(d, now))
            else:
                table.drop(did)
        if resort:
            table.sort_by(self.sort_column, self.sort_reverse)

    def tick(self) -> None:
        """Ages and liveness move with the clock: rewrite the cells whose text changed, in the rows on
        screen (a row scrolled into view is at most one tick behind), and the summary."""
        super().tick()
        self._update(self.table.keys_in_view(), set())
        self._summary()

    def _summary(self) -> None:
        self.query_one("#summary", Static).update(self.model.summary())

    def filter_changed(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        now = self.model.clock()
        self.table.keep_only(did for did, d in self.model.devices.items() if self.visible(d, now))
        self.sync()

    def action_sort_next(self) -> None:
        keys = [c[0] for c in COLUMNS]
        self.sort_column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self.table.sort_by(self.sort_column, self.sort_reverse)
        self.notify(f"sorted by {self.sort_column}", timeout=2)

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.table.sort_by(self.sort_column, self.sort_reverse)

    @on(FastTable.Selected, "#devices")
    def _selected(self, event: FastTable.Selected) -> None:
        self.open(event.key)

    def action_open_device(self) -> None:
        self.open(self.table.selected_key())

    def open(self, device_id: str | None) -> None:
        from .device import DeviceScreen

        if device_id:
            self.app.push_screen(DeviceScreen(device_id))

    def action_check_now(self) -> None:
        device_id = self.table.selected_key()
        if device_id:
            self.check_now(device_id)

    @work(exclusive=True, exit_on_error=False, group="fleet-action")
    async def check_now(self, device_id: str) -> None:
        try:
            await self.source.act("check_now", device_id)
            self.notify(f"{device_id} will check for an update at its next heartbeat")
        except Exception as exc:  # noqa: BLE001 - any refusal becomes a toast
            self.fail(f"check now {device_id}: {exc}")
