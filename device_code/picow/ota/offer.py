"""The checks of a MAC-verified offer before anything else looks at it (its shape, its seq, its file
names), for the agent's check; loaded for it and dropped after (ota.unload)."""

import sys

from ota import protocol
from ota.agent import Refused


def safe_name(name):
    """The host's rule for a release file name (picoctl/release.py name_fault): relative, no backslash
    or control character, each part non-empty, not ending in a dot or a space, at most 255 bytes
    (LittleFS's limit), not ending in .tmp or .picoctl-tmp."""
    if not isinstance(name, str) or not name or name[0] == "/" or "\\" in name:
        return False
    for c in name:
        if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0:
            return False
    for part in name.split("/"):
        if (not part or part[-1] in ". " or len(part.encode()) > 255 or part.endswith(".tmp")
                or part.endswith(".picoctl-tmp")):
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
