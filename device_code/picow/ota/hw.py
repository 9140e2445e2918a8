"""The board under the agent: reset, watchdog, Wi-Fi, clock, free heap. (The app's sensors
and actuators are the app's own: see app/hardware.py in the sample app.)

On the Pico W (`sys.platform == "rp2"`) these drive the hardware. On the unix port the same calls
stand in for it, so the agent and the app run unchanged in tests. Each defines its own functions, in
the two halves of one `if`: the half that does not run is dropped once this module is imported, so
a board keeps none of the rig's code and the rig none of the board's. On the unix port:
- reset() exits with RESET_EXIT; the test rig starts the process again through boot.py;
- the watchdog prints `@wdt arm <ms>` and `@wdt feed` lines; the rig, standing for the hardware,
  kills a process that has not fed it within the timeout (a hung app cannot check its own deadline);
- Wi-Fi is the host's network, down while a file `wifi_down` exists in the rig's hardware folder
  (PICOW_SIM, else `sim/`); each join attempt prints `@wifi join`;
- `PICOW_STEP_SYNC=1` makes step(name) print `@step <name>` and wait for a line on stdin, so the rig
  can cut the power (SIGKILL) at an exact point of an update;
- `PICOW_MEM_TRACE=1` samples the live heap (after a collection) at every step from the last `check`
  on (where an update begins, with the check's code loaded), and reset() prints `@mem <the check's
  sample> <peak>` in bytes, for the benchmark and the memory test;
- `PICOW_PROBE=1` makes probe(), called after every app step, print `@probe <app steps> <live heap>
  <free heap>` (bytes, after a collection) on the first step and then at most twice a second, for
  `picoctl release smoke`; without it hw has no probe().
"""

import gc
import sys
import time

BOARD = sys.platform == "rp2"
RESET_EXIT = 77
WDT_MAX_MS = 8388  # the RP2040 watchdog's longest timeout

_wdt = None
BOOT = 0  # this boot's number (the agent's counter epoch), set by crash.begin() on every boot
RESET_CAUSE = ""  # why this boot happened (`soft`, `power_on`, `watchdog`), set by crash.begin()
FIRMWARE = None  # MicroPython version, .mpy ABI, board, unique id (crash.firmware()), set by crash.begin()
LAST_ERROR = None  # the last crash record (ota/crash.py) while it tells about the running app


ticks_ms = time.ticks_ms


def elapsed_ms(since):
    return time.ticks_diff(time.ticks_ms(), since)


def deadline(ms):
    """A ticks value `ms` from now, for due()."""
    return time.ticks_add(time.ticks_ms(), int(ms))


def after(base, ms):
    """The ticks value `ms` after the ticks value `base`."""
    return time.ticks_add(base, int(ms))


def earlier(a, b):
    """The earlier of two ticks values."""
    return a if time.ticks_diff(a, b) < 0 else b


def due(when):
    return time.ticks_diff(time.ticks_ms(), when) >= 0


def left_ms(when):
    """Milliseconds until `when` (0 once it is due)."""
    left = time.ticks_diff(when, time.ticks_ms())
    return left if left > 0 else 0


def sleep_ms(ms):
    """Sleep, feeding the watchdog at least every second."""
    while ms > 0:
        wdt_feed()
        step_ms = 1000 if ms > 1000 else ms
        time.sleep_ms(step_ms)
        ms -= step_ms
    wdt_feed()


def mem_free():
    """Free heap after a collection (without one the figure mostly counts garbage)."""
    gc.collect()
    return gc.mem_free()


if BOARD:
    import machine

    _wlan = None
    PROBING = False  # callers skip probe() when False
    TRACING = False  # callers skip building step names in hot loops when False

    def reset():
        """Restart the board: the next run begins with boot.py."""
        from ota import crash

        crash.will_reset()
        machine.reset()

    def wdt_arm(ms):
        """Start the watchdog; once armed it cannot be stopped until the next reset."""
        global _wdt
        _wdt = machine.WDT(timeout=min(ms, WDT_MAX_MS))

    def wdt_feed():
        if _wdt is not None:
            _wdt.feed()

    def wifi_connect(ssid, password, timeout_ms=15000):
        """Join the network; True once connected."""
        global _wlan
        import network

        if _wlan is None:
            _wlan = network.WLAN(network.STA_IF)
            _wlan.active(True)
        if _wlan.isconnected():
            return True
        _wlan.connect(ssid, password)
        start = time.ticks_ms()
        while not _wlan.isconnected():
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                _wlan.disconnect()
                return False
            sleep_ms(200)
        return True

    def wifi_connected():
        return _wlan is not None and _wlan.isconnected()

    def rssi():
        if _wlan is not None:
            try:
                return _wlan.status("rssi")
            except Exception:
                return 0
        return -50

    def step(name):
        """A named point of an update (where the rig may cut the power)."""

else:
    import os

    _wdt_printed = 0
    _mem_first = None
    _mem_peak = 0
    _step_sync = os.getenv("PICOW_STEP_SYNC") == "1"
    _mem_trace = os.getenv("PICOW_MEM_TRACE") == "1"
    PROBING = os.getenv("PICOW_PROBE") == "1"
    TRACING = _step_sync or _mem_trace

    def _rig(line):
        """A line for the test rig, written past print() so the log ring (ota/logring.py) never keeps
        it: on a board these lines do not exist."""
        sys.stdout.write(line + "\n")

    def reset():
        from ota import crash

        crash.will_reset()
        if _mem_trace:
            _rig("@mem %s %d" % (_mem_first, _mem_peak))
        _rig("@reset")
        sys.exit(RESET_EXIT)

    def wdt_arm(ms):
        global _wdt
        _wdt = min(ms, WDT_MAX_MS)
        _rig("@wdt arm %d" % _wdt)

    def wdt_feed():
        global _wdt_printed
        if _wdt is None:
            return
        now = time.ticks_ms()
        if time.ticks_diff(now, _wdt_printed) >= 200:
            _wdt_printed = now
            _rig("@wdt feed")

    def wifi_connect(ssid, password, timeout_ms=15000):
        _rig("@wifi join")
        return wifi_connected()

    def wifi_connected():
        # the folder's path is read each time, not kept: a board has no such string, and its length
        # (the test's temporary folder) would decide where everything after it lies in the heap
        try:
            os.stat((os.getenv("PICOW_SIM") or "sim") + "/wifi_down")
            return False
        except OSError:
            return True

    def rssi():
        return -50

    if PROBING:  # else the agent never calls probe(), and its code is dropped with the board's
        _probe_steps = 0
        _probe_at = 0
        _probe_free = 0  # free heap in the last @probe line

        def probe():
            """One app step done: the rig hears the step count and the heap every 500 ms, and at once
            after a step that took 4 KiB or more (before the agent's next duty can fail on it)."""
            global _probe_steps, _probe_at, _probe_free
            _probe_steps += 1
            now = time.ticks_ms()
            gc.collect()
            free = gc.mem_free()
            if _probe_steps == 1 or time.ticks_diff(now, _probe_at) >= 500 or free + 4096 <= _probe_free:
                _probe_at, _probe_free = now, free
                _rig("@probe %d %d %d" % (_probe_steps, gc.mem_alloc(), free))

    def step(name):
        global _mem_first, _mem_peak
        if _mem_trace:
            if name == "check":  # an update begins: sample it from here
                _mem_first, _mem_peak = None, 0
            gc.collect()
            used = gc.mem_alloc()
            if _mem_first is None:
                _mem_first = used
            _mem_peak = max(_mem_peak, used)
        if _step_sync:
            _rig("@step " + name)
            sys.stdin.readline()
