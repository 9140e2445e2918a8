"""The OTA agent: heartbeats, update checks, staging into app.new, trial confirmation.

Flash layout (relative to the flash root): `app/` the running app, `app.new/` the staged one,
`app.old/` the previous one during a trial, `ota/state.json` the update state, `ota/epoch` the boot
epoch for request counters, `config.json` the device's identity and settings. boot.py performs the
switch and the rollback; the agent never renames `app/` itself. See docs/device-agent.md.

The agent's duties are jobs (generators) that poll() advances in the app's idle time between two
ticks: a heartbeat, the flush of queued reports, a check and the download of an update all run
while the app keeps stepping, each request bounded by `request_s` and each download by a minimum
rate as well. The app is stopped only for the switch, which it may hold off (`may_switch()`, for
example while the pump runs) for at most `switch_deadline_s`.
"""

import hashlib
import json
import os
import random
import sys
from binascii import hexlify, unhexlify

import ota
from ota import crash, fs, http, hw, logring, protocol, trust
from ota.hmac_sha256 import equal, mac_hex

CONFIG = "config.json"
STATE = "ota/state.json"
EPOCH = "ota/epoch"
APP = "app"
NEW = "app.new"
OLD = "app.old"
ENOSPC = 28
DEFAULTS = {
    "type": "picow",
    "heartbeat_s": 60,
    "check_s": 300,
    "jitter": 0.1,
    "trial_deadline_s": 120,
    "download_retries": 5,
    "wifi_timeout_s": 15,
    "tick_ms": 1000,
    "trial_boots": 3,
    "wdt_ms": 8000,
    "request_s": 10,
    "min_rate_bps": 1024,
    "switch_deadline_s": 120,
}


class Refused(Exception):
    """An offer or a response that fails a check: never acted upon."""


class Failed(Exception):
    """An update that cannot go on; `transient` when retrying later may succeed."""

    def __init__(self, message, transient):
        super().__init__(message)
        self.transient = transient


def load_state():
    st = fs.read_json(STATE)
    if not isinstance(st, dict):
        st = {}
    st.setdefault("version", "0.0.0")
    st.setdefault("seq", 0)
    st.setdefault("phase", "committed")
    return st


def safe_name(name):
    """A relative file name without `..`, empty parts or backslashes."""
    if not isinstance(name, str) or not name or name[0] == "/" or "\\" in name:
        return False
    for part in name.split("/"):
        if part in ("", ".", "..") or part.endswith(".tmp"):
            return False
    return True


def check_offer(offer, own_type, stored_seq):
    """Raise Refused naming the first thing wrong with a MAC-verified offer."""
    if not isinstance(offer, dict):
        raise Refused("offer is not an object")
    if offer.get("type") != own_type:
        raise Refused("offer for device type %r" % (offer.get("type"),))
    seq = offer.get("seq")
    if not isinstance(seq, int) or seq <= stored_seq:
        raise Refused("offer seq %r is not above %d: replayed or old" % (seq, stored_seq))
    if not isinstance(offer.get("version"), str):
        raise Refused("offer without a version")
    files = offer.get("files")
    if not isinstance(files, list) or not files:
        raise Refused("offer without files")
    seen = set()
    for f in files:
        if not (isinstance(f, dict) and safe_name(f.get("name")) and isinstance(f.get("size"), int)
                and f["size"] >= 0 and isinstance(f.get("sha256"), str) and len(f["sha256"]) == 64
                and isinstance(f.get("url"), str)):
            raise Refused("malformed file entry in offer")
        if protocol.reserved(f["name"]):
            raise Refused("offer file %r would shadow the agent" % f["name"])
        if f["name"] in seen:
            raise Refused("file listed twice in offer")
        seen.add(f["name"])
    if "main.py" not in seen:
        raise Refused("offer without main.py")
    mpy = getattr(sys.implementation, "_mpy", 0) & 0xFF
    if offer.get("mpy_version") is not None and offer["mpy_version"] != mpy:
        raise Refused("release built for .mpy v%s, this board loads .mpy v%d" % (offer["mpy_version"], mpy))


