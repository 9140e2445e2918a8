"""A virtual USB Pico: a pseudo-terminal bridged to the MicroPython unix port, with a folder as flash.

The host side (mpremote, pyserial, `picoctl usb log`) opens `.port`, a stable link to the pty, as it
would open /dev/pico-<serial>. The bridge copies bytes between the pty and `micropython -i` over
pipes, and adds what a pipe cannot carry:
- Ctrl-C while the board runs code (main.py at power-up, or a raw-REPL command) becomes SIGINT,
  which the unix port turns into KeyboardInterrupt as a board does;
- a soft reset (Ctrl-D on an empty raw-REPL or friendly-REPL line makes the unix port exit)
  restarts the interpreter after printing `MPY: soft reboot`; from the raw REPL it comes back in
  the raw REPL without running main.py, otherwise it runs boot.py and main.py, like a board.
Its `machine` adds what the unix port lacks: `ADC(4)`, the temperature sensor (about 25 C), and
`machine.bootloader()`, which reboots into BOOTSEL: the serial port goes away (as on a board) and
`on_bootsel` runs, e.g. to bring up a VirtualDrive that plugs the Pico back in once flashed.
The flash folder is mounted at `/` (VfsPosix), so board paths such as `/main.py` are its files.
Output waits while a host has the port open, however long it takes to read it (a board's USB CDC
waits while the port is open); with no host it is dropped after a short wait, as a board's is.

Starting and killing the interpreter happen under one lock, and the bridge starts none once unplugging
began, so an unplug racing a soft reset leaves no interpreter behind. Every wait of the rig is bounded:
one that runs out raises SimError naming what did not stop.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import tty
from pathlib import Path
from typing import Callable

from . import SimError
from .board import close_pipes, require_micropython

HEAP = "192k"  # about what MicroPython leaves free on an RP2040
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PROMPTS = (b">>> ", b"... ", RAW_BANNER + b">", b"\x04>")
WRITE_WAIT_S = 0.5
BOOTSEL_EXIT = 66  # exit status of the interpreter for machine.bootloader()
STOP_WAIT_S = 5.0  # an interpreter or bridge thread not gone this long after being stopped is a fault


def _boot_code(flash: Path, run_main: bool) -> str:
    code = (
        "import os, sys, vfs\n"
        f"vfs.mount(vfs.VfsPosix({str(flash)!r}), '/')\n"
        "os.chdir('/')\n"
        "sys.path[:] = ['', '.frozen', '/lib']\n"
        "import machine as _machine\n"
        "class _ADC:\n"  # the RP2's temperature sensor on ADC 4: about 25 C, drifting slowly
        "    def __init__(self, channel):\n"
        "        self.channel = channel\n"
        "    def read_u16(self):\n"
        "        import math, time\n"
        "        return 14089 + int(40 * math.sin(time.time() / 20)) if self.channel == 4 else 0\n"
        "class _Machine:\n"
        "    ADC = _ADC\n"
        "    def __getattr__(self, name):\n"
        "        return getattr(_machine, name)\n"
        "    def bootloader(self, *args):\n"
        f"        sys.exit({BOOTSEL_EXIT})\n"
        "sys.modules['machine'] = _Machine()\n"
    )
    if run_main:
        code += (
            "for _f in ('boot.py', 'main.py'):\n"
            "    try:\n"
            "        _src = open(_f).read()\n"
            "    except OSError:\n"
            "        continue\n"
            "    exec(_src)\n"
        )
    return code


def _reap(child: subprocess.Popen[bytes]) -> int:
    """Wait (bounded) for an interpreter that exited or was killed, close its pipes; its exit status."""
    try:
        status = child.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        raise SimError(f"the interpreter (pid {child.pid}) had not exited {STOP_WAIT_S} s after its output ended") from None
    close_pipes(child)
    return status


class VirtualPico:
    """A plugged-in virtual Pico. Use as a context manager; `.port` is what a host opens."""

    def __init__(self, flash_dir: Path, serial: str = "E6614C311B4A6D2C", link_dir: Path | None = None,
                 heap: str = HEAP, on_bootsel: Callable[["VirtualPico"], None] | None = None) -> None:
        self.flash_dir = Path(flash_dir).resolve()
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.serial = serial
        self.heap = heap
        self.on_bootsel = on_bootsel
        self._own_link_dir = link_dir is None
        self.link_dir = Path(link_dir) if link_dir else Path(tempfile.mkdtemp(prefix="vpico-"))
        self.port = str(self.link_dir / f"pico-{serial}")
        self.pty = ""
        self.boots = 0
        self._exe = require_micropython()
        self._lock = threading.Lock()  # the host's input and the REPL mode it implies
        self._power = threading.Lock()  # plugged or not, and which interpreter runs: changed together
        self._plugged = False
        self._master = self._slave = -1
        self._child: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self._raw = False  # the host put the board in the raw REPL
        self._busy = False  # running code: Ctrl-C must interrupt it
        self._booting = False  # started, no output yet: the unix port may not be running Python code
        self._boot_interrupted = False
        self._tail = b""
        self._hold_until_raw = False

    # -- plugging --------------------------------------------------------------------------------
    def __enter__(self) -> "VirtualPico":
        self.replug()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def replug(self) -> None:
        """Plug the board in: a new pty, the link pointed at it, a fresh power-up (main.py runs)."""
        with self._power:
            if self._plugged:
                return
            self._master, self._slave = pty.openpty()
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self.pty = os.ttyname(self._slave)
            self._raw = False
            self._plugged = True
            self._start_child(run_main=True)
        tmp = self.link_dir / f".pico-{self.serial}.tmp"  # hidden: never seen as a port half-made
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.pty)
        os.replace(tmp, self.port)
        self._threads = [
            threading.Thread(target=self._host_to_board, name="vpico-in", daemon=True),
            threading.Thread(target=self._board_to_host, name="vpico-out", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def unplug(self) -> None:
        """Pull the cable: the link goes, the pty closes (hosts see an I/O error), the board stops."""
        with self._power:  # after this no interpreter starts, and the one running is killed
            if not self._plugged:
                return
            self._plugged = False
            self._kill_child()
        Path(self.port).unlink(missing_ok=True)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(STOP_WAIT_S)
                if t.is_alive():
                    raise SimError(f"virtual Pico {self.serial}: bridge thread {t.name} still running "
                                   f"{STOP_WAIT_S} s after unplug")
        if self._child:
            _reap(self._child)  # its pipes close only once no thread reads them
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = -1

    def stop(self) -> None:
        self.unplug()
        if self._own_link_dir:
            shutil.rmtree(self.link_dir, ignore_errors=True)

    @property
    def plugged(self) -> bool:
        return self._plugged

    # -- the interpreter ------------------------------------------------------------------------
    def _start_child(self, run_main: bool, raw: bool | None = None) -> None:
        """Power the interpreter up: running boot.py and main.py, or straight into the REPL (the raw
        one by default when main.py is not run; its output held until the raw banner)."""
        raw = not run_main if raw is None else raw
        self._child = subprocess.Popen(
            [self._exe, "-X", f"heapsize={self.heap}", "-i", "-c", _boot_code(self.flash_dir, run_main)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
            cwd=self.flash_dir,
        )
        self.boots += 1
        self._busy = True
        self._booting = True
        self._boot_interrupted = False
        self._tail = b""
        self._hold_until_raw = raw
        if raw:
            self._to_child(b"\x01")

    def _kill_child(self) -> None:
        child = self._child
        if child and child.poll() is None:
            child.kill()
            try:
                child.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                raise SimError(f"the interpreter (pid {child.pid}) survived SIGKILL for {STOP_WAIT_S} s") from None

    def _to_child(self, data: bytes) -> None:
        child = self._child
        try:
            if child and child.stdin:
                child.stdin.write(data)
        except (BrokenPipeError, ValueError, OSError):
            pass  # the board is resetting: input is lost, as on a board

    def _track_input(self, data: bytes) -> None:
        """Follow the REPL mode from the host's keystrokes; send SIGINT for Ctrl-C when busy."""
        for b in data:
            if b == 0x01:
                self._raw = True
            elif b == 0x02:
                self._raw = False
            elif b == 0x03:
                child = self._child
                if self._busy and child and child.poll() is None:
                    if self._booting:
                        # Still starting: a SIGINT would stop the unix port's CPython launcher with a
                        # CPython traceback a board never prints. A board stops main.py at the REPL.
                        self._boot_interrupted = True
                        child.kill()
                    else:
                        child.send_signal(signal.SIGINT)
            elif b == 0x04 and self._raw:
                self._busy = True  # runs the command typed, or soft-resets on an empty line

    def _host_to_board(self) -> None:
        while self._plugged:
            try:
                ready, _, _ = select.select([self._master], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(self._master, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            with self._lock:
                self._track_input(data)
                self._to_child(data)

    def _host_has_port(self) -> bool:
        """A host holds the pty open (any descriptor on it but the bridge's own)."""
        me, target = str(os.getpid()), self.pty
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                if pid == me and int(fd) == self._slave:
                    continue
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return True
                except OSError:
                    continue
        return False

    def _to_host(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + WRITE_WAIT_S
        while view and self._plugged:
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    if not self._host_has_port():
                        return  # nobody has the port open: drop, as USB CDC does
                    deadline = time.monotonic() + WRITE_WAIT_S  # open but slow to read: wait, as a board does
                select.select([], [self._master], [], 0.05)
            except OSError:
                return

    def _board_to_host(self) -> None:
        while self._plugged:
            child = self._child
            assert child is not None and child.stdout is not None
            try:
                data = os.read(child.stdout.fileno(), 4096)
            except (OSError, ValueError):
                data = b""
            if not data:
                status = _reap(child)
                if not self._plugged:
                    return
                if status == BOOTSEL_EXIT:
                    self.unplug()
                    if self.on_bootsel:
                        self.on_bootsel(self)
                    return
                if status != -signal.SIGINT and not self._boot_interrupted:
                    self._to_host(b"MPY: soft reboot\r\n")  # outside the locks: it may wait for a slow host
                with self._power, self._lock:
                    if not self._plugged:
                        return  # unplugged since: starting one now would outlive the unplug
                    if status == -signal.SIGINT or self._boot_interrupted:
                        # Ctrl-C came before the interpreter could catch it (it had just started):
                        # on a board main.py would stop at the REPL, so start the REPL without it
                        self._start_child(run_main=False, raw=self._raw)
                    else:
                        self._start_child(run_main=not self._raw)
                continue
            self._booting = False
            self._tail = (self._tail + data)[-64:]
            if self._tail.endswith(PROMPTS):
                self._busy = False
            if self._hold_until_raw:
                at = self._tail.find(RAW_BANNER)
                if at < 0:
                    continue
                self._hold_until_raw = False
                data = self._tail[at:]
            self._to_host(data)
