"""Flash helpers: paths are relative to the flash root (the board's `/`, the rig's cwd)."""

import json
import os

_DIR = 0x4000


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def size(path):
    """Size in bytes, or -1 when the file does not exist."""
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def makedirs(path):
    built = ""
    for part in path.split("/"):
        built = part if not built else built + "/" + part
        if not exists(built):
            os.mkdir(built)


def rmtree(path):
    """Remove a file or a folder with everything in it; nothing there is fine."""
    try:
        mode = os.stat(path)[0]
    except OSError:
        return
    if mode & _DIR:
        for entry in os.ilistdir(path):
            rmtree(path + "/" + entry[0])
        os.rmdir(path)
    else:
        os.remove(path)


def remove(path):
    """Remove a file if it is there."""
    if exists(path):
        os.remove(path)


def walk_files(root, prefix=""):
    """Relative names of every file under `root`."""
    for entry in os.ilistdir(root if not prefix else root + "/" + prefix):
        rel = entry[0] if not prefix else prefix + "/" + entry[0]
        if entry[1] & _DIR:
            yield from walk_files(root, rel)
        else:
            yield rel


def write(f, data):
    """Write all of `data` (bytes or memoryview) to the open file `f`."""
    n = f.write(data)
    if n is not None and n != len(data):
        raise OSError(28)


def write_atomic(path, data):
    """Replace `path` by `data` so that a power cut leaves either the old or the new content."""
    tmp = path + ".tmp"
    remove(tmp)
    try:
        with open(tmp, "wb") as f:
            write(f, data)
    except OSError:
        remove(tmp)  # a full flash keeps no half-written copy taking the room
        raise
    os.rename(tmp, path)


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def write_json(path, obj):
    write_atomic(path, json.dumps(obj).encode())
