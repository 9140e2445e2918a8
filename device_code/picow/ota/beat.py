"""The heartbeat duty, for the agent (ota/agent.py): one heartbeat and, in a trial, the commit once the
hub accepts one. Loaded for the duty and dropped after (agent.duty()). Every function takes the Agent first.
"""

import ota
from ota import fs, hw, logring
from ota.agent import OLD, Refused, describe


def run(a, app):
    """The duty: a heartbeat with the app's readings; a failure is printed, the next one comes anyway."""
    try:
        readings = app.readings() if app else {}
        if (yield from heartbeat(a, readings)) and a.st["phase"] == "trial":
            commit(a)
            a.next_flush = hw.deadline(0)
    except Exception as exc:
        print("ota: heartbeat failed:", describe(exc))


def heartbeat(a, readings):
    """One heartbeat; True when the hub accepted it (MAC-verified ok for our counter)."""
    counter = a.counter()
    body = {"id": a.id, "counter": counter, "version": a.running_version(), "seq": a.st["seq"],
            "uptime_s": hw.elapsed_ms(a.started) // 1000, "mem_free": hw.mem_free(), "rssi": hw.rssi(),
            "phase": a.st["phase"], "readings": readings, "keys": a.keys_version(),
            "boots": hw.BOOT, "reset_cause": hw.RESET_CAUSE, "firmware": hw.FIRMWARE, "last_error": hw.LAST_ERROR}
    try:
        resp = yield from a._post("/heartbeat", body, True)
    except ota.HTTPError as exc:
        if exc.status != 413 or body["last_error"] is None:
            raise
        body["last_error"] = None  # a record the hub will not take must not cost the heartbeat
        counter = body["counter"] = a.counter()
        resp = yield from a._post("/heartbeat", body, True)
    if resp.get("ok") is not True or resp.get("counter") != counter:
        raise Refused("heartbeat response does not answer this heartbeat")
    if resp.get("check_now"):
        a.check_now = True
    logring.want(resp.get("log_s"))
    return True


def commit(a):
    """The hub accepted a heartbeat from the new app: make it the app for good."""
    offer = a.st["offer"]
    a.pend("committed", "", False, offer)
    a.st["version"] = offer["version"]
    a.st["seq"] = offer["seq"]
    a.st["phase"] = "committed"
    a.st["offer"] = None
    a.st["boots"] = 0
    a.save()
    hw.step("phase committed")
    ota.call("crash", "clear")  # the new release is not the one that crashed
    fs.rmtree(OLD)
    hw.step("removed app.old")
