"""Push files to a running MicroPython board over its serial raw REPL, through mpremote's transport.

Every file goes to a temporary name next to its destination, is hashed on the board (sha256) and
compared, and only when all of them match are they renamed into place, so a failed or interrupted
push leaves the board's old files as they were. Then the version and id are read back from the
board's `/version.json` and `/config.json`, and the board is soft-reset so its new main.py runs.
File bytes travel as base64, zlib-compressed where the board has `deflate` (usb/transfer.py).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import serial
from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport

from .. import release
from ..errors import BadInput, PicoctlError
from ..progress import Progress
from . import SERIAL_BAUD, port_claim, sources, transfer

TMP_SUFFIX = release.PUSH_TMP_SUFFIX
VERSION_FILE = "version.json"
READ_TIMEOUT_S = 5  # a board silent this long is not answering: an error, never a hang
QUIET_S = 0.3  # no output for this long after Ctrl-C: the program has stopped
INTERRUPT_WAIT_S = 1.0  # output for this long after a Ctrl-C: send another
INTERRUPT_S = 5.0
ANSWER_S = 30.0  # the longest one answer of the board may take, however many bytes keep coming


@dataclass(frozen=True)
class PushResult:
    port: str
    files: int
    bytes: int
    seconds: float
    verified: bool
    version: str | None  # read back from the board after its soft reset
    device_id: str | None  # `id` from the board's /config.json, when it has one
    leftovers: int = 0  # temporary files an interrupted push had left, removed first


def _board_path(prefix: str, name: str) -> str:
    release.safe_member_name(name)
    return str(PurePosixPath(prefix or "/") / name)


def release_files(source: Path, trusted: Sequence[str] | None = None) -> tuple[dict[str, bytes], str | None]:
    """The files of a pico/picow release folder (checked against meta.json and, given `trusted`
    release keys, its signature) or of a plain folder.

    A release also gets `/version.json` ({"version", "target"}), which the board app reports.
    """
    source = Path(source)
    if not source.is_dir():
        raise BadInput(f"{source}: not a folder (expected a pico/picow release or a folder of files)")
    if (source / "meta.json").exists():
        meta = sources.verified(source, trusted)
        if meta["target"] not in release.BOARD_TARGETS or meta.get("format") != "tar":
            raise BadInput(f"{source}: a {meta['target']} {meta.get('format')} release cannot be pushed over serial"
                           + ("; flash it with `picoctl usb flash`" if meta.get("format") == "uf2" else ""))
        files = release.read_tar_files(source / meta["artifact"])
        files[VERSION_FILE] = json.dumps({"version": meta["version"], "target": meta["target"]}).encode()
        return files, meta["version"]
    files = {f.name: f.path.read_bytes() for f in release.iter_source(source)}
    if not files:
        raise BadInput(f"{source}: folder is empty")
    return files, None


def push_release(port: str, source: Path, progress: Progress, verify: bool = True,
                 trusted: Sequence[str] | None = None) -> PushResult:
    """Push a release folder (or a plain folder) and check the board reports the new version."""
    files, version = release_files(source, trusted)
    return push_version(port, files, version, progress, verify)


def push_version(port: str, files: dict[str, bytes], version: str | None, progress: Progress,
                 verify: bool = True) -> PushResult:
    """Push the files of release_files and check the board reports their version."""
    result = push_files(port, files, progress, verify=verify)
    if version is not None and result.version != version:
        raise PicoctlError(f"{port}: pushed {version} but the board reports {result.version or 'no version'} after reset")
    return result


def interrupt(t: SerialTransport) -> None:
    """Stop the board's program: Ctrl-C until it is at a prompt or falls silent.

    mpremote's enter_raw_repl sends one Ctrl-C, then reads until the raw REPL banner for as long as
    output keeps coming: a Ctrl-C lost while the board reboots (a second push right after the first
    one's soft reset) would leave it reading a chatty main.py forever. TransportError when the
    program still prints after INTERRUPT_S of trying.
    """
    serial_port = t.serial
    timeout, serial_port.timeout = serial_port.timeout, QUIET_S
    try:
        deadline = time.monotonic() + INTERRUPT_S
        while time.monotonic() < deadline:
            serial_port.write(b"\r\x03")
            tail, asked = b"", time.monotonic()
            while time.monotonic() - asked < INTERRUPT_WAIT_S:
                data = serial_port.read(serial_port.in_waiting or 1)
                if not data:
                    return  # silent: stopped, or a program that prints nothing; the REPL will tell
                tail = (tail + data)[-16:]
                if tail.endswith((b">>> ", b"\r\n>")):
                    return
    finally:
        serial_port.timeout = timeout
    raise TransportError("the board keeps running its program through Ctrl-C")


class BoundedTransport(SerialTransport):
    """mpremote's serial transport with every wait for an answer bounded overall.

    mpremote's read_until keeps its overall deadline only while the line is quiet: a peer that
    floods the port without ever sending the awaited ending held a push for ever, its bytes piling up.
    Here the deadline (ANSWER_S unless the caller gives a shorter one) holds whatever arrives.
    """

    def read_until(self, min_num_bytes: int, ending: bytes, timeout: float | None = 10,
                   data_consumer: Callable[[bytes], None] | None = None,
                   timeout_overall: float | None = None) -> bytes:
        deadline = time.monotonic() + min(ANSWER_S, timeout_overall if timeout_overall is not None else ANSWER_S)
        data = bytearray()
        last = time.monotonic()
        while not data.endswith(ending):
            now = time.monotonic()
            if now >= deadline or (timeout is not None and now >= last + timeout):
                break
            new = self.serial.read(1) if self.is_pty or self.serial.in_waiting > 0 else b""
            if not new:
                time.sleep(0.01)
                continue
            last = time.monotonic()
            if data_consumer:
                data_consumer(new)
                data = bytearray(new)
            else:
                data += new
        return bytes(data)


def _open(port: str) -> SerialTransport:
    try:
        transport = BoundedTransport(os.path.realpath(port), baudrate=SERIAL_BAUD, timeout=READ_TIMEOUT_S)
    except (TransportError, serial.SerialException, OSError) as exc:
        raise PicoctlError(f"{port}: cannot open the serial port: {exc}") from None
    try:
        interrupt(transport)
        transport.enter_raw_repl(soft_reset=True)
    except (TransportError, serial.SerialException, OSError) as exc:
        transport.close()
        raise PicoctlError(f"{port}: the board does not answer on its raw REPL ({exc}); is it running MicroPython?") from None
    return transport


def _mkdirs(t: SerialTransport, paths: list[str]) -> None:
    dirs = sorted({str(p) for path in paths for p in PurePosixPath(path).parents if str(p) != "/"})
    if dirs:
        t.exec(f"import os\nfor d in {dirs!r}:\n try:\n  os.mkdir(d)\n except OSError:\n  pass")


def _remove_leftovers(t: SerialTransport) -> int:
    """Remove the temporary files an interrupted push left anywhere on the board; how many there were."""
    out = t.exec(
        "import os\ndef _w(d, n):\n for e in os.ilistdir(d):\n  p = d.rstrip('/') + '/' + e[0]\n"
        "  if e[1] == 0x4000:\n   n = _w(p, n)\n"
        f"  elif e[0].endswith({TMP_SUFFIX!r}):\n   os.remove(p)\n   n += 1\n return n\n"
        "print(_w('/', 0))"
    )
    return int(out.decode().strip())


def _in_the_way(t: SerialTransport, paths: list[str]) -> list[str]:
    """What on the board would stop a file landing at each of `paths`: a folder at its place, or a
    file where one of its folders goes (left by another tool, mpremote say). Empty when nothing."""
    out = t.exec(
        "import os\ndef _k(p):\n try:\n  return os.stat(p)[0] & 0o170000\n except OSError:\n  return 0\n"
        f"_bad = []\nfor p in {paths!r}:\n"
        " if _k(p) == 0o040000:\n  _bad.append(p + ' is a folder on the board')\n"
        " d = p.rsplit('/', 1)[0]\n"
        " while d:\n"
        "  if _k(d) not in (0, 0o040000):\n   _bad.append(d + ' is a file on the board, where a folder goes')\n"
        "  d = d.rsplit('/', 1)[0]\n"
        "print(repr(_bad))"
    )
    return list(dict.fromkeys(ast.literal_eval(out.decode().strip())))


def _commit(t: SerialTransport, moves: list[tuple[str, str]]) -> None:
    # Renamed as paths relative to "/" (after chdir): same effect on a board, and the unix port's
    # VfsPosix mounted at "/" mishandles a rename between two absolute paths.
    pairs = [(a.lstrip("/"), b.lstrip("/")) for a, b in moves]
    t.exec(
        f"import os\nos.chdir('/')\nfor a, b in {pairs!r}:\n"
        " try:\n  os.rename(a, b)\n except OSError:\n  os.remove(b)\n  os.rename(a, b)"
    )


def _discard(t: SerialTransport, paths: list[str]) -> None:
    try:
        t.exec(f"import os\nfor p in {paths!r}:\n try:\n  os.remove(p)\n except OSError:\n  pass")
    except (TransportError, serial.SerialException, OSError):
        pass


def _read_back(t: SerialTransport) -> tuple[str | None, str | None]:
    """The version and the device id the board holds, read from its flash (the files just committed)."""
    out = t.exec(
        "def _r(p):\n try:\n  with open(p) as f:\n   return f.read()\n except OSError:\n  return ''\n"
        f"print(repr([_r('/{VERSION_FILE}'), _r('/config.json')]))"
    )
    found: list[str | None] = []
    for text, key in zip(ast.literal_eval(out.decode().strip()), ("version", "id"), strict=False):
        try:
            value = json.loads(text).get(key) if text else None
        except (ValueError, AttributeError, RecursionError):  # a file on the board, written by anyone
            value = None
        found.append(value if isinstance(value, str) else None)
    return found[0], found[1]


def push_files(port: str, files: dict[str, bytes], progress: Progress, verify: bool = True,
               dest_prefix: str = "/") -> PushResult:
    """Write `files` (board-relative names) under `dest_prefix`, verify, then rename all into place."""
    if not files:
        raise BadInput("nothing to push")
    if not dest_prefix.startswith("/"):
        raise BadInput(f"destination {dest_prefix!r} must be an absolute board path")
    targets = {name: _board_path(dest_prefix, name) for name in sorted(files)}
    total = sum(len(d) for d in files.values())
    t0 = time.monotonic()
    progress.start(total=total, phase="connect")
    try:
        with port_claim.claim(port, "picoctl usb push"):
            transport = _open(port)
            try:
                version, device_id, leftovers = _push(transport, port, files, targets, progress, verify)
            finally:
                _close(transport)
    except PicoctlError as exc:
        progress.fail(str(exc))
        raise
    progress.finish()
    return PushResult(port, len(files), total, time.monotonic() - t0, verify, version, device_id, leftovers)


def read_identity(port: str) -> tuple[str | None, str | None]:
    """(version, device id) the board on `port` holds now (None each when it has none); it restarts."""
    with port_claim.claim(port, "picoctl usb (reading the board's identity)"):
        transport = _open(port)
        try:
            return _read_back(transport)
        except (TransportError, serial.SerialException, OSError, ValueError, SyntaxError) as exc:
            raise PicoctlError(f"{port}: cannot read what the board holds: {exc}") from None
        finally:
            _close(transport)


def _push(transport: SerialTransport, port: str, files: dict[str, bytes], targets: dict[str, str],
          progress: Progress, verify: bool) -> tuple[str | None, str | None, int]:
    """Write, verify and commit over an open raw REPL; the version and id the board reports after,
    and how many temporary files of an interrupted push it removed first."""
    total = sum(len(d) for d in files.values())
    current, written, committing, committed = "", 0, False, False
    temps: list[str] = []
    try:
        progress.phase("push", item="")
        leftovers = _remove_leftovers(transport)
        blocked = _in_the_way(transport, list(targets.values()))
        if blocked:
            raise PicoctlError(f"{port}: cannot push: {'; '.join(blocked[:3])}; nothing was changed")
        _mkdirs(transport, list(targets.values()))
        inflate = transfer.prepare(transport)
        for name, dest in targets.items():
            current, data, tmp = name, files[name], dest + TMP_SUFFIX
            progress.phase("push", item=name)
            temps.append(tmp)

            def step(done: int) -> None:
                nonlocal written
                written += done
                progress.update(written)

            transfer.write_file(transport, tmp, data, inflate, step)
        if verify:
            progress.phase("verify", total=total)
            current = ""
            names = {dest + TMP_SUFFIX: name for name, dest in targets.items()}
            got = transfer.hashes(transport, [(dest + TMP_SUFFIX, len(files[name])) for name, dest in targets.items()],
                                  lambda paths, n: progress.advance(n, item=names[paths[-1]]))
            for tmp, name in names.items():
                want = hashlib.sha256(files[name]).digest()
                if got[tmp] != want:
                    _discard(transport, temps)
                    raise PicoctlError(f"{port}: {name} failed verification on the board (sha256 {got[tmp].hex()[:16]}…, "
                                       f"expected {want.hex()[:16]}…); nothing was replaced, old files are in place")
        progress.phase("commit", item="")
        current, committing = "", True
        _commit(transport, [(d + TMP_SUFFIX, d) for d in targets.values()])
        committed = True
        progress.phase("reset")
        version, device_id = _read_back(transport)
        transport.exit_raw_repl()
        transport.serial.write(b"\x04")  # soft reset from the friendly REPL: main.py runs again
    except (TransportError, OSError) as exc:
        during = {"push": "while pushing", "verify": "while verifying"}.get(progress.event.phase, "")
        where = f"{during} {current} ({written} of {total} bytes sent)" if current else "while finishing the push"
        lost = isinstance(exc, serial.SerialException) or not isinstance(exc, (TransportExecError, OSError))
        if not lost and not committed:
            _discard(transport, temps)
        state = ("the new files are in place" if committed else
                 "some new files may be in place and others old: push again" if committing else
                 "the board's old files are in place" + (" (new ones were still under temporary names)" if lost else ""))
        what = "lost the board" if lost else "the board refused"
        raise PicoctlError(f"{port}: {what} {where}: {board_error(exc)}; {state}") from None
    return version, device_id, leftovers


_ERRNO = re.compile(r"OSError: (?:\[Errno )?(\d+)\]?")


def board_error(exc: Exception) -> str:
    """What went wrong, from the last line of a board's traceback, its errno in words
    (`OSError: 28` -> `OSError: 28 (No space left on device)`)."""
    lines = str(exc).strip().splitlines()
    last = lines[-1] if lines else type(exc).__name__
    found = _ERRNO.search(last)
    if found:
        last += f" ({os.strerror(int(found.group(1)))})"
    return last


def _close(t: SerialTransport) -> None:
    try:
        t.close()
    except (serial.SerialException, OSError):
        pass
