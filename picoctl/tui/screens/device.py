"""Device: its facts, firmware and last error, heartbeat charts (its sensor, RSSI, free memory), deploy
history, offer and actions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Footer, Label, Static

from ... import diagnostics
from .. import keymap
from ..format import FAILED, PHASE_STYLE, age, hms, kib, seen, shown, status_cell
from ..model import Device, Event
from ..widgets.modals import Confirm
from ..widgets.series import Series
from ..widgets.table import KeyedTable
from .base import ModelScreen

TRACEBACK_LINES = 6  # the end of the traceback: the innermost frames and the exception
HISTORY_COLUMNS = (("at", "TIME", 8), ("kind", "KIND", 17), ("version", "VERSION", 8), ("result", "RESULT", 11),
                   ("detail", "DETAIL", None))


@dataclass(frozen=True)
class Chart:
    """One heartbeat series: a reading (`reading`) or a heartbeat field, and how its values are written."""

    key: str
    label: str
    write: Callable[[float], str]
    reading: bool = False

    def values(self, d: Device) -> list[float]:
        out = []
        for hb in d.heartbeats:
            v = hb.readings.get(self.key) if self.reading else getattr(hb, self.key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(float(v))
        return out


SENSORS = (Chart("moisture", "moisture", lambda v: f"{v:g}%", reading=True),  # a Pico W's soil sensor
           Chart("temp_c", "temperature", lambda v: f"{v:g}°C", reading=True))  # a Pico's own
LINK = (Chart("rssi", "RSSI", lambda v: f"{v:g} dBm"), Chart("mem_free", "free mem", lambda v: kib(int(v))))


def charts(d: Device) -> tuple[Chart, ...]:
    """The device's sensor (the first of SENSORS it reports; moisture if none), then RSSI and free memory."""
    reported = {k for hb in d.heartbeats for k in hb.readings} | set(d.readings)
    return (next((c for c in SENSORS if c.key in reported), SENSORS[0]), *LINK)


def scale(chart: Chart, data: list[float]) -> tuple[Text, Text]:
    """('moisture 41.5%', '36.1% to 58%'): the last value, then the range the chart spans; or 'no data'."""
    if not data:
        return Text(chart.label).append(" no data", style="dim"), Text()
    return (Text(f"{chart.label} {chart.write(data[-1])}"),
            Text(f"{chart.write(min(data))} to {chart.write(max(data))}", style="dim"))


def firmware(d: Device) -> str:
    """What the board said it runs, the unknown left out: 'MicroPython 1.24.1  .mpy 6.3  Raspberry Pi
    Pico W with RP2040  id e6614c31…', then its boot number and the cause of its last reset."""
    facts = diagnostics.firmware_facts(d.firmware)
    boot = [f"boot {d.boots}" if d.boots is not None else "", f"reset cause {d.reset_cause}" if d.reset_cause else ""]
    return "\n".join("  ".join(filter(None, line)) for line in (facts, boot) if any(line))


class DeviceScreen(ModelScreen):
    BINDINGS = [*keymap.DEVICE]

    def __init__(self, device_id: str) -> None:
        super().__init__()
        self.device_id = device_id

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield Static(id="device-info", markup=False)
        yield Static(id="device-why", markup=False)
        with Grid(id="sparks"):
            for i in range(len(LINK) + 1):
                yield Label("", id=f"label-{i}", classes="spark-label")
                yield Series([], id=f"spark-{i}", summary_function=max)
                yield Label("", id=f"range-{i}", classes="spark-range")
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
        t.append(f"RSSI {f'{d.rssi} dBm' if d.rssi is not None else '-'}  free {kib(d.mem_free)}  "
                 f"uptime {age(d.uptime_s)}  " + (f"trusts key set v{d.keys}  " if d.keys is not None else ""))
        t.append("  ".join(f"{k} {shown(v)}" for k, v in sorted(d.readings.items())) + "\n")
        if d.offer:
            t.append(f"offer: rollout #{d.offer.rollout_id} {d.offer.version} seq {d.offer.seq}  phase ")
            if d.offer.retrying:  # failed for now: why, and when the hub offers it again
                t.append("failed, " + (diagnostics.retry_note(d.offer.retry_at, now) or "retrying"),
                         style=PHASE_STYLE[d.offer.shown_phase])
                t.append(f"  {d.offer.detail}" if d.offer.detail else "")
            else:
                t.append(d.offer.phase, style=PHASE_STYLE.get(d.offer.phase, ""))
        else:
            t.append("offer: none", style="dim")
        self.query_one("#device-info", Static).update(t)

    def _why(self, d: Device) -> None:
        """Firmware, boot number, reset cause, and the last error with its traceback's end."""
        t = Text(firmware(d), style="dim")
        if t:
            t.append("\n")
        if d.last_error:
            t.append("last error ", style=FAILED)
            t.append(d.error_summary or str(d.last_error.get("type")), style=FAILED)
            t.append(f"  (boot {d.last_error.get('boot', '?')})\n")
            lines = str(d.last_error.get("traceback") or "").rstrip("\n").split("\n")
            t.append("\n".join(lines[-TRACEBACK_LINES:]), style="dim")
        why = self.query_one("#device-why", Static)
        why.update(t)
        why.display = bool(t)  # a board that reported none of it (a USB Pico) leaves no blank line

    def _sparks(self, d: Device) -> None:
        """Each chart with its last value and range; one without data says so instead of a flat line."""
        for i, chart in enumerate(charts(d)):
            data = chart.values(d)
            label, span = scale(chart, data)
            self.query_one(f"#label-{i}", Label).update(label)
            self.query_one(f"#range-{i}", Label).update(span)
            spark = self.query_one(f"#spark-{i}", Series)
            spark.data = data
            spark.styles.visibility = "visible" if data else "hidden"  # in place: the grid keeps its rows

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
        self.check_now(self.device_id, "device-action")

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

    def set_channel(self, to: str) -> None:
        self.run_worker(self._set_channel(to), name=f"move {self.device_id} to {to}", group="device-action",
                        exclusive=True, exit_on_error=False)

    async def _set_channel(self, to: str) -> None:
        self.model.apply("device", await self.source.set_channel(self.device_id, to))
        self.notify(f"{self.device_id} moved to the {to} channel")
        self.sync()
