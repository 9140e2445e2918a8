"""What the board trusts: the release key set and the downgrade floor in `ota/trust.json`.

This module stays loaded and small: it reports the trusted set's version and runs the checks of
ota/trust_check.py (and the Ed25519 code they use), which are loaded for one check and dropped
after it, so their bytecode does not take the app's RAM between checks. See docs/trust.md.
"""

import gc
import json
import sys

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
    if keys is None and offer is None:
        return
    import ota
    from ota import trust_check

    try:
        trust_check.check(keys, offer, own_type)
    finally:
        drop(ota, "trust_check")
        del trust_check
        gc.collect()


def drop(package, *names):
    """Unload modules of `package` (from sys.modules and the package) so their RAM can be reclaimed."""
    for name in names:
        sys.modules.pop(package.__name__ + "." + name, None)
        if name in package.__dict__:
            delattr(package, name)
