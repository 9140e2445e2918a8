"""What the board trusts: the release key set and the downgrade floor in `ota/trust.json`, and the
version of that set, which checks and heartbeats report (loaded for that and dropped after, ota.call).
A check verifies an offer against it with ota/trust_check.py and ota/signature.py (ota/check.py); see
docs/trust.md.
"""

import json

TRUST = "ota/trust.json"


def keys_version():
    """The version of the trusted key set (0: none)."""
    try:
        with open(TRUST) as f:
            v = json.loads(json.load(f)["keys"]["signed"]).get("version")
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return 0
