"""What boot.py runs around the app: before it, finish or undo an interrupted switch, count trial boots,
roll back (start()); after the app failed to import or raised out of its loop, keep the crash record
and reset a trial or run the agent alone (failed()).

Self-contained on purpose (os, sys, json only): it must work whatever state ota/ and app/ are in; the
crash record (ota/crash.py) and the preload of the agent's modules (preload()) are used when they
import, and never needed. Every step is recorded in
ota/state.json (temp file + rename) before the next one, so a power cut at any instant resumes it on
the next boot. boot.py drops this module before it imports the app, so its code does not take the
app's RAM. See docs/device-agent.md.
"""

import json
import os
import sys

STATE = "ota/state.json"
MAX_PENDING = 4  # ota/protocol.py's MAX_PENDING (recover.py needs nothing of ota/): tests/test_protocol.py checks they agree
BOARD = sys.platform == "rp2"
RESET_EXIT = 77
SYNC = not BOARD and os.getenv("PICOW_STEP_SYNC") == "1"


def step(name):
    # test rig only: a point where the power may be cut
    if SYNC:
        sys.stdout.write("@step boot " + name + "\n")
        sys.stdin.readline()


def exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def rmtree(p):
    if not exists(p):
        return
    if os.stat(p)[0] & 0x4000:
        for e in os.ilistdir(p):
            rmtree(p + "/" + e[0])
        os.rmdir(p)
    else:
        os.remove(p)


def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save(st):
    with open(STATE + ".tmp", "w") as f:
        f.write(json.dumps(st))
    os.rename(STATE + ".tmp", STATE)
    step(st["phase"])


def pend(st, phase, detail):
    o = st.get("offer") or {}
    p = st.get("pending") or []
    p.append({"seq": o.get("seq", st.get("seq", 0)), "version": o.get("version", st.get("version")),
              "from_version": st.get("version"), "phase": phase, "detail": detail,
              "transient": False})
    st["pending"] = p[-MAX_PENDING:]


crash = None  # ota/crash.py while it is loaded


def reset():
    if crash:
        crash.will_reset()
    if BOARD:
        import machine
        machine.reset()
    sys.exit(RESET_EXIT)


def sweep():
    """Remove every `*.tmp` in ota/ and the root: a temp file is only ever renamed into place whole, so
    one still there is what a power cut left of a write, and its file kept the old content."""
    for d in ("", "ota/"):
        for e in list(os.ilistdir(d or ".")):
            if e[0].endswith(".tmp") and not e[1] & 0x4000:
                os.remove(d + e[0])


def recover():
    sweep()
    st = load(STATE)
    if not isinstance(st, dict):
        return "committed"
    cfg = load("config.json") or {}
    ph = st.get("phase")
    if ph == "staged":
        rmtree("app.old")
        step("cleared app.old")
        st["phase"] = ph = "switching"
        save(st)
    if ph == "switching":
        if exists("app.new"):
            if exists("app"):
                rmtree("app.old")  # with app/ still here, any app.old/ is a leftover
                os.rename("app", "app.old")
                step("app -> app.old")
            os.rename("app.new", "app")
            step("app.new -> app")
        st["phase"] = ph = "trial"
        st["boots"] = 0
        pend(st, "trial", "switched by boot.py")
        save(st)
    if ph == "trial":
        st["boots"] = st.get("boots", 0) + 1
        if st["boots"] > cfg.get("trial_boots", 3):
            st["phase"] = ph = "reverting"
        save(st)
    if ph == "reverting":
        if exists("app.old"):
            if exists("app"):
                rmtree("app.bad")
                os.rename("app", "app.bad")
                step("app -> app.bad")
            os.rename("app.old", "app")
            step("app.old -> app")
        pend(st, "rolled_back", "not confirmed in %d boots" % (st.get("boots", 1) - 1))
        rec = crash.load() if crash else None
        if rec and rec.get("boot", 0) >= crash.hw.BOOT - st.get("boots", 1):  # a crash of this trial
            st["pending"][-1]["error"] = rec
        o = st.get("offer") or {}
        st["seq"] = max(st.get("seq", 0), o.get("seq", 0))
        st["offer"] = None
        st["phase"] = ph = "rolled_back"
        save(st)
    if ph == "trial":
        ms = min(cfg.get("wdt_ms", 8000), 8388)
        if BOARD:
            import machine
            machine.WDT(timeout=ms)
        else:
            sys.stdout.write("@wdt arm %d\n" % ms)  # the rig's line, kept out of the log ring
    else:
        rmtree("app.bad")
        rmtree("app.old")
    return ph


def preload():
    """Load the agent (which the app imports next) and, once each, every other module of ota/, dropped
    again at once: what a module leaves for good, the names it interns, is laid down now, with the
    agent's code, while the heap is in one piece, not between the app's objects at the first heartbeat,
    check or download, where it would cut the heap up (a LittleFS file open needs 1.2 KiB in one piece)."""
    import ota

    __import__("ota.agent")
    resident = list(sys.modules)
    for e in list(os.ilistdir("ota")):
        dot = e[0].rfind(".")
        name = e[0][:dot]
        if e[0][dot:] not in (".mpy", ".py") or name == "__init__" or "ota." + name in resident:
            continue
        try:
            __import__("ota." + name)
        except Exception as exc:  # a broken module fails its duty, not the boot
            sys.print_exception(exc)
        ota.unload(*[m[4:] for m in sys.modules if m.startswith("ota.") and m not in resident])


def start():
    """Everything before the app; returns the phase the board boots in, with app/ first on sys.path."""
    global crash
    try:
        from ota import crash, logring

        logring.install()
        crash.begin()
    except Exception as exc:  # a broken ota/ costs the crash record, not the boot
        sys.print_exception(exc)
        crash = None
    try:
        phase = recover()
    except Exception as exc:  # e.g. a flash too full to take state.json: run what is there rather than stop
        sys.print_exception(exc)
        phase = "unknown"
    if crash:  # loaded again should the app fail: until then the RAM its code takes is the app's
        crash = None
        import ota

        ota.unload("crash")
    try:
        preload()
    except Exception as exc:  # e.g. out of memory: each module loads when its duty runs, as it would anyway
        sys.print_exception(exc)
    sys.path[:] = ["app", ""] + [p for p in sys.path if p not in ("app", "")]
    return phase


def failed(exc, phase):
    """The app failed: keep its crash record; reset a trial, else run the update agent alone."""
    global crash
    sys.print_exception(exc)
    try:
        from ota import crash

        crash.record(exc)
    except Exception as e:  # a broken ota/ costs the crash record
        sys.print_exception(e)
        crash = None
    if phase == "trial":
        reset()
    # outside a trial nothing older remains: keep the board reachable for the next update
    print("boot: app failed, running the update agent alone")
    from ota import agent

    agent.run()
