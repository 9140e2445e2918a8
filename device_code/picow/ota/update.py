"""An update's staging into app.new, for the agent (ota/agent.py): every file verified by its sha256,
reused, copied from the running app or downloaded (resumed after a drop), every ending reported.

Loaded once an offer is verified and dropped when the update job ends (ota.unload), so this code takes
the app's RAM only while an update downloads. Every function takes the Agent first.
"""

import hashlib
import os
from binascii import hexlify

from ota import fs, http, hw
from ota.agent import APP, NEW, describe

ENOSPC = 28
ECONNRESET = 104


class Failed(Exception):
    """An update that cannot go on; `transient` when retrying later may succeed."""

    def __init__(self, message, transient):
        super().__init__(message)
        self.transient = transient


def _hash_file(a, path, h=None):
    """Feed the file into `h` (a new sha256 when None); returns (hasher, bytes read)."""
    h = h or hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while True:
            k = f.readinto(a.buf)
            if not k:
                break
            h.update(a.mv[:k])
            n += k
            yield
    return h, n

def _matches(a, path, f):
    if fs.size(path) != f["size"]:
        return False
    h, _ = yield from _hash_file(a, path)
    return hexlify(h.digest()).decode() == f["sha256"]

def _copy(a, src, tmp, f):
    """Copy an unchanged file from the running app, verifying it on the way."""
    fs.remove(tmp)
    h = hashlib.sha256()
    with open(src, "rb") as i, open(tmp, "wb") as o:
        while True:
            k = i.readinto(a.buf)
            if not k:
                break
            h.update(a.mv[:k])
            fs.write(o, a.mv[:k])
            yield
    return hexlify(h.digest()).decode() == f["sha256"]

def _download(a, f, tmp, reuse=True):
    """Stream an artifact into `tmp`, hashing as it goes, resuming with Range after a drop.

    A `tmp` left by an earlier attempt is hashed and continued; should the result then not
    match, the file is fetched once more from its first byte before the update is given up."""
    h, have = yield from _resume_point(a, f, tmp, reuse)
    reused = have > 0
    url = a.hub + f["url"] if f["url"].startswith("/") else f["url"]
    drops = 0
    if f["size"] == 0:
        with open(tmp, "wb"):
            pass
    while have < f["size"]:
        try:
            resp, h, have = yield from _open(a, f, url, h, have)
        except (OSError, http.HTTPError) as exc:
            drops = yield from _dropped(a, f, drops, exc)
            continue
        try:
            have = yield from _receive(a, f, resp, tmp, h, have)
        except (OSError, http.HTTPError) as exc:  # the network's; the flash's come as FlashError
            have = fs.size(tmp)  # every byte written was hashed: resume after the last one
            drops = yield from _dropped(a, f, drops, exc)
        finally:
            resp.close()
    if hexlify(h.digest()).decode() != f["sha256"]:
        fs.remove(tmp)
        if reused:
            return (yield from _download(a, f, tmp, False))
        raise Failed("%s: sha256 does not match the offer" % f["name"], False)

def _resume_point(a, f, tmp, reuse):
    """(hasher, size) of what an earlier attempt left in `tmp`, or a fresh start."""
    if reuse and fs.exists(tmp):
        h, have = yield from _hash_file(a, tmp)
        if have <= f["size"]:
            return h, have
        fs.remove(tmp)
    return hashlib.sha256(), 0

def _open(a, f, url, h, have):
    """GET the rest of the file from byte `have`: (response, hasher, have), the last two reset
    when the server sends the whole file again."""
    until = hw.deadline(a._ms("request_s"))
    resp = yield from http.request("GET", url, None, {"Range": "bytes=%d-" % have} if have else None,
                                   a.tls, a.buf, until)
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

def _receive(a, f, resp, tmp, h, have):
    """Stream the body into `tmp` from byte `have`; returns the new size. The transfer must keep
    up `min_rate_bps` from its start (after `request_s` of grace) and never stall for `request_s`."""
    size = f["size"]
    grace = a._ms("request_s")
    rate = a.cfg["min_rate_bps"]
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

def _dropped(a, f, drops, exc):
    drops += 1
    if drops > a.cfg["download_retries"]:
        raise Failed("%s: download dropped %d times (%s)" % (f["name"], drops, describe(exc)), True)
    print("ota: download of", f["name"], "dropped, resuming:", describe(exc))
    yield from a.report("downloading", "%s resumed after drop %d" % (f["name"], drops))
    yield from _pause(a, min(250 * (1 << drops), 8000))
    return drops

def _pause(a, ms):
    """Let `ms` go by without holding up the app."""
    until = hw.deadline(ms)
    while not hw.due(until):
        yield

def _stage_file(a, f):
    name = f["name"]
    dst = NEW + "/" + name
    tmp = dst + ".tmp"
    if fs.exists(dst):
        if (yield from _matches(a, dst, f)):
            return
        fs.remove(dst)
    slash = name.rfind("/")
    if slash > 0:
        fs.makedirs(NEW + "/" + name[:slash])
    src = APP + "/" + name
    if (yield from _matches(a, src, f)) and (yield from _copy(a, src, tmp, f)):
        hw.step("copied " + name)
    else:
        yield from a.report("downloading", "%s 0/%d" % (name, f["size"]))
        yield from _download(a, f, tmp)
    os.rename(tmp, dst)
    hw.step("renamed " + name)

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

def run(a, offer):
    """The update duty (see stage())."""
    return (yield from stage(a, offer))


def stage(a, offer):
    """Stage `offer` in app.new; on success the state says `staged` and the switch waits for the
    app's consent. Every other ending is reported and recorded as `failed`.

    Files already staged for the same version (before a power cut or a dropped connection,
    possibly under an earlier seq) are kept: each is verified by its sha256 before reuse."""
    current = a.st.get("offer")
    if not current or current.get("version") != offer["version"]:
        fs.rmtree(NEW)
        hw.step("cleared app.new")
    a.st["offer"] = {"seq": offer["seq"], "version": offer["version"], "rollout_id": offer.get("rollout_id")}
    a.st["phase"] = "downloading"
    a.save()
    hw.step("phase downloading")
    yield from a.report("downloading", "%d files" % len(offer["files"]))
    try:
        fs.makedirs(NEW)
        names = set()
        for f in offer["files"]:
            yield from _stage_file(a, f)
            names.add(f["name"])
        _prune(a, names)
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
        a.st["phase"] = "staged"
        a.pend("staged")
        a.save()
        hw.step("phase staged")
        a.switch_by = hw.deadline(a._ms("switch_deadline_s"))
        a.next_flush = hw.deadline(0)
        return True
    yield from fail(a, reason, transient)
    return False

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


class FlashError(Exception):
    """A flash operation failed while a download was streaming (args[0]: the OSError), told apart
    from the network's errors, which are resumed."""


def on_flash(fn, *args):
    try:
        return fn(*args)
    except OSError as exc:
        raise FlashError(exc)


def flash_reason(exc):
    return "flash full" if exc.errno == ENOSPC else "flash error %s" % exc
