"""Device: its facts, heartbeat sparklines (moisture, RSSI, free memory), deploy history, offer and actions."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Footer, Label, Sparkline, Static

from .. import keymap
from ..format import FAILED, PHASE_STYLE, age, hms, kib, seen, shown, status_cell
from ..model import Device, Event
from ..widgets.modals import Confirm
from ..widgets.table import KeyedTable
from .base import ModelScreen

TRACEBACK_LINES = 6  # the end of the traceback: the innermost frames and the exception
SPARKS = (("moisture", "moisture"), ("rssi", "RSSI"), ("mem_free", "free mem"))
HISTORY_COLUMNS = (("at", "TIME", 8), ("kind", "KIND", 17), ("version", "VERSION", 8), ("result", "RESULT", 11),
                   ("detail", "DETAIL", None))


def series(d: Device, name: str) -> list[float]:
    out = []
    for hb in d.heartbeats:
        v = hb.readings.get(name) if name == "moisture" else getattr(hb, name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
    return out


class DeviceScreen(ModelScreen):
    BINDINGS = [*keymap.DEVICE]

    def __init__(self, device_id: str) -> None:
        super().__init__()
        self.device_id = device_id

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield Static(id="device-info")
        yield Static(id="device-why")
        with Grid(id="sparks"):
            for key, label in SPARKS:
                yield Label(label, id=f"label-{key}", classes="spark-label")
                yield Sparkline([], id=f"spark-{key}", summary_function=max)
        yield Label("history: deploys, offers, channel moves", classes="section")
        yield KeyedTable(HISTORY_COLUMNS, id="device-history")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#device-history").focus()
        self.load_detail()
        self.sync()

    @property
    def device(self) -> Device | None:
        return self.model.devices.get(self.device_id)

    @work(exclusive=True, exit_on_error=False, group="device-detail", name="device history")
    async def load_detail(self) -> None:
        self.model.load_device_detail(await self.source.device(self.device_id))
        self.sync()

    def sync(self) -> None:
        d = self.device
        if d is None:
            self.query_one("#device-info", Static).update(f"{self.device_id}: not in the fleet")
            return
        self._info(d)
        self._why(d)
        self._sparks(d)
        table = self.query_one("#device-history", KeyedTable)
        for e in d.events:
            self._event_row(table, e)

    def _event_row(self, table: KeyedTable, e: Event) -> None:
        table.put(str(e.id), (hms(e.at), e.kind, e.version or "-", e.result or "-", e.detail))

    def _info(self, d: Device) -> None:
        now = self.model.clock()
        t = Text()
        t.append(d.id, style="bold")
        t.append(f" {d.type}  channel {d.channel}  version {d.version or '-'}  ")
        t.append_text(status_cell(self.model.liveness(d, now)))
        t.append(f" {seen(d.last_seen, now)}\n")
        t.append(f"RSSI {d.rssi if d.rssi is not None else '-'} dBm  free {kib(d.mem_free)}  "
                 f"uptime {age(d.uptime_s)}  " + (f"trusts key set v{d.keys}  " if d.keys is not None else ""))
        t.append("  ".join(f"{k} {shown(v)}" for k, v in sorted(d.readings.items())) + "\n")
        if d.offer:
            t.append(f"offer: rollout #{d.offer.rollout_id} {d.offer.version} seq {d.offer.seq}  phase ")
            t.append(d.offer.phase, style=PHASE_STYLE.get(d.offer.phase, ""))
        else:
            t.append("offer: none", style="dim")
        self.query_one("#device-info", Static).update(t)

    def _why(self, d: Device) -> None:
        """Firmware, boot number, reset cause, and the last error with its traceback's end."""
        fw = d.firmware
        t = Text()
        if fw or d.boots is not None:
            t.append(f"firmware MicroPython {fw.get('micropython') or '?'}  .mpy {fw.get('mpy_abi') or '?'}  "
                     f"{fw.get('board') or '?'}  id {fw.get('uid') or '?'}\n", style="dim")
            t.append(f"boot {d.boots if d.boots is not None else '?'}  reset cause {d.reset_cause or '?'}\n")
        if d.last_error:
            t.append("last error ", style=FAILED)
            t.append(d.error_summary or str(d.last_error.get("type")), style=FAILED)
            t.append(f"  (boot {d.last_error.get('boot', '?')})\n")
            lines = str(d.last_error.get("traceback") or "").rstrip("\n").split("\n")
            t.append("\n".join(lines[-TRACEBACK_LINES:]), style="dim")
        self.query_one("#device-why", Static).update(t)

    def _sparks(self, d: Device) -> None:
        for key, label in SPARKS:
            data = series(d, key)
            self.query_one(f"#spark-{key}", Sparkline).data = data
            last = data[-1] if data else None
            shown = "-" if last is None else kib(int(last)) if key == "mem_free" else f"{last:g}"
            self.query_one(f"#label-{key}", Label).update(f"{label} {shown}")

    def apply_changes(self, changed: set[str], removed: set[str], events: list[Event], topics: set[str]) -> None:
        d = self.device
        if d is None:
            return
        if self.device_id in changed:
            self._info(d)
            self._why(d)
            self._sparks(d)
        table = self.query_one("#device-history", KeyedTable)
        for e in events:
            if e.device_id == self.device_id:
                self._event_row(table, e)

    def tick(self) -> None:
        super().tick()
        if self.device:
            self._info(self.device)

    def action_back(self) -> None:
        self.dismiss()

    def action_check_now(self) -> None:
        self.check_now()

    def action_log(self) -> None:
        self.app.open_device_log(self.device_id)

    def action_move_channel(self) -> None:
        d = self.device
        if d is None:
            return
        to = "stable" if d.channel == "canary" else "canary"

        def answered(yes: bool | None) -> None:
            if yes:
                self.set_channel(to)

        self.app.push_screen(Confirm(f"Move {self.device_id} to {to}?",
                                     f"1 device ({self.device_id}) leaves the {d.channel} channel and joins {to}: "
                                     f"it will get the offers of {to} rollouts.", "Move"), answered)

    def action_remove(self) -> None:
        d = self.device
        if d is None:
            return
        offer = f" It leaves rollout #{d.offer.rollout_id} ({d.offer.version} {d.offer.phase})." if d.offer else ""

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._remove(), name=f"remove {self.device_id}", group="device-action",
                                exclusive=True, exit_on_error=False)

        self.app.push_screen(Confirm(
            f"Remove {self.device_id} from the fleet?",
            f"1 device ({self.device_id}, {d.type} {d.version or 'no version'}) is decommissioned: its key is "
            f"refused from now on, so the board can no longer report or update.{offer} Its history stays in "
            f"the log. To bring the board back, provision it again.", "Remove"), answered)

    async def _remove(self) -> None:
        await self.source.remove_device(self.device_id)
        self.notify(f"{self.device_id} removed from the fleet; its history stays")
        self.dismiss()

    def check_now(self) -> None:
        self.run_worker(self._check_now(), name=f"check now {self.device_id}", group="device-action",
                        exclusive=True, exit_on_error=False)

    async def _check_now(self) -> None:
        await self.source.check_now(self.device_id)
        self.notify(f"{self.device_id} will check for an update at its next heartbeat")

    def set_channel(self, to: str) -> None:
        self.run_worker(self._set_channel(to), name=f"move {self.device_id} to {to}", group="device-action",
                        exclusive=True, exit_on_error=False)

    async def _set_channel(self, to: str) -> None:
        self.model.apply("device", await self.source.set_channel(self.device_id, to))
        self.notify(f"{self.device_id} moved to the {to} channel")
        self.sync()
