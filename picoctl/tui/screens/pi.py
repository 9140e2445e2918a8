"""Pi: the deployed release, the previous one, health now; deploy with a progress bar and a live step log;
one-key rollback after confirmation. pideploy runs in thread workers; they talk to widgets through
call_from_thread only."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Footer, Label, ProgressBar, RichLog, Static
from textual.worker import Worker

from .. import keymap
from ...errors import BadInput
from ...progress import Progress, ProgressEvent
from ...release import version_key
from ..format import RESULT_STYLE, hms
from ..model import Event, Release
from .base import one_line
from ..source import PiView
from ..widgets.modals import Confirm, Prompt
from ..widgets.paths import PI, ReleaseSuggester, newest, shown
from ..widgets.table import KeyedTable
from ..text import cleaned, flat, visible
from .base import ModelScreen

EVENT_COLUMNS = (("at", "TIME", 8), ("op", "OP", 8), ("moved", "FROM → TO", 16), ("result", "RESULT", 8),
                 ("why", "DETAIL", None))
PI_EVENTS = 50


def waiting(current: str | None, releases: Iterable[Release]) -> str | None:
    """The newest pi release the hub has when it is newer than the one deployed, else None."""
    known = []
    for r in releases:
        try:
            if r.target == "pi":
                known.append((version_key(r.version), r.version))
        except BadInput:
            continue
    if not known:
        return None
    key, newest = max(known)
    try:
        return newest if current is None or key > version_key(current) else None
    except BadInput:
        return newest


class PiScreen(ModelScreen):
    MODE = "pi"
    BINDINGS = [*keymap.PI]

    def __init__(self) -> None:
        super().__init__()
        self.view: PiView | None = None
        self.running = ""

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield Static("reading the Pi's releases…", id="pi-info")
        yield Label("recent deploys", classes="section")
        yield KeyedTable(EVENT_COLUMNS, id="pi-events", show_cursor=False)
        yield Label("no deploy running: d deploys, b rolls back", id="pi-step")
        yield ProgressBar(total=1, show_eta=False, id="pi-progress")
        yield Label("step log", classes="section")
        yield RichLog(id="pi-log", max_lines=1000, wrap=True, markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.action_refresh()
        self.sync()

    def sync(self) -> None:
        self._events(e for e in self.model.events if e.kind.startswith("pi_"))

    def apply_changes(self, changed: set[str], removed: set[str], events: list[Event], topics: set[str]) -> None:
        if "events" in topics:
            self.sync()
        if "releases" in topics and self.view is not None:
            self._show(self.view)

    def _events(self, events: Iterable[Event]) -> None:
        table = self.query_one("#pi-events", KeyedTable)
        for e in list(events)[-PI_EVENTS:]:
            try:
                detail = json.loads(e.detail)
            except ValueError:
                detail = {}
            moved = f"{detail.get('from') or '-'} → {detail.get('to') or '-'}" if isinstance(detail, dict) else ""
            why = detail.get("reason", "") if isinstance(detail, dict) else e.detail
            table.put(str(e.id), (hms(e.at), e.kind.removeprefix("pi_"), moved,
                                  Text(e.result or "-", style=RESULT_STYLE.get(e.result, "")), why or e.actor))

    def action_refresh(self) -> None:
        self.read_status()

    @work(thread=True, exclusive=True, exit_on_error=False, group="pi-status", name="pi status")
    def read_status(self) -> None:
        self.app.call_from_thread(self._show, self.source.pi_status())

    def worker_ended(self, worker: Worker[object], error: BaseException | None) -> bool:
        if error is None:
            return False
        if worker.group == "pi-status":
            self._show_error(one_line(error))
            return True
        if worker.group == "pi-op":
            self._done(self.running, False, one_line(error))
            return True
        return False

    def _show_error(self, message: str) -> None:
        self.query_one("#pi-info", Static).update(Text(f"✖ {message}", style="red"))

    def _show(self, v: PiView) -> None:
        v = PiView.from_json(cleaned(dataclasses.asdict(v)))  # the Pi app's health answer says what it likes
        self.view = v
        t = Text()
        t.append("current   ", style="dim")
        t.append(v.current or "none", style="bold")
        t.append("   previous ", style="dim")
        t.append(v.previous or "none")
        t.append("\nhealth    ", style="dim")
        if v.healthy is None:
            t.append("· nothing deployed", style="dim")
        else:
            t.append("✔ healthy" if v.healthy else "✖ unhealthy", style="green" if v.healthy else "bold red")
        t.append(f"  {v.health}\n")
        t.append("on disk   ", style="dim")
        t.append(", ".join(v.releases) or "none")
        newer = waiting(v.current, self.model.releases.values())
        if newer:
            t.append("\nwaiting   ", style="dim")
            t.append(f"pi {newer} is published on the hub and not deployed: d deploys it", style="bold yellow")
        t.append(f"\nroot      {v.root}", style="dim")
        if v.busy:
            t.append(f"\nbusy: {v.busy}", style="yellow")
        if v.queued_events:
            t.append(f"\n{v.queued_events} history event(s) queued for the hub", style="yellow")
        self.query_one("#pi-info", Static).update(t)

    # --- deploy and rollback ---------------------------------------------------------------
    def action_deploy(self) -> None:
        if self.running:
            self.fail(f"a {self.running} is running")
            return

        def answered(source: str | None) -> None:
            if source:
                self.run_op("deploy", source)

        folders = [Path.cwd(), *([self.app.cfg.path.parent] if self.app.cfg.path is not None else [])]
        found = newest(folders, PI)
        self.app.push_screen(Prompt("Deploy a Pi release", "a release folder, its meta.json, or a URL",
                                    self.source.pi_published() or (shown(found) if found else ""),
                                    ReleaseSuggester(PI, folders)), answered)

    def action_rollback(self) -> None:
        if self.running:
            self.fail(f"a {self.running} is running")
            return
        v = self.view
        if v is None or not v.previous:
            self.fail("no previous release on this Pi to roll back to")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_op("rollback", "")

        self.app.push_screen(Confirm(f"Roll the Pi back to {v.previous}?",
                                     f"This Pi (1 device) switches from {v.current or 'nothing'} to {v.previous}, "
                                     f"restarts the app and checks its health.", "Roll back"), answered)

    def run_op(self, op: str, source: str) -> None:
        self.running = op
        self.query_one("#pi-log", RichLog).clear()
        self.query_one("#pi-progress", ProgressBar).update(total=None, progress=0)
        self.pi_worker(op, source)

    @work(thread=True, exclusive=True, exit_on_error=False, group="pi-op", name="pi")
    def pi_worker(self, op: str, source: str) -> None:
        """A refusal or failure raised here ends the operation through worker_ended."""
        call = self.app.call_from_thread
        progress = Progress(f"pi {op}", lambda e: call(self._progress, e))
        log = lambda line: call(self._log, line)  # noqa: E731
        if op == "deploy":
            result = self.source.pi_deploy(source, progress, log)
        else:
            result = self.source.pi_rollback(progress, log)
        call(self._done, op, getattr(result, "ok", True), getattr(result, "reason", "") or f"{op} done")

    def _progress(self, e: ProgressEvent) -> None:
        bar = self.query_one("#pi-progress", ProgressBar)
        bar.update(total=e.total, progress=e.done)
        self.query_one("#pi-step", Label).update(flat(f"{e.task}: {e.phase or e.state} {e.item}".rstrip()))

    def _log(self, line: str) -> None:
        self.query_one("#pi-log", RichLog).write(f"{hms(self.app.clock())} {visible(line)}")

    def _done(self, op: str, ok: bool, reason: str) -> None:
        self.running = ""
        reason = flat(reason)
        self._log(("✔ " if ok else "✖ ") + reason)
        self.query_one("#pi-step", Label).update(Text(f"{op}: {'done' if ok else 'failed'}: {reason}",
                                                      style="green" if ok else "bold red"))
        bar = self.query_one("#pi-progress", ProgressBar)
        bar.update(total=1, progress=1 if ok else 0)
        if not ok:
            self.fail(f"pi {op}: {reason}")
        self.read_status()
