"""The OTA agent: its state, its requests and the scheduler of its duties (heartbeats, update checks,
staging into app.new, trial confirmation, log posts).

Flash layout (relative to the flash root): `app/` the running app, `app.new/` the staged one,
`app.old/` the previous one during a trial, `ota/state.json` the update state, `ota/epoch` the boot
epoch for request counters, `config.json` the device's identity and settings. boot.py performs the
switch and the rollback; the agent never renames `app/` itself. See docs/device-agent.md.

The agent's duties are jobs (generators) that poll() advances in the app's idle time between two
ticks: a heartbeat, the flush of queued reports, a check and the download of an update all run
while the app keeps stepping, each request bounded by `request_s` and each download by a minimum
rate as well. The app is stopped only for the switch, which it may hold off (`may_switch()`, for
example while the pump runs) for at most `switch_deadline_s`. Only this module stays loaded: each
duty's code (ota/beat.py, check.py, update.py, logpost.py) is loaded for its job and dropped after
(duty()), so it takes the app's RAM only while it runs.
"""

import errno
import json
import random

import ota
from ota import fs, hw, logring
from ota.protocol import MAX_BODY, MAX_PENDING

ota.unload("protocol")  # its constants are bound here and in ota/http.py; ota/offer.py loads the rest when it checks

STATE = "ota/state.json"
APP = "app"
NEW = "app.new"
OLD = "app.old"


class Refused(Exception):
    """An offer or a response that fails a check: never acted upon."""


