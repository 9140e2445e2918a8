"""The checks of what a release whose signature verified signed, against the offer that carried it:
ota/check.py loads this module for that step only, once ota/trust_check.py and the signature's code
(ota/signature.py) are dropped. See docs/trust.md.
"""

import json

from ota.agent import Refused


def version_key(v):
    """Semantic version precedence as a tuple (build metadata ignored); Refused when malformed."""
    if not isinstance(v, str):
        raise Refused("version %r is not a string" % (v,))
    core = v.split("+", 1)[0]
    pre = ""
    dash = core.find("-")
    if dash >= 0:
        core, pre = core[:dash], core[dash + 1:]
    parts = core.split(".")
    if len(parts) != 3:
        raise Refused("version %r is not X.Y.Z" % v)
    try:
        key = [int(p) for p in parts]
    except ValueError:
        raise Refused("version %r is not X.Y.Z" % v)
    if not pre:
        key.append((1,))
    else:
        key.append((0,) + tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return tuple(key)


def signed_release(offer, own_type, floor):
    """Raise Refused unless the release whose signature verified is the offer's: a release for this
    board's type with the offer's version and exactly its file list (name, size, sha256: no more, no
    fewer), at or above the board's `floor`. The signed `min_version` when it is above `floor` (to
    become the floor before anything is staged), else None. The release leaves the offer first:
    staging does not read it."""
    text = offer.pop("release")["signed"]
    try:
        signed = json.loads(text)
    except ValueError:
        raise Refused("signed release is not JSON")
    text = None
    if not isinstance(signed, dict) or signed.get("_type") != "release":
        raise Refused("signed document is not a release")
    if signed.get("target") != own_type:
        raise Refused("signed release is for target %r, not %r" % (signed.get("target"), own_type))
    if signed.get("version") != offer["version"]:
        raise Refused("offer version %r is not the signed %r" % (offer["version"], signed.get("version")))
    _same_files(offer["files"], signed.get("files"))
    if version_key(signed["version"]) < version_key(floor):
        raise Refused("release %s is below this board's floor %s" % (signed["version"], floor))
    new_floor = signed.get("min_version")
    return new_floor if new_floor is not None and version_key(new_floor) > version_key(floor) else None


def _same_files(offered, signed):
    if not isinstance(signed, list):
        raise Refused("signed release lists no files")
    if len(signed) != len(offered):
        raise Refused("offer lists %d files, the signed release %d" % (len(offered), len(signed)))
    by_name = {}
    for f in signed:
        if isinstance(f, dict):
            by_name[f.get("name")] = f
    for f in offered:
        s = by_name.get(f["name"])
        if s is None:
            raise Refused("offered file %r is not in the signed release" % f["name"])
        if s.get("size") != f["size"] or s.get("sha256") != f["sha256"]:
            raise Refused("offered file %r differs from the signed one" % f["name"])
