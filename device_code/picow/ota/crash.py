"""Why the board failed: its last crash record, why it last reset, what firmware it runs.

boot.py calls begin() first thing on every boot and record(exc) when the app fails (an import error
or an exception out of its loop). The record (`ota/crash.json`: type, message, traceback cut to
TRACEBACK_MAX, boot number, reset cause) is written atomically and best effort: a full or failing
flash loses the record, never the boot. A reset by the watchdog leaves no exception behind, so the
next boot writes its record. begin() leaves the record in hw.LAST_ERROR and what firmware() says in
hw.FIRMWARE, which every heartbeat sends, until a newer crash or a committed update (clear())
supersedes the record.

Reset causes: `soft` when boot.py or the agent reset the board on purpose (they leave `ota/reset`
behind first, since on the RP2040 machine.reset() itself goes through the watchdog), else what
machine.reset_cause() says: `power_on` or `watchdog`. On the unix port the test rig says it in
PICOW_RESET_CAUSE.

boot.py's recover.py drops this module before the app starts and the agent loads it for a commit
only, so its code does not take the app's RAM; what this boot is (hw.BOOT, hw.RESET_CAUSE,
hw.FIRMWARE, hw.LAST_ERROR) stays in ota/hw.py.
"""

import io
import json
import os
import sys

from ota import hw, logring

CRASH = "ota/crash.json"
MARK = "ota/reset"
EPOCH = "ota/epoch"
TYPE_MAX = 64
MESSAGE_MAX = 256
TRACEBACK_MAX = 1024
RECORD_MAX = 4096  # a crash.json larger than this is not ours: ignored
BOARD = sys.platform == "rp2"

_record = None


def _read(path, limit):
    try:
        with open(path) as f:
            return f.read(limit + 1)
    except OSError:
        return None


def _write(path, text):
    """Replace `path` by `text` atomically (temp file, rename); False when the flash refused."""
    from ota import fs  # imported on use: boot.py must boot whatever state ota/ is in

    try:
        fs.write_atomic(path, text.encode())
        hw.step("crash saved")
        return True
    except Exception as exc:  # best effort: a full flash must not stop the app or the switch
        print("crash: not saved:", exc)
        return False


def _machine_cause():
    if not BOARD:
        return os.getenv("PICOW_RESET_CAUSE") or "power_on"
    import machine

    cause = machine.reset_cause()
    if cause == machine.PWRON_RESET:
        return "power_on"
    if cause == machine.WDT_RESET:
        return "watchdog"
    return "cause %d" % cause


def load():
    """The crash record on flash, or None."""
    global _record
    if _record is None:
        text = _read(CRASH, RECORD_MAX)
        try:
            rec = json.loads(text) if text and len(text) <= RECORD_MAX else None
        except ValueError:
            rec = None
        _record = rec if isinstance(rec, dict) and isinstance(rec.get("type"), str) else False
    return _record or None


def _save(rec):
    global _record
    _record = hw.LAST_ERROR = rec
    _write(CRASH, json.dumps(rec))


def begin():
    """Note this boot (hw.BOOT, its number; hw.RESET_CAUSE); give the last record its cause, record a
    watchdog reset."""
    try:
        hw.BOOT = int(_read(EPOCH, 16) or 0) + 1
    except ValueError:
        hw.BOOT = 1
    mark = _read(MARK, 16)
    if mark is not None:
        try:
            os.remove(MARK)
        except OSError:
            pass
    hw.RESET_CAUSE = cause = "soft" if mark is not None else _machine_cause()
    rec = load()
    if cause == "watchdog":
        _save({"type": "WatchdogReset", "message": "the watchdog reset the board: the app stopped feeding it",
               "traceback": "", "boot": hw.BOOT - 1, "reset_cause": cause})
    elif rec is not None and not rec.get("reset_cause"):
        rec["reset_cause"] = cause
        _save(rec)
    hw.LAST_ERROR = load()
    hw.FIRMWARE = firmware()


def will_reset():
    """Called just before a reset on purpose, so the next boot knows it was no crash."""
    try:
        with open(MARK, "w") as f:
            f.write("soft")
    except OSError:
        pass


def record(exc):
    """Keep `exc` as the board's last crash (best effort; never raises)."""
    try:
        tb = io.StringIO()
        sys.print_exception(exc, tb)
        text = tb.getvalue()
        if len(text) > TRACEBACK_MAX:  # the innermost frames, at the end, tell the most
            text = "..." + text[-(TRACEBACK_MAX - 3):]
        _save({"type": type(exc).__name__[:TYPE_MAX], "message": str(exc)[:MESSAGE_MAX],
               "traceback": text, "boot": hw.BOOT, "reset_cause": ""})
        logring.add(text)
    except Exception as e:  # noqa: BLE001 - a failed record must not hide the crash itself
        print("crash: not recorded:", e)


def clear():
    """A new release committed: the last record no longer tells about the running app."""
    global _record
    _record = False
    hw.LAST_ERROR = None
    try:
        os.remove(CRASH)
    except OSError:
        pass


def firmware():
    """MicroPython version, .mpy ABI, board name and unique id, for heartbeats."""
    impl = sys.implementation
    out = {"micropython": "%d.%d.%d" % impl.version[:3], "mpy": getattr(impl, "_mpy", None),
           "board": getattr(impl, "_machine", sys.platform)[:64], "uid": None}
    if BOARD:
        import machine
        from binascii import hexlify

        out["uid"] = hexlify(machine.unique_id()).decode()
    else:
        out["uid"] = os.getenv("PICOW_UNIQUE_ID")
    return out