class Agent:
    def __init__(self, cfg=None):
        """From `cfg` (None: config.json's) and the state on flash (ota/start.py, loaded for this)."""
        ota.call("start", "init", self, cfg)

    # --- bookkeeping ------------------------------------------------------------------------------

    def _ms(self, key):
        return int(self.cfg[key] * 1000)

    def _jittered(self, key):
        ms = self._ms(key)
        spread = ms * self.cfg["jitter"]
        return hw.deadline(ms - spread + random.random() * 2 * spread)

    def counter(self):
        self.n += 1
        if self.n >= 1000000:
            self.epoch = ota.call("start", "next_epoch")
            self.n = 1
        return self.epoch * 1000000 + self.n

    def keys_version(self):
        """The version of the key set the board trusts (ota/trust.py), read when first asked after a check."""
        if self.keys is None:
            self.keys = ota.call("trust", "keys_version")
        return self.keys

    def save(self):
        fs.write_json(STATE, self.st)

    def running_version(self):
        if self.st["phase"] == "trial":
            return (self.st.get("offer") or {}).get("version", self.st["version"])
        return self.st["version"]

    # --- running jobs -----------------------------------------------------------------------------

    def _advance(self, until):
        """Run the current job until it ends or `until` comes; waits for its sockets meanwhile."""
        while self.job is not None:
            try:
                wait = next(self.job)
            except StopIteration:
                self.job = None
                return
            hw.wdt_feed()
            if hw.due(until):
                return
            if wait is not None:
                _wait(wait, hw.left_ms(until))

    def drive(self, job):
        """Run `job` to its end (outside the app loop: tests, the benchmark, the switch)."""
        self.job = job
        while self.job is not None:
            self._advance(hw.deadline(1000))

    # --- requests ---------------------------------------------------------------------------------

    def _post(self, path, obj, signed, drop=False):
        """POST `obj`; once the answer is 200 (and its MAC verifies, when `signed`), the answer as a
        dict (an object). The HTTP client and the MAC are imported here, not by the module; with `drop`
        both are dropped and the answer is returned as it came, unparsed (a memoryview, of the
        transfer buffer when it fits): a check parses it in each of its steps, so its verification
        has the RAM of the parse too."""
        from ota import http
        from ota import hmac_sha256 as hmac

        body = json.dumps(obj).encode()
        headers = {"X-Picoctl-Device": self.id, "X-Picoctl-Mac": hmac.mac_hex(self.key, body)}
        if not signed:  # not needed again for this request: an update's reports download without it
            hmac = None
            ota.unload("hmac_sha256")
        until = hw.deadline(self._ms("request_s"))
        resp = yield from http.request("POST", self.hub + path, body, headers, self.tls, self.buf, until)
        try:
            data = yield from resp.read_all(MAX_BODY, until)  # the download buffer is free meanwhile
        finally:
            resp.close()
        if resp.status != 200:
            raise ota.HTTPError(resp.status, "%s: HTTP %d %s" % (path, resp.status, bytes(data[:120])))
        if signed and not (resp.mac and hmac.equal(hmac.mac_hex(self.key, data), resp.mac)):
            raise Refused("%s: response MAC does not verify" % path)
        if drop:
            resp = http = hmac = None
            ota.unload("http", "hmac_sha256")
            return data
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise Refused("%s: response is not an object" % path)
        return doc

    def report(self, phase, detail="", transient=False, offer=None):
        """Send one status report now; False when the hub could not be reached."""
        return (yield from self._send_status(self._status(phase, detail, transient, offer)))

    def _status(self, phase, detail, transient, offer):
        o = offer or self.st.get("offer") or {}
        return {"seq": o.get("seq", self.st["seq"]), "version": o.get("version", self.st["version"]),
                "from_version": self.st["version"], "phase": phase, "detail": detail[:200],
                "transient": transient}

    def _send_status(self, entry):
        body = {"id": self.id, "counter": self.counter()}
        for k in entry:
            body[k] = entry[k]
        try:
            yield from self._post("/deploy/status", body, False)
            return True
        except Exception as exc:  # the report stays queued (or is lost, for progress reports)
            print("ota: status not sent:", describe(exc))
            return False

    def pend(self, phase, detail="", transient=False, offer=None):
        """Queue a status report in the state, to be saved with it and sent by flush()."""
        pending = self.st.get("pending") or []
        pending.append(self._status(phase, detail, transient, offer))
        self.st["pending"] = pending[-MAX_PENDING:]

    def flush(self):
        """Send the queued status reports, oldest first."""
        pending = self.st.get("pending")
        if not pending:
            return
        sent = 0
        for entry in pending:
            if not (yield from self._send_status(entry)):
                break
            sent += 1
        if sent:
            self.st["pending"] = self.st["pending"][sent:]
            self.save()

    # --- updates ----------------------------------------------------------------------------------

    def switch(self, app):
        """Stop the app and reset into boot.py, which switches to the staged app."""
        if app:
            app.stop()
        self.drive(self.report("switching", "resetting into boot.py"))  # queued reports wait in state.json
        hw.reset()

    # --- main loop --------------------------------------------------------------------------------

    def online(self):
        """Join Wi-Fi if needed, with exponential backoff between attempts."""
        if hw.wifi_connected():
            return True
        if not hw.due(self.next_wifi):
            return False
        if hw.wifi_connect(self.cfg.get("wifi_ssid", ""), self.cfg.get("wifi_password", ""), self._ms("wifi_timeout_s")):
            self.wifi_backoff = 1000
            return True
        self.next_wifi = hw.deadline(self.wifi_backoff)
        self.wifi_backoff = min(self.wifi_backoff * 2, 60000)
        return False

    def poll(self, app=None, until=None):
        """The agent's duties until `until` (a ticks value; 50 ms from now when None), the app's
        idle time: one job after another, each picked up where the last poll left it."""
        until = until if until is not None else hw.deadline(50)
        hw.wdt_feed()
        if self.st["phase"] == "trial" and hw.due(self.trial_until):
            print("ota: trial not confirmed in time")
            hw.reset()
        while True:
            if self.job is None:
                self.job = self._due_job(app)
                if self.job is None:
                    return
            self._advance(until)
            if hw.due(until):
                return

    def _due_job(self, app):
        online = self.online()
        if self.switch_by is not None:
            if online and self.st.get("pending") and hw.due(self.next_flush):
                self.next_flush = hw.deadline(self._ms("heartbeat_s"))
                return self.flush()  # `staged` goes out while the app still runs
            if hw.due(self.switch_by) or not app or getattr(app, "may_switch", lambda: True)():
                self.switch(app)
        if not online:
            return None
        if hw.due(self.next_hb):
            self.next_hb = self._jittered("heartbeat_s")
            return duty("beat", self, app)
        if self.st.get("pending") and hw.due(self.next_flush):
            self.next_flush = hw.deadline(self._ms("heartbeat_s"))
            return self.flush()
        if logring.due():
            return duty("logpost", self)
        if self.st["phase"] != "trial" and self.switch_by is None and (self.check_now or hw.due(self.next_check)):
            self.check_now = False
            self.next_check = self._jittered("check_s")
            return self.update()
        return None

    def update(self):
        """Check for an offer (ota/check.py) and stage a verified one (ota/update.py), each module
        loaded for its part only."""
        offer = yield from duty("check", self)
        if offer is not None:
            yield from duty("update", self, offer)

    def run(self, app=None):
        """Run the app's steps every `tick_ms` and the agent's duties in between, forever."""
        if self.st["phase"] == "trial":
            hw.wdt_arm(self.cfg["wdt_ms"])
        tick = self.cfg["tick_ms"]
        while True:
            next_tick = hw.deadline(tick)
            if app:
                app.step()  # an app error ends the loop: boot.py resets a trial or runs the agent alone
                if hw.PROBING:
                    hw.probe()
            try:
                self.poll(app, next_tick)
            except Exception as exc:  # the agent must never take the app down with it
                print("ota: error:", describe(exc))
                self.job = None
            hw.sleep_ms(hw.left_ms(next_tick))


def duty(name, *args):
    """The job ota.`name`.run(*args) (a generator), with that module loaded while the job runs; what
    the job returns."""
    mod = __import__("ota." + name, None, None, ("run",))
    try:
        return (yield from mod.run(*args))
    finally:
        mod = None
        ota.unload(name)


def _wait(what, ms):
    """http.wait() on a socket of ota/http.py's, without holding that module in a caller's frame."""
    from ota import http

    http.wait(what, ms)


def describe(exc):
    """An exception as one short line for a report: its type when its message says nothing."""
    if isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT:
        return "timed out"
    text = str(exc)
    return text if text and not isinstance(exc, MemoryError) else exc.__class__.__name__ + (": " + text if text else "")


def run(app=None):
    Agent().run(app)
