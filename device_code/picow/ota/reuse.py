"""The first part of an update's staging (ota/update.py): what app.new or the running app already
holds. Loaded for this part and dropped before any download begins. Every function takes the Agent first.
"""

import hashlib
import os
from binascii import hexlify

from ota import fs, hw
from ota.agent import APP, NEW


def run(a, files):
    """Keep each file app.new already holds verified, copy (verified) the unchanged ones from the
    running app; returns the others as (file, hasher, bytes) to download from that point: what an
    earlier attempt left in the file's `.tmp`, already hashed, or a fresh start."""
    todo = []
    for f in files:
        name = f["name"]
        dst = NEW + "/" + name
        tmp = dst + ".tmp"
        if fs.exists(dst):
            if (yield from _matches(a, dst, f)):
                continue
            fs.remove(dst)
        slash = name.rfind("/")
        if slash > 0:
            fs.makedirs(NEW + "/" + name[:slash])
        src = APP + "/" + name
        if (yield from _matches(a, src, f)) and (yield from _copy(a, src, tmp, f)):
            hw.step("copied " + name)
            os.rename(tmp, dst)
            hw.step("renamed " + name)
            continue
        h, have = None, 0
        if fs.exists(tmp):
            h, have = yield from _hash_file(a, tmp)
            if have > f["size"]:
                fs.remove(tmp)
                h, have = None, 0
        todo.append((f, h, have))
    return todo


def _hash_file(a, path):
    """(sha256 of the file, bytes read)."""
    h = hashlib.sha256()
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
