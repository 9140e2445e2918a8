"""Operations on boards (UF2 flash, serial push, ESP32 flash, provisioning), each done and recorded in
the hub's history one way, whichever face (the CLI, the TUI) runs it.

Every event has the actor `user@host` (history.local_actor, as Pi deploys have), the kind of
KINDS, the board as device id (its id from /config.json when the board reports one, else its USB
serial number or BOOTSEL board id), the version when known, `ok` or `failed`, and a detail that
starts with `SOURCE -> DESTINATION`. Input refused before the board is touched (BadInput) is not
recorded; without a fleet.toml (cfg None) nothing is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Generic, TypeVar

from . import history, keyset
from .config import FleetConfig
from .errors import BadInput, PicoctlError
from .progress import Progress
from .usb import ESP_BAUD

if TYPE_CHECKING:
    from .provision import Provisioned

R = TypeVar("R")
KINDS = {"flash": "usb_flash", "push": "usb_push", "flash-esp": "esp_flash", "provision": "device_provisioned"}
QUEUED = "hub unreachable; the event is queued and will be sent later"


@dataclass(frozen=True)
class Done(Generic[R]):
    result: R
    summary: str  # one line for the operator
    recorded: bool | None  # sent to the hub; False: queued until it is reachable; None: no fleet.toml


@dataclass(frozen=True)
class Report:
    """What an operation that succeeded reports for its event and its operator."""
    summary: str
    detail: str
    device_id: str | None = None
    version: str | None = None


def run(cfg: FleetConfig | None, op: str, subject: str, work: Callable[[], tuple[R, Report]], *,
        device_id: str | None = None, version: str | None = None,
        on_queued: Callable[[str], None] | None = None) -> Done[R]:
    """Do `work` and record it (kind KINDS[op]); `subject` is `SOURCE -> DESTINATION`. A failure is
    recorded and raised again; `on_queued` hears when the event had to wait for the hub."""
    kind = KINDS[op]

    def record(device: str | None, ver: str | None, result: str, detail: str) -> bool | None:
        if cfg is None:
            return None
        sent = history.record(cfg, kind, actor=history.local_actor(), device_id=device, version=ver,
                              result=result, detail=f"{subject}: {detail}")
        if not sent and on_queued:
            on_queued(QUEUED)
        return sent

    try:
        result, report = work()
    except BadInput:
        raise
    except PicoctlError as exc:
        record(device_id, version, "failed", str(exc))
        raise
    sent = record(report.device_id or device_id, report.version or version, "ok", report.detail)
    return Done(result, report.summary, sent)


def serial_of(cfg: FleetConfig | None, port: str) -> str | None:
    """The USB serial number of the board on `port`, when the port list knows it."""
    from .usb import detect

    real = os.path.realpath(port)
    for b in detect.scan(cfg):
        if b.kind == "serial" and (b.path == port or os.path.realpath(b.path) == real):
            return b.serial_number
    return None


def flash_uf2(cfg: FleetConfig | None, source: Path, drive: Path, progress: Progress, *, device_id: str | None = None,
              gone_timeout_s: float = 20.0, on_queued: Callable[[str], None] | None = None) -> Done:
    """Flash a .uf2 (or a UF2 release folder) onto a BOOTSEL drive; Done.result is a uf2flash.FlashResult."""
    from .usb import bootsel, sources, uf2flash

    image, version = sources.uf2_image(source)
    drive = Path(drive)
    device_id = device_id or bootsel.read_info(drive).board_id

    def work() -> tuple[uf2flash.FlashResult, Report]:
        r = uf2flash.flash_uf2(image, drive, progress, gone_timeout_s=gone_timeout_s)
        facts = f"{r.bytes_written} bytes, {r.info.family}" + (f"; {r.info.note}" if r.info.note else "")
        return r, Report(f"flashed {image.name} ({facts}) in {r.seconds:.1f} s; the board rebooted", facts)

    return run(cfg, "flash", f"{image} -> {drive}", work, device_id=device_id, version=version, on_queued=on_queued)


def push(cfg: FleetConfig | None, source: Path, port: str, progress: Progress, *, verify: bool = True,
         on_queued: Callable[[str], None] | None = None) -> Done:
    """Push a pico/picow release (or a folder) over a board's raw REPL; Done.result is a push.PushResult."""
    from .usb import push as serial_push

    source = Path(source).expanduser()
    trusted = keyset.trusted_or_none(cfg)  # with a site, a release must be signed by a key of its set
    files, version = serial_push.release_files(source, trusted)  # a bad source is refused before the board is touched

    def work() -> tuple[serial_push.PushResult, Report]:
        r = serial_push.push_version(port, files, version, progress, verify=verify)
        checked = "verified on the board" if r.verified else "not verified"
        facts = f"{r.files} files, {r.bytes} bytes, {checked}"
        cleaned = f"; removed {r.leftovers} temporary files an interrupted push had left" if r.leftovers else ""
        return r, Report(f"pushed {r.files} files ({r.bytes} bytes, {checked}) in {r.seconds:.1f} s; "
                         f"the board reports version {r.version or '?'}{cleaned}", facts, r.device_id, r.version)

    return run(cfg, "push", f"{source} -> {port}", work, device_id=serial_of(cfg, port), version=version,
               on_queued=on_queued)


def flash_esp(cfg: FleetConfig | None, firmware: Path, port: str, progress: Progress, *, chip: str = "auto",
              address: int | None = None, baud: int = ESP_BAUD, on_queued: Callable[[str], None] | None = None) -> Done:
    """ESP32 firmware through esptool; Done.result is an esp.EspFlashResult."""
    from .usb import esp

    firmware = Path(firmware).expanduser()

    def work() -> tuple[esp.EspFlashResult, Report]:
        r = esp.flash_esp(firmware, port, progress, chip=chip, address=address, baud=baud)
        facts = f"{r.bytes} bytes at 0x{r.address:x}, {r.chip}"
        return r, Report(f"flashed {r.chip} at 0x{r.address:x} ({r.bytes} bytes) in {r.seconds:.1f} s", facts)

    return run(cfg, "flash-esp", f"{firmware} -> {port}", work, device_id=serial_of(cfg, port), on_queued=on_queued)


def provision(cfg: FleetConfig, device_id: str, where: str, make: Callable[[], Provisioned], *,
              on_queued: Callable[[str], None] | None = None) -> Done:
    """Provision `device_id` onto `where` (a port or a folder) by `make` (provision.provision with its
    register and deliver); Done.result is the provision.Provisioned."""

    def work() -> tuple[Provisioned, Report]:
        p = make()
        facts = f"{len(p.files)} files, app {p.version}"
        return p, Report(f"provisioned {p.device_id} ({p.version}, {len(p.files)} files) to {where}", facts,
                         p.device_id, p.version)

    return run(cfg, "provision", f"{device_id} -> {where}", work, device_id=device_id, on_queued=on_queued)
