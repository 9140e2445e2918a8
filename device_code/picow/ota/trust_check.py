"""The checks that make the board the last verifier of every release, all but the signatures: ota/check.py
loads this module for each step of a check, and drops it while ota/signature.py checks a signature.

`ota/trust.json` holds the release key set the board trusts, as signed (`{"signed": <text>,
"signatures": [...]}`, see picoctl/keyset.py), and `floor`, the highest `min_version` it accepted.
Provisioning writes it; a newer set signed by one of the current root keys replaces it (atomically),
and so does a higher floor. Every signature is Ed25519 over sha256 of the exact text the board then
parses: MicroPython cannot re-serialise JSON canonically, and need not. See docs/trust.md.
"""

import hashlib
import json

import ota
from ota import fs
from ota.agent import Refused
from ota.trust import TRUST

ota.unload("trust")  # its path is bound here; the rest of it is not needed while this module is

MAX_TEXT = 8192  # a signed document larger than this is refused before it is hashed
MAX_SIGS = 8


def _load():
    """(trust.json, its parsed key set), or (None, None) when the board trusts no set."""
    doc = fs.read_json(TRUST)
    if isinstance(doc, dict) and isinstance(doc.get("keys"), dict):
        try:
            return doc, _key_set(doc["keys"]["signed"])
        except (Refused, KeyError, TypeError):
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
        raise Refused("key set text missing or oversized")
    try:
        body = json.loads(text)
    except ValueError:
        raise Refused("key set text is not JSON")
    if not isinstance(body, dict) or body.get("_type") != "keys":
        raise Refused("not a key set")
    v = body.get("version")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise Refused("key set without a version")
    for name in ("root", "release"):
        keys = body.get(name)
        if not isinstance(keys, list) or not keys or len(keys) > MAX_SIGS:
            raise Refused("key set without %s keys" % name)
        for k in keys:
            if not _is_key(k):
                raise Refused("key set lists a malformed %s key" % name)
    return body


def _save(keys_envelope, floor):
    fs.write_json(TRUST, {"keys": keys_envelope, "floor": floor})


def key_set_signatures(envelope):
    """What a key set the hub sent must be signed with: (its version, the sha256 of its signed text,
    [(signature, root key)] of our root keys), or None for the set we have; raises Refused for anything that is
    neither newer than ours nor ours."""
    doc, current = _load()
    if current is None:
        raise Refused("no trusted key set on this board (ota/trust.json): provision it again")
    if not (isinstance(envelope, dict) and isinstance(envelope.get("signatures"), list)):
        raise Refused("malformed key set")
    text = envelope.get("signed")
    new = _key_set(text)
    if new["version"] <= current["version"]:
        if text == doc["keys"]["signed"]:
            return None
        raise Refused("key set v%d is not above the trusted v%d: replayed or old" % (new["version"], current["version"]))
    sigs = [(s.get("sig"), s["key"]) for s in envelope["signatures"][:MAX_SIGS]
            if isinstance(s, dict) and s.get("key") in current["root"]]
    return new["version"], hashlib.sha256(text).digest(), sigs


def take_key_set(envelope, version):
    """Trust key set `version`, whose signature key_set_signatures() asked for and which verified."""
    doc = fs.read_json(TRUST)
    _save({"signed": envelope["signed"], "signatures": envelope["signatures"][:MAX_SIGS]}, doc.get("floor", "0.0.0"))
    print("ota: now trusting key set v%d" % version)


def release_signature(offer):
    """What the offer's release must be signed with: (the sha256 of its signed text, the signature,
    the release key, the board's floor); raises Refused when the board trusts no key set, the release is malformed
    or oversized, or its key is not a release key of the trusted set."""
    doc, keys = _load()
    if keys is None:
        raise Refused("no trusted key set on this board (ota/trust.json): provision it again")
    rel = offer.get("release")
    if rel is None:
        raise Refused("offer carries no signed release (built before boards verified releases? rebuild it)")
    if not isinstance(rel, dict) or not isinstance(rel.get("signed"), str):
        raise Refused("malformed signed release")
    text = rel["signed"]
    if len(text) > MAX_TEXT:
        raise Refused("signed release over %d bytes" % MAX_TEXT)
    key = rel.get("key")
    if key not in keys["release"]:
        raise Refused("release signed by a key this board does not trust (revoked or unknown)")
    return hashlib.sha256(text).digest(), rel.get("signature"), key, doc.get("floor", "0.0.0")


def raise_floor(floor):
    """Refuse every release below `floor` from now on (a verified release's `min_version`)."""
    doc = fs.read_json(TRUST)
    _save(doc["keys"], floor)
    print("ota: floor raised to", floor)