class Agent:
    def __init__(self, cfg=None):
        cfg = cfg if cfg is not None else fs.read_json(CONFIG)
        if not isinstance(cfg, dict):
            raise ValueError("config.json missing or unreadable")
        for k in DEFAULTS:
            cfg.setdefault(k, DEFAULTS[k])
        self.cfg = cfg
        self.id = cfg["id"]
        self.key = unhexlify(cfg["key"])
        self.hub = cfg["hub"].rstrip("/")
        self.tls = self._pinned()
        self.st = load_state()
        self.buf = ota.BUF  # one transfer at a time, whichever agent makes it
        assert len(self.buf) == protocol.CHUNK
        self.mv = memoryview(self.buf)
        self.started = hw.ticks_ms()
        self.n = 0
        self.epoch = self._next_epoch()
        self.job = None  # the duty in progress, a generator advanced by poll()
        self.switch_by = None  # staged: when the switch goes ahead whatever the app says
        self.check_now = self.st["phase"] in ("downloading", "failed") and bool(self.st.get("offer"))
        self.next_hb = hw.deadline(0)
        self.next_flush = hw.deadline(0)
        self.next_check = hw.deadline(random.random() * min(self._ms("check_s"), 5000))
        self.next_wifi = hw.deadline(0)
        self.wifi_backoff = 1000
        self.trial_until = hw.deadline(self._ms("trial_deadline_s"))

    def _pinned(self):
        """For an https:// hub, TLS trusting only its certificate from flash, once the certificate
        matches hub_fingerprint; None otherwise (http, or no usable pin: https requests then fail)."""
        if not self.hub.startswith("https://"):
            return None
        try:
            with open(self.cfg.get("hub_cert", "hub.der"), "rb") as f:
                der = f.read()
        except OSError:
            print("ota: hub certificate missing: provision the board again")
            return None
        if hexlify(hashlib.sha256(der).digest()).decode() != self.cfg.get("hub_fingerprint"):
            print("ota: hub certificate does not match hub_fingerprint: provision the board again")
            return None
        from ota import tls

        return tls.pinned_context(der)

    # --- bookkeeping ------------------------------------------------------------------------------

    def _ms(self, key):
        return int(self.cfg[key] * 1000)

    def _jittered(self, key):
        ms = self._ms(key)
        spread = ms * self.cfg["jitter"]
        return hw.deadline(ms - spread + random.random() * 2 * spread)

    def _next_epoch(self):
        try:
            with open(EPOCH) as f:
                epoch = int(f.read()) + 1
        except (OSError, ValueError):
            epoch = 1
        try:
            fs.write_atomic(EPOCH, str(epoch).encode())
        except OSError as exc:  # a full flash must not stop the app; the hub refuses reused counters
            print("ota: epoch not saved:", exc)
        return epoch

    def counter(self):
        self.n += 1
        if self.n >= 1000000:
            self.epoch = self._next_epoch()
            self.n = 1
        return self.epoch * 1000000 + self.n

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
                http.wait(wait, hw.left_ms(until))

    def drive(self, job):
        """Run `job` to its end (outside the app loop: tests, the benchmark, the switch)."""
        self.job = job
        while self.job is not None:
            self._advance(hw.deadline(1000))

    # --- requests ---------------------------------------------------------------------------------

    def _post(self, path, obj, signed):
        """POST `obj`; the answer as a dict, once it is 200, MAC-verified when `signed`, an object."""
        body = json.dumps(obj).encode()
        headers = {"X-Picoctl-Device": self.id, "X-Picoctl-Mac": mac_hex(self.key, body)}
        until = hw.deadline(self._ms("request_s"))
        resp = yield from http.request("POST", self.hub + path, body, headers, self.tls, self.buf, until)
        try:
            data = yield from resp.read_all(protocol.MAX_BODY, until)  # the download buffer is free meanwhile
        finally:
            resp.close()
        if resp.status != 200:
            raise http.HTTPError(resp.status, "%s: HTTP %d %s" % (path, resp.status, bytes(data[:120])))
        if signed and not (resp.mac and equal(mac_hex(self.key, data), resp.mac)):
            raise Refused("%s: response MAC does not verify" % path)
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
        self.st["pending"] = pending[-protocol.MAX_PENDING:]

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

    def heartbeat(self, readings):
        """One heartbeat; True when the hub accepted it (MAC-verified ok for our counter)."""
        counter = self.counter()
        body = {"id": self.id, "counter": counter, "version": self.running_version(), "seq": self.st["seq"],
                "uptime_s": hw.elapsed_ms(self.started) // 1000, "mem_free": hw.mem_free(),
                "rssi": hw.rssi(), "phase": self.st["phase"], "readings": readings, "keys": trust.keys_version()}
        body.update(crash.report())
        try:
            resp = yield from self._post("/heartbeat", body, True)
        except http.HTTPError as exc:
            if exc.status != 413 or body["last_error"] is None:
                raise
            body["last_error"] = None  # a record the hub will not take must not cost the heartbeat
            counter = body["counter"] = self.counter()
            resp = yield from self._post("/heartbeat", body, True)
        if resp.get("ok") is not True or resp.get("counter") != counter:
            raise Refused("heartbeat response does not answer this heartbeat")
        if resp.get("check_now"):
            self.check_now = True
        logring.want(resp.get("log_s"))
        return True

    def check(self):
        """Ask the hub for an offer: the verified offer, or None."""
        hw.step("check")
        nonce = hexlify(os.urandom(16)).decode()
        body = {"id": self.id, "counter": self.counter(), "type": self.cfg["type"],
                "version": self.running_version(), "seq": self.st["seq"], "nonce": nonce, "keys": trust.keys_version()}
        resp = yield from self._post("/check", body, True)
        if resp.get("id") != self.id:
            raise Refused("response for device %r" % (resp.get("id"),))
        if not (isinstance(resp.get("nonce"), str) and equal(resp["nonce"], nonce)):
            raise Refused("response nonce differs from ours: replayed response")
        offer = resp.get("offer")
        if offer is not None:
            hw.step("offer received")
            check_offer(offer, self.cfg["type"], self.st["seq"])
        try:
            trust.check(resp.get("keys"), offer, self.cfg["type"])  # the board is the last verifier of content
        except trust.Untrusted as exc:
            raise Refused(str(exc))
        return offer

    # --- staging ----------------------------------------------------------------------------------

    def _hash_file(self, path, h=None):
        """Feed the file into `h` (a new sha256 when None); returns (hasher, bytes read)."""
        h = h or hashlib.sha256()
        n = 0
        with open(path, "rb") as f:
            while True:
                k = f.readinto(self.buf)
                if not k:
                    break
                h.update(self.mv[:k])
                n += k
                yield
        return h, n

    def _matches(self, path, f):
        if fs.size(path) != f["size"]:
            return False
        h, _ = yield from self._hash_file(path)
        return hexlify(h.digest()).decode() == f["sha256"]

    def _copy(self, src, tmp, f):
        """Copy an unchanged file from the running app, verifying it on the way."""
        fs.remove(tmp)
        h = hashlib.sha256()
        with open(src, "rb") as i, open(tmp, "wb") as o:
            while True:
                k = i.readinto(self.buf)
                if not k:
                    break
                h.update(self.mv[:k])
                fs.write(o, self.mv[:k])
                yield
        return hexlify(h.digest()).decode() == f["sha256"]

    def _download(self, f, tmp, reuse=True):
        """Stream an artifact into `tmp`, hashing as it goes, resuming with Range after a drop.

        A `tmp` left by an earlier attempt is hashed and continued; should the result then not
        match, the file is fetched once more from its first byte before the update is given up."""
        h, have = yield from self._resume_point(f, tmp, reuse)
        reused = have > 0
        url = self.hub + f["url"] if f["url"].startswith("/") else f["url"]
        drops = 0
        if f["size"] == 0:
            with open(tmp, "wb"):
                pass
        while have < f["size"]:
            try:
                resp, h, have = yield from self._open(f, url, h, have)
            except (OSError, http.HTTPError) as exc:
                drops = yield from self._dropped(f, drops, exc)
                continue
            try:
                have = yield from self._receive(f, resp, tmp, h, have)
            except (OSError, http.HTTPError) as exc:  # the network's; the flash's come as FlashError
                have = fs.size(tmp)  # every byte written was hashed: resume after the last one
                drops = yield from self._dropped(f, drops, exc)
            finally:
                resp.close()
        if hexlify(h.digest()).decode() != f["sha256"]:
            fs.remove(tmp)
            if reused:
                return (yield from self._download(f, tmp, False))
            raise Failed("%s: sha256 does not match the offer" % f["name"], False)

    def _resume_point(self, f, tmp, reuse):
        """(hasher, size) of what an earlier attempt left in `tmp`, or a fresh start."""
        if reuse and fs.exists(tmp):
            h, have = yield from self._hash_file(tmp)
            if have <= f["size"]:
                return h, have
            fs.remove(tmp)
        return hashlib.sha256(), 0

    def _open(self, f, url, h, have):
        """GET the rest of the file from byte `have`: (response, hasher, have), the last two reset
        when the server sends the whole file again."""
        until = hw.deadline(self._ms("request_s"))
        resp = yield from http.request("GET", url, None, {"Range": "bytes=%d-" % have} if have else None,
                                       self.tls, self.buf, until)
        if resp.status == 206 and (resp.content_range or "").startswith("bytes %d-" % have):
            return resp, h, have
        if resp.status == 200:
            return resp, hashlib.sha256(), 0
        resp.close()
        if resp.status == 206:
            raise Failed("%s: Content-Range %s does not resume at %d" % (f["name"], resp.content_range, have), False)
        if resp.status == 416:
            raise Failed("%s: the hub holds fewer bytes than offered" % f["name"], False)
        raise Failed("%s: HTTP %d" % (f["name"], resp.status), resp.status >= 500)

    def _receive(self, f, resp, tmp, h, have):
        """Stream the body into `tmp` from byte `have`; returns the new size. The transfer must keep
        up `min_rate_bps` from its start (after `request_s` of grace) and never stall for `request_s`."""
        size = f["size"]
        grace = self._ms("request_s")
        rate = self.cfg["min_rate_bps"]
        start = hw.ticks_ms()
        got = 0
        chunks = 0
        out = on_flash(open, tmp, "ab" if have else "wb")
        try:
            while have < size:
                budget = hw.after(start, grace + got // rate * 1000)  # the minimum rate, from the start
                chunk = resp.ready_chunk()
                if chunk is None:  # nothing there yet: wait, within the rate and without a long stall
                    chunk = yield from resp.chunk(hw.earlier(budget, hw.deadline(grace)))
                elif hw.due(budget):
                    raise OSError(http.ETIMEDOUT)
                n = len(chunk)
                if n == 0:
                    break
                if have + n > size:
                    raise Failed("%s: longer than offered" % f["name"], False)
                on_flash(fs.write, out, chunk)
                h.update(chunk)
                have += n
                got += n
                if hw.TRACING:
                    chunks += 1
                    hw.step("download " + f["name"] + " " + str(chunks))
                yield
        except BaseException:
            try:
                out.close()
            except OSError:
                pass
            raise
        on_flash(out.close)  # LittleFS commits the file here: a full flash may show only now
        if have < size:
            raise OSError(ECONNRESET)
        return have

    def _dropped(self, f, drops, exc):
        drops += 1
        if drops > self.cfg["download_retries"]:
            raise Failed("%s: download dropped %d times (%s)" % (f["name"], drops, describe(exc)), True)
        print("ota: download of", f["name"], "dropped, resuming:", describe(exc))
        yield from self.report("downloading", "%s resumed after drop %d" % (f["name"], drops))
        yield from self._pause(min(250 * (1 << drops), 8000))
        return drops

    def _pause(self, ms):
        """Let `ms` go by without holding up the app."""
        until = hw.deadline(ms)
        while not hw.due(until):
            yield

    def _stage_file(self, f):
        name = f["name"]
        dst = NEW + "/" + name
        tmp = dst + ".tmp"
        if fs.exists(dst):
            if (yield from self._matches(dst, f)):
                return
            fs.remove(dst)
        slash = name.rfind("/")
        if slash > 0:
            fs.makedirs(NEW + "/" + name[:slash])
        src = APP + "/" + name
        if (yield from self._matches(src, f)) and (yield from self._copy(src, tmp, f)):
            hw.step("copied " + name)
        else:
            yield from self.report("downloading", "%s 0/%d" % (name, f["size"]))
            yield from self._download(f, tmp)
        os.rename(tmp, dst)
        hw.step("renamed " + name)

    def _prune(self, names):
        """Remove whatever app.new holds that the offer does not list."""
        for rel in list(fs.walk_files(NEW)):
            if rel not in names:
                fs.remove(NEW + "/" + rel)
        self._remove_empty_dirs(NEW)

    def _remove_empty_dirs(self, root):
        for entry in list(os.ilistdir(root)):
            if entry[1] & 0x4000:
                sub = root + "/" + entry[0]
                self._remove_empty_dirs(sub)
                if not list(os.ilistdir(sub)):
                    os.rmdir(sub)

    def stage(self, offer):
        """Stage `offer` in app.new; on success the state says `staged` and the switch waits for the
        app's consent. Every other ending is reported and recorded as `failed`.

        Files already staged for the same version (before a power cut or a dropped connection,
        possibly under an earlier seq) are kept: each is verified by its sha256 before reuse."""
        current = self.st.get("offer")
        if not current or current.get("version") != offer["version"]:
            fs.rmtree(NEW)
            hw.step("cleared app.new")
        self.st["offer"] = {"seq": offer["seq"], "version": offer["version"], "rollout_id": offer.get("rollout_id")}
        self.st["phase"] = "downloading"
        self.save()
        hw.step("phase downloading")
        yield from self.report("downloading", "%d files" % len(offer["files"]))
        try:
            fs.makedirs(NEW)
            names = set()
            for f in offer["files"]:
                yield from self._stage_file(f)
                names.add(f["name"])
            self._prune(names)
        except Failed as exc:
            reason, transient = str(exc), exc.transient
        except FlashError as exc:
            reason, transient = flash_reason(exc.args[0]), False
        except OSError as exc:
            reason, transient = flash_reason(exc), False
        except Exception as exc:  # whatever else: still an update that ended, and the hub hears of it
            reason, transient = "error while staging: " + describe(exc), False
        else:
            hw.step("staged")
            self.st["phase"] = "staged"
            self.pend("staged")
            self.save()
            hw.step("phase staged")
            self.switch_by = hw.deadline(self._ms("switch_deadline_s"))
            self.next_flush = hw.deadline(0)
            return True
        yield from self.fail(reason, transient)
        return False

    def fail(self, reason, transient):
        """End or pause an update without touching the running app."""
        print("ota: update failed:", reason)
        offer = self.st.get("offer")
        if not transient:
            try:
                fs.rmtree(NEW)
            except OSError as exc:
                print("ota: cannot clear app.new:", exc)
            if offer:
                self.st["seq"] = max(self.st["seq"], offer["seq"])
            self.st["offer"] = None
        self.st["phase"] = "failed"
        self.pend("failed", reason, transient, offer)
        try:
            self.save()
        except OSError as exc:  # the report still goes out from memory
            print("ota: state not saved:", exc)
        yield from self.flush()

    def refuse(self, reason):
        """Report an offer that failed its checks; nothing is kept."""
        print("ota: offer refused:", reason)
        yield from self.report("failed", "offer refused: " + reason)

    def drop_stale_staging(self):
        """The hub no longer offers the update we had begun: forget its files."""
        if self.st.get("offer") and self.st["phase"] in ("downloading", "failed"):
            fs.rmtree(NEW)
            self.st["offer"] = None
            self.st["phase"] = "failed" if self.st["phase"] == "failed" else "committed"
            self.save()

    def switch(self, app):
        """Stop the app and reset into boot.py, which switches to the staged app."""
        if app:
            app.stop()
        self.drive(self.report("switching", "resetting into boot.py"))  # queued reports wait in state.json
        hw.reset()

    # --- trial ------------------------------------------------------------------------------------

    def commit(self):
        """The hub accepted a heartbeat from the new app: make it the app for good."""
        offer = self.st["offer"]
        self.pend("committed", "", False, offer)
        self.st["version"] = offer["version"]
        self.st["seq"] = offer["seq"]
        self.st["phase"] = "committed"
        self.st["offer"] = None
        self.st["boots"] = 0
        self.save()
        hw.step("phase committed")
        crash.clear()  # the new release is not the one that crashed
        fs.rmtree(OLD)
        hw.step("removed app.old")

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

    def start(self):
        if self.st["phase"] == "trial":
            hw.wdt_arm(self.cfg["wdt_ms"])

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
            return self._heartbeat(app)
        if self.st.get("pending") and hw.due(self.next_flush):
            self.next_flush = hw.deadline(self._ms("heartbeat_s"))
            return self.flush()
        if logring.due():
            return self._send_log()
        if self.st["phase"] != "trial" and self.switch_by is None and (self.check_now or hw.due(self.next_check)):
            self.check_now = False
            self.next_check = self._jittered("check_s")
            return self.update()
        return None

    def _heartbeat(self, app):
        try:
            readings = app.readings() if app else {}
            if (yield from self.heartbeat(readings)) and self.st["phase"] == "trial":
                self.commit()
                self.next_flush = hw.deadline(0)
        except Exception as exc:
            print("ota: heartbeat failed:", describe(exc))

    def _send_log(self):
        try:
            yield from logring.send(self)
        except Exception as exc:
            print("ota: log not sent:", describe(exc))

    def update(self):
        """Check for an offer and stage it."""
        try:
            offer = yield from self.check()
        except Refused as exc:
            yield from self.refuse(str(exc))
            return
        except Exception as exc:
            print("ota: check failed:", describe(exc))
            return
        if offer is None:
            self.drop_stale_staging()
            return
        yield from self.report("checking", "offer verified", False, offer)
        yield from self.stage(offer)

    def run(self, app=None):
        """Run the app's steps every `tick_ms` and the agent's duties in between, forever."""
        self.start()
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
            hw.sleep_until(next_tick)


class FlashError(Exception):
    """A flash operation failed while a download was streaming (args[0]: the OSError), told apart
    from the network's errors, which are resumed."""


ECONNRESET = 104


def on_flash(fn, *args):
    try:
        return fn(*args)
    except OSError as exc:
        raise FlashError(exc)


def flash_reason(exc):
    return "flash full" if exc.errno == ENOSPC else "flash error %s" % exc


def describe(exc):
    """An exception as one short line for a report: its type when its message says nothing."""
    if isinstance(exc, OSError) and exc.errno == http.ETIMEDOUT:
        return "timed out"
    text = str(exc)
    return text if text and not isinstance(exc, MemoryError) else exc.__class__.__name__ + (": " + text if text else "")


def run(app=None):
    Agent().run(app)
