"""The end of an update's staging (ota/update.py): app.new made exactly the offer's files and the
state `staged`, the switch waiting for the app; or the failure recorded and reported. Loaded once the
files are staged (or the staging failed) and dropped after. Every function takes the Agent first.
"""

import os

import ota
from ota import fs, hw
from ota.agent import NEW, describe
from ota.update import Failed, FlashError

ENOSPC = 28


def run(a, files, failure):
    """True once `staged`, with nothing in app.new but `files`; else (`failure`, or a failure here)
    the update is recorded as failed and reported: False. Running out of memory is counted in the
    state (ota/oom.py); any other ending ends the count."""
    if failure is None:
        try:
            _prune(a, set(f["name"] for f in files))
        except Exception as exc:
            failure = exc
    if not isinstance(failure, MemoryError):
        a.st.pop("oom", None)
    if failure is None:
        hw.step("staged")
        a.st["phase"] = "staged"
        a.pend("staged")
        a.save()
        hw.step("phase staged")
        a.switch_by = hw.deadline(a._ms("switch_deadline_s"))
        a.next_flush = hw.deadline(0)
        return True
    yield from fail(a, *_reason(a, failure, files))
    return False


def _reason(a, exc, files):
    """(reason, transient) of the failure `exc` while staging `files`."""
    if isinstance(exc, MemoryError):
        return ota.call("oom", "ending", a, a.st["offer"]["version"], "staging " + _staging(files), exc)
    if isinstance(exc, Failed):
        return str(exc), exc.transient
    if isinstance(exc, FlashError):
        return flash_reason(exc.args[0]), False
    if isinstance(exc, OSError):
        return flash_reason(exc), False
    return "error while staging: " + describe(exc), False


def _staging(files):
    """The file being staged: the first not yet in app.new (each is renamed into place once whole)."""
    for f in files:
        if not fs.exists(NEW + "/" + f["name"]):
            return f["name"]
    return "app.new"


def flash_reason(exc):
    return "flash full" if exc.errno == ENOSPC else "flash error %s" % exc


def fail(a, reason, transient):
    """End or pause an update without touching the running app."""
    print("ota: update failed:", reason)
    offer = a.st.get("offer")
    if not transient:
        try:
            fs.rmtree(NEW)
        except OSError as exc:
            print("ota: cannot clear app.new:", exc)
        if offer:
            a.st["seq"] = max(a.st["seq"], offer["seq"])
        a.st["offer"] = None
    a.st["phase"] = "failed"
    a.pend("failed", reason, transient, offer)
    try:
        a.save()
    except OSError as exc:  # the report still goes out from memory
        print("ota: state not saved:", exc)
    yield from a.flush()


def _prune(a, names):
    """Remove whatever app.new holds that the offer does not list."""
    for rel in list(fs.walk_files(NEW)):
        if rel not in names:
            fs.remove(NEW + "/" + rel)
    _remove_empty_dirs(a, NEW)


def _remove_empty_dirs(a, root):
    for entry in list(os.ilistdir(root)):
        if entry[1] & 0x4000:
            sub = root + "/" + entry[0]
            _remove_empty_dirs(a, sub)
            if not list(os.ilistdir(sub)):
                os.rmdir(sub)
