"""The checks that make the board the last verifier of every release, all but the signatures: ota/trust.py
loads this module for each step of a check, and drops it while ota/signature.py checks a signature.

`ota/trust.json` holds the release key set the board trusts, as signed (`{"signed": <text>,
"signatures": [...]}`, see picoctl/keyset.py), and `floor`, the highest `min_version` it accepted.
Provisioning writes it; a newer set signed by one of the current root keys replaces it (atomically),
and so does a higher floor. Every signature is Ed25519 over sha256 of the exact text the board then
parses: MicroPython cannot re-serialise JSON canonically, and need not. See docs/trust.md.
"""

import json

from ota import fs
from ota.trust import TRUST, Untrusted, forget

MAX_TEXT = 8192  # a signed document larger than this is refused before it is hashed
MAX_SIGS = 8


def _load():
    """(trust.json, its parsed key set), or (None, None) when the board trusts no set."""
    doc = fs.read_json(TRUST)
    if isinstance(doc, dict) and isinstance(doc.get("keys"), dict):
        try:
            return doc, _key_set(doc["keys"]["signed"])
        except (Untrusted, KeyError, TypeError):
            pass
    return None, None


def _is_key(k):
    if not isinstance(k, str) or len(k) != 64:
        return False
    for c in k:
        if c not in "0123456789abcdef":
            return False
    return True


def _key_set(text):
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise Untrusted("key set text missing or oversized")
    try:
        body = json.loads(text)
    except ValueError:
        raise Untrusted("key set text is not JSON")
    if not isinstance(body, dict) or body.get("_type") != "keys":
        raise Untrusted("not a key set")
    v = body.get("version")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise Untrusted("key set without a version")
    for name in ("root", "release"):
        keys = body.get(name)
        if not isinstance(keys, list) or not keys or len(keys) > MAX_SIGS:
            raise Untrusted("key set without %s keys" % name)
        for k in keys:
            if not _is_key(k):
                raise Untrusted("key set lists a malformed %s key" % name)
    return body


def _save(keys_envelope, floor):
    fs.write_json(TRUST, {"keys": keys_envelope, "floor": floor})
    forget()


def key_set_signatures(envelope):
    """What a key set the hub sent must be signed with: (its version, the signed bytes, [(signature,
    root key)] of our root keys), or None for the set we have; raises Untrusted for anything that is
    neither newer than ours nor ours."""
    doc, current = _load()
    if current is None:
        raise Untrusted("no trusted key set on this board (ota/trust.json): provision it again")
    if not (isinstance(envelope, dict) and isinstance(envelope.get("signatures"), list)):
        raise Untrusted("malformed key set")
    text = envelope.get("signed")
    new = _key_set(text)
    if new["version"] <= current["version"]:
        if text == doc["keys"]["signed"]:
            return None
        raise Untrusted("key set v%d is not above the trusted v%d: replayed or old" % (new["version"], current["version"]))
    sigs = [(s.get("sig"), s["key"]) for s in envelope["signatures"][:MAX_SIGS]
            if isinstance(s, dict) and s.get("key") in current["root"]]
    return new["version"], text.encode(), sigs


def take_key_set(envelope, version):
    """Trust key set `version`, whose signature key_set_signatures() asked for and which verified."""
    doc = fs.read_json(TRUST)
    _save({"signed": envelope["signed"], "signatures": envelope["signatures"][:MAX_SIGS]}, doc.get("floor", "0.0.0"))
    print("ota: now trusting key set v%d" % version)


def version_key(v):
    """Semantic version precedence as a tuple (build metadata ignored); Untrusted when malformed."""
    if not isinstance(v, str):
        raise Untrusted("version %r is not a string" % (v,))
    core = v.split("+", 1)[0]
    pre = ""
    dash = core.find("-")
    if dash >= 0:
        core, pre = core[:dash], core[dash + 1:]
    parts = core.split(".")
    if len(parts) != 3:
        raise Untrusted("version %r is not X.Y.Z" % v)
    try:
        key = [int(p) for p in parts]
    except ValueError:
        raise Untrusted("version %r is not X.Y.Z" % v)
    if not pre:
        key.append((1,))
    else:
        key.append((0,) + tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return tuple(key)


def release_signature(offer):
    """What the offer's release must be signed with: (the signed bytes, the signature, the release
    key); raises Untrusted when the board trusts no key set, the release is malformed or oversized, or
    its key is not a release key of the trusted set."""
    doc, keys = _load()
    if keys is None:
        raise Untrusted("no trusted key set on this board (ota/trust.json): provision it again")
    rel = offer.get("release")
    if rel is None:
        raise Untrusted("offer carries no signed release (built before boards verified releases? rebuild it)")
    if not isinstance(rel, dict) or not isinstance(rel.get("signed"), str):
        raise Untrusted("malformed signed release")
    text = rel["signed"]
    if len(text) > MAX_TEXT:
        raise Untrusted("signed release over %d bytes" % MAX_TEXT)
    key = rel.get("key")
    if key not in keys["release"]:
        raise Untrusted("release signed by a key this board does not trust (revoked or unknown)")
    return text.encode(), rel.get("signature"), key


def signed_release(offer, own_type):
    """Raise Untrusted unless the release whose signature verified is the offer's: a release for this
    board's type with the offer's version and exactly its file list (name, size, sha256: no more, no
    fewer), at or above the floor. A higher signed `min_version` becomes the floor before anything is
    staged."""
    text = offer["release"]["signed"]
    try:
        signed = json.loads(text)
    except ValueError:
        raise Untrusted("signed release is not JSON")
    if not isinstance(signed, dict) or signed.get("_type") != "release":
        raise Untrusted("signed document is not a release")
    if signed.get("target") != own_type:
        raise Untrusted("signed release is for target %r, not %r" % (signed.get("target"), own_type))
    if signed.get("version") != offer["version"]:
        raise Untrusted("offer version %r is not the signed %r" % (offer["version"], signed.get("version")))
    _same_files(offer["files"], signed.get("files"))
    doc = fs.read_json(TRUST)
    floor = doc.get("floor", "0.0.0")
    if version_key(signed["version"]) < version_key(floor):
        raise Untrusted("release %s is below this board's floor %s" % (signed["version"], floor))
    new_floor = signed.get("min_version")
    if new_floor is not None and version_key(new_floor) > version_key(floor):
        _save(doc["keys"], new_floor)
        print("ota: floor raised to", new_floor)


def _same_files(offered, signed):
    if not isinstance(signed, list):
        raise Untrusted("signed release lists no files")
    if len(signed) != len(offered):
        raise Untrusted("offer lists %d files, the signed release %d" % (len(offered), len(signed)))
    by_name = {}
    for f in signed:
        if isinstance(f, dict):
            by_name[f.get("name")] = f
    for f in offered:
        s = by_name.get(f["name"])
        if s is None:
            raise Untrusted("offered file %r is not in the signed release" % f["name"])
        if s.get("size") != f["size"] or s.get("sha256") != f["sha256"]:
            raise Untrusted("offered file %r differs from the signed one" % f["name"])
