"""`picoctl usb list|flash|push|flash-esp|log|follow`: boards on this machine's USB ports.

picoctl.usb's modules (pyserial, mpremote, esptool, httpx) are imported by the command that uses them:
`picoctl --help` and every other command start without them.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from .. import config, operations
from ..config import FleetConfig
from ..errors import BadInput, PicoctlError
from ..usb import ESP_BAUD
from . import COMMANDS
from .numbers import seconds
from .output import add_json_flag, console, emit, err_console, progress_bar, table

NOT_RECORDED = "this will not be recorded in the hub's history"


def _config(args: argparse.Namespace, unrecorded: str = "") -> FleetConfig | None:
    """fleet.toml when there is one: USB work is possible without it (defaults, nothing recorded)."""
    try:
        return config.load(args.config)
    except BadInput as exc:
        if args.config:
            raise
        if unrecorded:
            err_console.print(f"[yellow]note:[/] {exc}; {unrecorded}")
        return None


def _queued(note: str) -> None:
    err_console.print(f"[yellow]note:[/] {note}")


# -- list ------------------------------------------------------------------------------------
def _list(args: argparse.Namespace) -> int:
    from ..usb import detect

    cfg = _config(args)
    if args.watch:
        try:
            for change in detect.watch(cfg):
                for b in change.added:
                    console.print(f"[green]+[/] {b.kind:<7} {b.path}  {b.description}")
                for b in change.removed:
                    console.print(f"[red]-[/] {b.kind:<7} {b.path}")
        except KeyboardInterrupt:
            pass
        return 0
    boards = detect.scan(cfg)
    emit(args, [b.to_json() for b in boards], lambda rows: table(
        "USB boards", ["kind", "path", "family", "board", "serial", "description"],
        [(b.kind, b.path, b.family, b.board_id, b.serial_number, b.description) for b in boards]))
    return 0


# -- flash (UF2) -----------------------------------------------------------------------------
def _flash(args: argparse.Namespace) -> int:
    from ..usb import bootsel, detect, sources

    cfg = _config(args, NOT_RECORDED)
    sources.uf2_image(Path(args.file))  # a missing or damaged file is refused before the board is touched
    device: str | None = None
    if args.port:
        device = operations.serial_of(cfg, args.port)
        before = {b.path for b in detect.scan(cfg) if b.kind == "bootsel"}
        bootsel.enter_bootsel(args.port)
        console.print(f"{args.port}: rebooting into BOOTSEL…")
        found = detect.wait_for(cfg, lambda b: b.kind == "bootsel" and b.path not in before, args.timeout)
        if found is None:
            raise PicoctlError(f"{args.port}: no BOOTSEL drive appeared within {args.timeout:g}s "
                               f"(is it mounted under usb.drive_roots?)")
        drive = Path(found.path)
    elif args.drive:
        drive = Path(args.drive)
    else:
        drives = [b for b in detect.scan(cfg) if b.kind == "bootsel"]
        if len(drives) != 1:
            raise BadInput(f"{len(drives)} BOOTSEL drives attached; name one with --drive (or use --port)")
        drive = Path(drives[0].path)
    serial_before = {b.path for b in detect.scan(cfg) if b.kind == "serial"} if args.wait_port else set()
    with progress_bar("flash") as p:
        done = operations.flash_uf2(cfg, Path(args.file), drive, p, device_id=device, gone_timeout_s=args.timeout,
                                    on_queued=_queued)
    console.print(f"[green]✓[/] {done.summary}", highlight=False)
    if args.wait_port:  # firmware without USB serial never brings one back: waited for only when asked
        back = detect.wait_for(cfg, lambda b: b.kind == "serial" and b.path not in serial_before, args.timeout)
        if back is None:
            raise PicoctlError(f"the board rebooted but no serial port came back within {args.timeout:g}s "
                               f"(firmware without USB serial?)")
        console.print(f"serial port back: {back.path}", highlight=False)
    return 0


# -- push ------------------------------------------------------------------------------------
def _push(args: argparse.Namespace) -> int:
    cfg = _config(args, NOT_RECORDED)
    with progress_bar("push") as p:
        done = operations.push(cfg, Path(args.source), args.port, p, verify=args.verify, on_queued=_queued)
    console.print(f"[green]✓[/] {done.summary}", highlight=False)
    return 0


# -- flash-esp -------------------------------------------------------------------------------
def _flash_esp(args: argparse.Namespace) -> int:
    cfg = _config(args, NOT_RECORDED)
    with progress_bar("flash-esp") as p:
        done = operations.flash_esp(cfg, Path(args.firmware), args.port, p, chip=args.chip, address=args.addr,
                                    baud=args.baud, on_queued=_queued)
    console.print(f"[green]✓[/] {done.summary}", highlight=False)
    return 0


# -- log -------------------------------------------------------------------------------------
def _log(args: argparse.Namespace) -> int:
    from ..usb import serial_log, telemetry

    cfg = None if args.no_hub else _config(args, "heartbeats will not be forwarded to the hub")
    forward = telemetry.HeartbeatForwarder(cfg) if cfg else None

    def on_line(line: str) -> None:  # one output line per board line, unwrapped, its escapes shown
        sys.stdout.write(serial_log.shown(line) + "\n")
        sys.stdout.flush()
        if forward:
            forward(line)

    def on_status(up: bool, why: str) -> None:
        err_console.print(f"[dim]-- {_text(args.port)}: {'connected' if up else _text(why)}[/]")

    with serial_log.SerialLog(args.port, on_line=on_line, on_status=on_status) as log:
        _run_for(args.seconds)
    if forward:
        forward.close()
        if forward.last_error:
            err_console.print(f"[yellow]last heartbeat error:[/] {_text(forward.last_error)}")
    if not log.connects:
        raise PicoctlError(f"{args.port}: never connected: {log.why or 'no answer'}")
    return 0


def _follow(args: argparse.Namespace) -> int:
    from ..usb import follow

    cfg = config.load(args.config)

    def on_event(port: str, what: str) -> None:
        err_console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {_text(port)}: {_text(what)}", highlight=False, soft_wrap=True)

    err_console.print(f"following MicroPython boards on USB; heartbeats go to {cfg.hub_url}", soft_wrap=True)
    with follow.Follower(cfg, on_event):
        _run_for(args.seconds)
    return 0


def _text(said: str) -> str:
    """What a board, a port or the hub said, shown as text: never rich markup, no control characters."""
    from rich.markup import escape

    from ..usb.serial_log import shown

    return escape(shown(said))


def _run_for(seconds: float) -> None:
    """Let the reader threads work for `seconds` (0: until Ctrl-C)."""
    try:
        threading.Event().wait(seconds or None)
    except KeyboardInterrupt:
        pass


def _address(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (e.g. 0x1000)") from None


def register(sub: argparse._SubParsersAction) -> None:
    usb = sub.add_parser("usb", help=COMMANDS["usb"])
    actions = usb.add_subparsers(dest="usb_command", metavar="ACTION", required=True)

    ls = actions.add_parser("list", help="boards attached now: MicroPython/ESP32 serial ports, BOOTSEL drives")
    ls.add_argument("--watch", action="store_true", help="print boards as they are plugged in and out")
    add_json_flag(ls)
    ls.set_defaults(func=_list)

    fl = actions.add_parser("flash", help="flash a UF2 image (or a pico UF2 release folder) to an RP2040/RP2350")
    fl.add_argument("file", help="FILE.uf2 or a release folder built from one")
    where = fl.add_mutually_exclusive_group()
    where.add_argument("--drive", help="the BOOTSEL drive's mount point (default: the only one attached)")
    where.add_argument("--port", help="a running MicroPython board: send it to BOOTSEL first")
    fl.add_argument("--timeout", type=seconds, default=20.0, help="seconds to wait for the drive, the reboot and the port")
    fl.add_argument("--wait-port", action="store_true",
                    help="then wait for the board's serial port to come back (MicroPython firmware has one)")
    fl.set_defaults(func=_flash)

    pu = actions.add_parser("push", help="copy a pico/picow release (or a folder) to a running MicroPython board")
    pu.add_argument("source", help="release folder (meta.json + tar) or a folder of files")
    pu.add_argument("--port", required=True, help="serial port, e.g. /dev/pico-E6614C311B4A6D2C")
    pu.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                    help="hash every file on the board before replacing anything (default: on)")
    pu.set_defaults(func=_push)

    fe = actions.add_parser("flash-esp", help="flash ESP32 firmware through esptool")
    fe.add_argument("firmware", help="FIRMWARE.bin (an ESP image, e.g. MicroPython's firmware.bin)")
    fe.add_argument("--port", required=True)
    fe.add_argument("--chip", default="auto", help="auto (esptool detects it) or a chip, e.g. esp32, esp32s3, esp32c3")
    fe.add_argument("--addr", type=_address, help="flash address, e.g. 0x1000 (default: the chip's bootloader offset)")
    fe.add_argument("--baud", type=int, default=ESP_BAUD)
    fe.set_defaults(func=_flash_esp)

    lg = actions.add_parser("log", help="follow a board's serial console; heartbeats go to the hub")
    lg.add_argument("--port", required=True)
    lg.add_argument("--no-hub", action="store_true", help="only print; do not forward heartbeats")
    lg.add_argument("--seconds", type=seconds, default=0, help="stop after this long (default: until Ctrl-C)")
    lg.set_defaults(func=_log)

    fo = actions.add_parser("follow", help="follow every MicroPython board on USB and record its heartbeats "
                                           "in the hub (a service; gives a port up to push, flash and log)")
    fo.add_argument("--seconds", type=seconds, default=0, help="stop after this long (default: until stopped)")
    fo.set_defaults(func=_follow)
