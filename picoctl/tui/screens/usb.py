"""USB: boards and BOOTSEL drives as they come and go; flash a UF2, push a release, provision a Pico W,
each with a live progress bar; the serial console of any port. USB scanning, copying and serial I/O
run in thread workers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Footer, Label, ProgressBar
from textual.worker import Worker

from .. import keymap
from ...progress import Progress, ProgressEvent
from ..source import BoardView, telemetry_identity
from ...protocol import DEVICE_ID_RULE, is_device_id
from ..widgets.modals import Confirm, Fields, Prompt
from ..widgets.paths import RELEASE, UF2, PathSuggester, newest, shown
from ..widgets.serial_view import SerialView
from ..widgets.table import KeyedTable
from ..text import flat
from .base import ModelScreen, one_line

PATH_WIDTH = 24
COLUMNS = (("kind", "KIND", 7), ("path", "PORT / DRIVE", PATH_WIDTH), ("device", "DEVICE", 9),
           ("family", "FAMILY", 7), ("serial", "SERIAL", 16), ("description", "DESCRIPTION", None))


def path_tail(path: str, width: int = PATH_WIDTH) -> str:
    """A path cut from the left to fit: its end (the port or drive name) is what tells boards apart."""
    return path if len(path) <= width else "…" + path[-(width - 1):]


class UsbScreen(ModelScreen):
    MODE = "usb"
    BINDINGS = [*keymap.USB]

    def __init__(self) -> None:
        super().__init__()
        self.boards: dict[str, BoardView] = {}
        self.stop_scan = threading.Event()
        self.busy = ""
        self.busy_where = ""
        self.resume_log = ""  # the port whose log a transfer interrupted, followed again after it

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield KeyedTable(COLUMNS, id="boards")
        yield Label("no transfer running", id="usb-step")
        yield ProgressBar(total=1, show_eta=False, id="usb-progress")
        yield SerialView(id="serial")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#boards").focus()
        self.scan()

    def on_unmount(self) -> None:
        self.stop_scan.set()

    @work(thread=True, exclusive=True, exit_on_error=False, group="usb-scan")
    def scan(self) -> None:
        """Scan every usb.poll_s while the screen is shown, until it goes; hand each list to the table."""
        every = self.app.cfg.usb.poll_s
        while not self.stop_scan.is_set():
            if not self.is_current:
                self.stop_scan.wait(every)
                continue
            try:
                boards = self.source.usb_scan()
                self.app.call_from_thread(self._boards, boards)
            except Exception as exc:  # noqa: BLE001 - a scan error is shown and the next scan retries
                self.app.call_from_thread(self.fail, f"USB scan: {exc}")
            if not self.live:
                return
            self.stop_scan.wait(every)

    @property
    def live(self) -> bool:
        return self.app.live_ticks

    def _boards(self, boards: list[BoardView]) -> None:
        self.boards = {b.key: b for b in boards}
        self._rows()

    def _rows(self) -> None:
        table = self.query_one("#boards", KeyedTable)
        for key, b in self.boards.items():
            kind = Text("BOOTSEL", style="bold yellow") if b.kind == "bootsel" else Text("serial", style="cyan")
            table.put(key, (kind, path_tail(b.path), self.fleet_id(b) or "-", b.family or "-", b.serial_number or "-",
                            b.description))
        table.keep_only(self.boards)

    def fleet_id(self, board: BoardView) -> str | None:
        """The fleet device on a port, from what is known without asking the board: a Pico W whose
        heartbeats report the unique id the port's USB serial number is (MicroPython's rp2 port uses
        it as that), else the id in the board's telemetry read on this screen's console of that port."""
        if board.kind != "serial":
            return None
        serial = (board.serial_number or "").lower()
        by_uid = [d.id for d in self.model.devices.values() if serial and str(d.firmware.get("uid") or "").lower() == serial]
        if by_uid:
            return by_uid[0]
        view = self.query_one("#serial", SerialView)
        return telemetry_identity([*view.lines, *view.incoming])[1] if view.port == board.path else None

    def selected(self, kind: str, quiet: bool = False) -> BoardView | None:
        """The selected board of `kind`, else the only one attached, else None (said unless `quiet`)."""
        key = self.query_one("#boards", KeyedTable).selected_key()
        board = self.boards.get(key or "")
        if board is None or board.kind != kind:
            others = [b for b in self.boards.values() if b.kind == kind]
            board = others[0] if len(others) == 1 else None
        if board is None and not quiet:
            self.fail(f"select a {'BOOTSEL drive' if kind == 'bootsel' else 'serial board'} first")
        return board

    # --- transfers ---------------------------------------------------------------------------
    def action_flash(self) -> None:
        drive = self.selected("bootsel")
        if drive is not None and not self._busy():
            self.app.push_screen(Prompt(f"Flash a UF2 onto {drive.path}", "path to a .uf2 file", self.near(UF2),
                                        PathSuggester(UF2)),
                                 self._when_given(lambda path: self.transfer("flash", drive.path, path)))

    def action_push(self) -> None:
        board = self.selected("serial")
        if board is not None and not self._busy():
            self.app.push_screen(Prompt(f"Push a release to {board.path}", "a pico/picow release folder",
                                        self.near(RELEASE), PathSuggester(RELEASE)),
                                 self._when_given(lambda path: self.transfer("push", board.path, path)))

    def near(self, kind: str) -> str:
        """The newest UF2 file or release folder in the working folder or the site's, as a prompt's default."""
        site = [self.app.cfg.path.parent] if self.app.cfg.path is not None else []
        found = newest([Path.cwd(), *site], kind)
        return shown(found) if found is not None else ""

    def action_provision(self) -> None:
        board = self.selected("serial")
        if board is None or self._busy():
            return

        def answered(values: dict[str, str] | None) -> None:
            if values:
                self.busy, self.busy_where = "provision", board.path  # nothing else takes the port meanwhile
                self._stop_log(board.path)
                self.read_identity(board.path, values)

        self.app.push_screen(Fields(f"Provision {path_tail(board.path, 40)} as a Pico W", [
            ("id", "device id", "e.g. gh-07", False), ("ssid", "Wi-Fi SSID", "network the board joins", False),
            ("password", "password", "8-63 characters", True)], provision_problem), answered)

    @work(thread=True, exclusive=True, exit_on_error=False, group="usb-transfer", name="read the board")
    def read_identity(self, port: str, values: dict[str, str]) -> None:
        self.app.call_from_thread(self._confirm_provision, port, values, self.source.usb_identity(port))

    def _confirm_provision(self, port: str, values: dict[str, str],
                           identity: tuple[str | None, str | None]) -> None:
        version, now = identity
        new = values["id"]
        if now:
            known = self.model.devices.get(now)
            what = f"{now} ({known.type} {known.version or version or 'no version'})" if known else \
                f"{now} ({version or 'no version'}, not in this fleet)"
            body = (f"This board is {what}. Its identity, key, Wi-Fi settings and program are replaced: it "
                    f"becomes {new} (a Pico W of this fleet, joining {values['ssid']!r})." +
                    (f" {now} stays in the fleet and its history until retired (picoctl devices remove {now})."
                     if known and now != new else ""))
        else:
            body = (f"This board holds no fleet identity{f' (it runs {version})' if version else ''}. It is "
                    f"written as {new}, a Pico W of this fleet, joining {values['ssid']!r}.")

        def answered(yes: bool | None) -> None:
            self.busy = ""
            if yes:
                self.transfer("provision", port, values)
            else:
                self._resume_log()

        self.app.push_screen(Confirm(f"Overwrite {now or 'the board'} on {Path(port).name} with {new}?"
                                     if now else f"Provision {Path(port).name} as {new}?", body, "Provision"), answered)

    def _busy(self) -> bool:
        if self.busy:
            self.fail(f"a {self.busy} is running")
        return bool(self.busy)

    @staticmethod
    def _when_given(then: Callable[[str], None]) -> Callable[[str | None], None]:
        """A prompt's callback: `then` with the answer, unless the prompt was left empty or cancelled."""
        def answered(text: str | None) -> None:
            if text:
                then(text)
        return answered

    def transfer(self, op: str, where: str, what: Any) -> None:
        self.busy, self.busy_where = op, where
        self._stop_log(where)
        self.query_one("#usb-progress", ProgressBar).update(total=None, progress=0)
        self.transfer_worker(op, where, what)

    def _stop_log(self, port: str) -> None:
        """The port is an operation's while it runs: a log open on it stops, to follow it again after."""
        view = self.query_one(SerialView)
        if view.port == port and view.reader is not None:
            self.resume_log = port
            view.stop()

    def _resume_log(self) -> None:
        if self.resume_log:
            view = self.query_one(SerialView)
            view.resume(self._reader(self.resume_log, view))
            self.resume_log = ""

    @work(thread=True, exclusive=True, exit_on_error=False, group="usb-transfer", name="usb")
    def transfer_worker(self, op: str, where: str, what: Any) -> None:
        """A refusal or failure raised here ends the transfer through worker_ended."""
        call = self.app.call_from_thread
        progress = Progress(f"{op} {Path(where).name}", lambda e: call(self._progress, e))
        call(self._done, op, where, True, self.source.usb_transfer(op, where, what, progress))

    def worker_ended(self, worker: Worker[object], error: BaseException | None) -> bool:
        if error is not None and worker.group == "usb-transfer":
            self._done(self.busy, self.busy_where, False, one_line(error))
            return True
        return False


    def _progress(self, e: ProgressEvent) -> None:
        self.query_one("#usb-progress", ProgressBar).update(total=e.total, progress=e.done)
        self.query_one("#usb-step", Label).update(flat(f"{e.task}: {e.phase or e.state} {e.item}".rstrip()))

    def _done(self, op: str, where: str, ok: bool, message: str) -> None:
        self.busy = ""
        self._resume_log()
        said = flat(f"{op} {Path(where).name}: {message}")  # the name, as the progress line has it: a path hid the result
        self.query_one("#usb-step", Label).update(Text(said, style="green" if ok else "bold red"))
        self.query_one("#usb-progress", ProgressBar).update(total=1, progress=1 if ok else 0)  # not left pulsing
        if ok:
            self.notify(said)
        else:
            self.fail(said)

    # --- serial log --------------------------------------------------------------------------
    def action_log(self) -> None:
        """Follow the selected board's console; with no board selected, any port typed in."""
        board = self.selected("serial", quiet=True)
        if board is not None:
            self.follow(board.path)
        else:
            self.app.push_screen(Prompt("Follow the serial log of", "a serial port, e.g. /dev/ttyUSB0"),
                                 self._when_given(self.follow))

    def follow(self, port: str) -> None:
        view = self.query_one(SerialView)
        if view.port == port and (view.reader is not None or not self.live):
            self.notify(f"already showing {Path(port).name}'s log")  # l again keeps what it has read
            return
        view.follow(port, self._reader(port, view), self.source.serial_lines(port))
        self._rows()  # its telemetry may name the board

    def _reader(self, port: str, view: SerialView) -> Any:
        return self.source.serial_reader(port, view.feed, view.link) if self.live else None

    def action_pause(self) -> None:
        self.query_one(SerialView).toggle_pause()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """space reads Pause while the log follows and Follow while it is paused."""
        if action in ("pause", "follow"):
            return self.query_one(SerialView).following == (action == "pause")
        return True

    def action_follow(self) -> None:
        self.action_pause()

    def action_search(self) -> None:
        view = self.query_one(SerialView)
        self.app.push_screen(Prompt("Show only log lines holding", "text (empty: every line)", view.search),
                             lambda text: view.set_search(text or ""))

    def action_clear(self) -> None:
        self.query_one(SerialView).clear()

    def action_save(self) -> None:
        view = self.query_one(SerialView)
        if not view.port:
            self.fail("no serial log to save: select a board and press l")
            return
        default = shown(self.app.saves / f"serial-{Path(view.port).name}.log")

        def answered(path: str | None) -> None:
            if path:
                try:
                    n = view.save(Path(path).expanduser())
                    self.notify(f"saved {n} lines to {path}")
                except OSError as exc:
                    self.fail(f"save {path}: {exc.strerror}")

        self.app.push_screen(Prompt("Save the serial log to", "a file path", default), answered)


def provision_problem(values: dict[str, str]) -> str | None:
    """What is wrong with a provision form, or None: the board would not reach the hub otherwise."""
    if not is_device_id(values["id"]):
        return (f"device id: {DEVICE_ID_RULE} (got {values['id']!r})"
                if values["id"] else "device id: the name the board has in the fleet, e.g. gh-07")
    if not values["ssid"]:
        return "Wi-Fi SSID: the network the board joins to reach the hub"
    if len(values["ssid"].encode()) > 32:
        return "Wi-Fi SSID: at most 32 bytes"
    if not 8 <= len(values["password"]) <= 63:
        return "password: 8 to 63 characters (WPA2)"
    return None
