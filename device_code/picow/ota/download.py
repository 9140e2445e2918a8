"""The downloads of an update's staging (ota/update.py): each file streamed into app.new/<name>.tmp
while hashing, resumed with Range after a drop, renamed into place once its sha256 matches. The only
staging code loaded while bytes flow. Every function takes the Agent first.
"""

import gc
import hashlib
import os
from binascii import hexlify

from ota import fs, http, hw, unload
from ota.agent import NEW, describe
from ota.update import Failed, FlashError

ECONNRESET = 104


def run(a, todo):
    """Download each (file, hasher, bytes) of `todo` from that point (ota/reuse.py's answer)."""
    try:
        while todo:
            f, h, have = todo.pop(0)
            name = f["name"]
            tmp = NEW + "/" + name + ".tmp"
            yield from a.report("downloading", "%s %d/%d" % (name, have, f["size"]))
            # opened before what lives through the download (its job) is made, and handed over in a
            # list the job empties: this frame keeps nothing that would hold the file once closed
            yield from _download(a, f, tmp, h, have, [_opened(tmp, have)])
            os.rename(tmp, NEW + "/" + name)
            hw.step("renamed " + name)
    finally:
        unload("hmac_sha256")  # the last file's (_load_mac)


def _opened(tmp, have):
    """The staged file `tmp`, open to write from byte `have`, right after a collection. Its open takes
    LittleFS's 1 KiB file cache with its object in one piece (1200 bytes); a small heap is nearly full
    while an update stages, its large free pieces few, and the allocator takes the lowest free piece
    that fits: opened before the request's socket, response and head, and before what lives through
    the file's download (its job, its hasher, its URL), which would otherwise take and cut up those
    pieces first, the file finds one."""
    gc.collect()
    return _on_flash(open, tmp, "ab" if have else "wb")


def _download(a, f, tmp, h=None, have=0, first=()):
    """Stream an artifact into `tmp` from byte `have` (hashed so far into `h`), resuming with Range
    after a drop; `first` may hold `tmp` already open for the first attempt (_opened()), taken out of
    it. Should a file resumed from an earlier attempt then not match, it is fetched once more from
    its first byte before the update is given up."""
    out = first.pop() if first else None
    reused = have > 0
    if not reused:
        h = hashlib.sha256()
    url = a.hub + f["url"] if f["url"].startswith("/") else f["url"]
    drops = 0
    if f["size"] == 0:
        _on_flash((out or _opened(tmp, 0)).close)
    while have < f["size"]:
        if out is None:  # after a drop
            out = _opened(tmp, have)
        _load_mac()
        resp = None
        try:
            resp, h, at = yield from _open(a, f, url, h, have)
            if at != have:  # the whole file again, from its first byte
                _on_flash(out.close)
                out = _on_flash(open, tmp, "wb")
            have = yield from _receive(a, f, resp, out, h, at)
        except (OSError, http.HTTPError) as exc:  # the network's; the flash's come as FlashError
            _shut(out, resp)
            out = resp = None  # the closed file's cache is free again while the drop is reported
            have = fs.size(tmp)  # every byte written was hashed: resume after the last one
            drops = yield from _dropped(a, f, drops, exc)
            continue
        except BaseException:
            _shut(out, resp)
            raise
        resp.close()
        _on_flash(out.close)  # LittleFS commits the file here: a full flash may show only now
        out = None
    if hexlify(h.digest()).decode() != f["sha256"]:
        fs.remove(tmp)
        if reused:
            return (yield from _download(a, f, tmp))
        raise Failed("%s: sha256 does not match the offer" % f["name"], False)


def _load_mac():
    """The MAC of the reports, imported now, while the heap still has room, for a drop's report: an
    import reads its module through a LittleFS file (1.2 KiB in one piece), which after a drop, the
    request that dropped having cut the heap up, it may not find. The report drops it once it signed
    (agent._post), before the file is opened again; the download drops it at its end."""
    try:
        __import__("ota.hmac_sha256")
    except MemoryError:  # the report imports it itself, and says so when it cannot
        pass


def _shut(out, resp):
    """Close the staged file and the response after a failure, which is the one reported."""
    try:
        out.close()
    except OSError:
        pass
    if resp is not None:
        resp.close()


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


def _receive(a, f, resp, out, h, have):
    """Stream the body into the open file `out` from byte `have`; returns the new size. The transfer
    must keep up `min_rate_bps` from its start (after `request_s` of grace) and never stall for
    `request_s`."""
    size = f["size"]
    grace = a._ms("request_s")
    rate = a.cfg["min_rate_bps"]
    start = hw.ticks_ms()
    got = 0
    chunks = 0
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
        _on_flash(fs.write, out, chunk)
        h.update(chunk)
        have += n
        got += n
        if hw.TRACING:
            chunks += 1
            hw.step("download " + f["name"] + " " + str(chunks))
        yield
    if have < size:
        raise OSError(ECONNRESET)  # the body ended early
    return have


def _dropped(a, f, drops, exc):
    drops += 1
    if drops > a.cfg["download_retries"]:
        raise Failed("%s: download dropped %d times (%s)" % (f["name"], drops, describe(exc)), True)
    print("ota: download of", f["name"], "dropped, resuming:", describe(exc))
    yield from a.report("downloading", "%s resumed after drop %d" % (f["name"], drops))
    until = hw.deadline(min(250 * (1 << drops), 8000))  # a pause that does not hold up the app
    while not hw.due(until):
        yield
    return drops


def _on_flash(fn, *args):
    try:
        return fn(*args)
    except OSError as exc:
        raise FlashError(exc)
