"""What the board trusts: the release key set and the downgrade floor in `ota/trust.json`.

This module stays loaded and small: it reports the trusted set's version and runs a check in steps,
each with only its own code loaded (ota.call): the checks of ota/trust_check.py, then each signature
with ota/signature.py and the Ed25519 and SHA-512 code, then the checks of what was signed. So a
check's peak heap holds one of the two, and between checks neither takes the app's RAM. See
docs/trust.md.
"""

import json

import ota

TRUST = "ota/trust.json"

_version = None


class Untrusted(Exception):
    """A release or a key set the board will not take; the message says why."""


def forget():
    """trust.json changed: read it again when next asked."""
    global _version
    _version = None


def keys_version():
    """The version of the trusted key set (0: none), which checks and heartbeats report."""
    global _version
    if _version is None:
        _version = 0
        try:
            with open(TRUST) as f:
                v = json.loads(json.load(f)["keys"]["signed"]).get("version")
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                _version = v
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    return _version


def check(keys, offer, own_type):
    """Take a key set the hub sent and verify an offer's release (either may be None); raise
    Untrusted naming the first thing wrong."""
    if keys is not None:
        todo = ota.call("trust_check", "key_set_signatures", keys)
        if todo is not None:
            version, data, sigs = todo
            reason = "key set v%d is not signed by a root key this board trusts" % version
            for sig, key in sigs:
                why = _signature(data, sig, key)
                if why is None:
                    break
                reason = "key set v%d: %s" % (version, why)
            else:
                raise Untrusted(reason)
            ota.call("trust_check", "take_key_set", keys, version)
    if offer is not None:
        data, sig, key = ota.call("trust_check", "release_signature", offer)
        why = _signature(data, sig, key)
        if why is not None:
            raise Untrusted(why)
        ota.call("trust_check", "signed_release", offer, own_type)


def _signature(data, sig, key):
    """ota.signature.problem(), with the Ed25519 and SHA-512 code loaded for it only."""
    try:
        return ota.call("signature", "problem", data, sig, key)
    finally:
        ota.unload("ed25519", "sha512")
