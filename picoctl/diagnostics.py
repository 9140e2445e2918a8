"""Why a board failed: crash records, firmware inventory and log lines as boards report them.

Everything a board sends as text (an exception message, a traceback, a line of its output) is made
safe once, when the hub takes it in: control characters and terminal escapes become visible `\\xNN`
escapes (newlines are kept in tracebacks). Bytes that are not UTF-8 never get this far: the board
sends them as `\\xNN` (ota/logring.py), and the hub refuses JSON that is not text. What the hub
stores can then be shown on any terminal as it is. The limits here are the contract with the board's agent
(device_code/picow/ota/crash.py and logring.py cut to these sizes before sending; the hub refuses
more with 413).
"""

from __future__ import annotations

import re
from typing import Any

from .errors import BadInput
from .wireless_log import age

TYPE_MAX = 64
MESSAGE_MAX = 256
TRACEBACK_MAX = 1024
RESET_CAUSE_MAX = 32
LINE_MAX = 256
LOG_LINES_MAX = 64  # lines in one log post
FIRMWARE_STR_MAX = 64
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff]")
_UNSAFE_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff]")
_LOCATION = re.compile(r'File "([^"]{1,200})", line (\d{1,7})')
_UNIX_PORT_MACHINE = re.compile(r"\s*\[[^\]]*\]\s*version$")  # the unix port's: "linux [GCC 14.2.1] version"


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class TooLarge(BadInput):
    """A field over its limit: the board should have cut it (the hub answers 413)."""


def safe_text(text: str, multiline: bool = False) -> str:
    """`text` with control characters and terminal escapes made visible as `\\xNN` / `\\uNNNN`."""
    if multiline:
        text = text.replace("\r\n", "\n")
    return (_UNSAFE if multiline else _UNSAFE_ONE_LINE).sub(_escape, text)


def _str(data: dict[str, Any], name: str, limit: int, multiline: bool = False, required: bool = False) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise BadInput(f"{name}: expected a string")
    if len(value) > limit:
        raise TooLarge(f"{name}: {len(value)} characters, over the limit of {limit}")
    return safe_text(value, multiline)


def _int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise BadInput(f"{name}: expected a non-negative integer")
    return value


def crash_record(data: Any) -> dict[str, Any]:
    """A board's crash record, checked and made safe: type, message, traceback, boot, reset_cause."""
    if not isinstance(data, dict):
        raise BadInput("expected an object")
    out: dict[str, Any] = {
        "type": _str(data, "type", TYPE_MAX, required=True),
        "message": _str(data, "message", MESSAGE_MAX),
        "traceback": _str(data, "traceback", TRACEBACK_MAX, multiline=True),
        "boot": _int(data, "boot"),
        "reset_cause": _str(data, "reset_cause", RESET_CAUSE_MAX),
    }
    out["where"] = location(out["traceback"])
    return out


def firmware(data: Any) -> dict[str, Any]:
    """A board's inventory: MicroPython version, .mpy ABI number, board name, unique id."""
    if not isinstance(data, dict):
        raise BadInput("expected an object")
    return {
        "micropython": _str(data, "micropython", FIRMWARE_STR_MAX),
        "mpy": _int(data, "mpy"),
        "board": _str(data, "board", FIRMWARE_STR_MAX),
        "uid": _str(data, "uid", FIRMWARE_STR_MAX),
    }


def firmware_facts(fw: dict[str, Any]) -> list[str]:
    """What a board said it runs, the unknown left out: `MicroPython 1.24.1`, `.mpy 6.3`, its board
    (`Raspberry Pi Pico W with RP2040`; the unix port's machine less its compiler: `linux`), `id e661…`.
    `mpy_abi` is the ABI as a version (mpy_abi())."""
    board = _UNIX_PORT_MACHINE.sub("", str(fw.get("board") or "")).strip()
    return [fact for fact in (f"MicroPython {fw['micropython']}" if fw.get("micropython") else "",
                              f".mpy {fw['mpy_abi']}" if fw.get("mpy_abi") else "", board,
                              f"id {fw['uid']}" if fw.get("uid") else "") if fact]


def location(traceback: str) -> str:
    """`file:line` of the innermost frame of a MicroPython traceback, or ''."""
    found = _LOCATION.findall(traceback)
    return f"{found[-1][0]}:{found[-1][1]}" if found else ""


def error_summary(record: dict[str, Any] | None) -> str:
    """One line: `AttributeError: 'module' object has no attribute 'PWM' (app/main.py:12)`."""
    if not record or not record.get("type"):
        return ""
    text = record["type"] + (f": {record['message']}" if record.get("message") else "")
    return text + (f" ({record['where']})" if record.get("where") else "")


def failure_reason(phase: str, detail: str, error: dict[str, Any] | None) -> str:
    """Why a device's update failed, for a rollout line: `rolled_back: <error>` or `failed: <detail>`."""
    summary = error_summary(error)
    if phase == "rolled_back" and summary:
        return f"{phase}: {summary}"
    return f"{phase}: {detail or summary or 'no detail'}"


def retry_note(retry_at: float | None, now: float) -> str:
    """When the hub offers a transient failure's release again, for people: `retrying in 45s`, then
    `retrying at its next check`; '' for any other offer (`retry_at` None)."""
    if retry_at is None:
        return ""
    return f"retrying in {age(retry_at - now)}" if retry_at > now else "retrying at its next check"


# --- .mpy ABI -------------------------------------------------------------------------------------

def mpy_abi(value: int) -> str:
    """A board's `sys.implementation._mpy` as `<version>.<sub-version>` (its architecture left out)."""
    return f"{value & 0xFF}.{(value >> 8) & 3}"


def mpy_file_version(data: bytes) -> int:
    """The .mpy format version a file was compiled for, from its header (b'M', version, flags, ...).

    Files of bytecode only (no native code, as picoctl releases are) load on a board whose
    `_mpy & 0xff` equals it: MicroPython checks the sub-version and architecture only for native code.
    """
    if len(data) < 4 or data[0] != ord("M"):
        raise BadInput("not an .mpy file (no 'M' header)")
    if data[2] >> 2:
        raise BadInput("the .mpy file holds native code; picoctl releases carry bytecode only")
    return data[1]


def abi_mismatch(release_mpy: int | None, board_mpy: int | None) -> str:
    """Why a board cannot load a release's .mpy files, or '' when it can (or either is unknown)."""
    if release_mpy is None or board_mpy is None or release_mpy == board_mpy & 0xFF:
        return ""
    return f"release built for .mpy v{release_mpy}, the board loads .mpy v{mpy_abi(board_mpy)}"
