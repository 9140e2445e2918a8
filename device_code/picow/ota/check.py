"""The check duty, for the agent (ota/agent.py): ask the hub for an offer and verify it (its shape with
ota/offer.py, its signed release with ota/trust.py), reporting every way it ends that the hub can hear
of. Loaded for the duty and dropped before a verified offer is staged (ota/update.py). Every function
takes the Agent first.
"""

import os
from binascii import hexlify

import ota
from ota import fs, hw
from ota.agent import NEW, Refused, describe


def run(a):
    """The duty: the verified offer to stage, or None (no offer, or one refused or failed: reported)."""
    offer = None
    try:
        resp = yield from ask(a)
        offer = resp.get("offer")
        verify(a, resp, offer)
    except Refused as exc:
        print("ota: offer refused:", exc)
        yield from a.report("failed", "offer refused: " + str(exc))
        return None
    except (OSError, ota.HTTPError) as exc:  # the network's: the next check asks again
        print("ota: check failed:", describe(exc))
        return None
    except Exception as exc:  # e.g. out of memory: still an offer that was not taken, and the hub hears of it
        reason = "check failed: " + describe(exc)
        print("ota:", reason)
        yield from a.report("failed", reason, False, offer if isinstance(offer, dict) else None)
        return None
    if offer is None:
        drop_stale_staging(a)
        return None
    yield from a.report("checking", "offer verified", False, offer)
    return offer


def ask(a):
    """The hub's MAC-verified answer to a check, once it answers our nonce."""
    hw.step("check")
    nonce = hexlify(os.urandom(16)).decode()
    body = {"id": a.id, "counter": a.counter(), "type": a.cfg["type"], "version": a.running_version(),
            "seq": a.st["seq"], "nonce": nonce, "keys": a.keys_version()}
    resp = yield from a._post("/check", body, True, True)  # parsed with neither the HTTP client nor the MAC loaded
    if resp.get("id") != a.id:
        raise Refused("response for device %r" % (resp.get("id"),))
    if resp.get("nonce") != nonce:  # the answer's MAC is verified: comparing our own nonce tells nothing
        raise Refused("response nonce differs from ours: replayed response")
    return resp


def verify(a, resp, offer):
    """Raise Refused unless the answer's key set and offer (either may be None) are good to take."""
    if offer is not None:
        hw.step("offer received")
        try:
            ota.call("offer", "check_offer", offer, a.cfg["type"], a.st["seq"])
        finally:
            ota.unload("protocol")  # which ota/offer.py loaded
    from ota import trust

    try:
        trust.check(resp.get("keys"), offer, a.cfg["type"])  # the board is the last verifier of content
    except trust.Untrusted as exc:
        raise Refused(str(exc))
    finally:
        trust = None
        ota.unload("trust")
        a.keys = None  # the trusted key set may have changed: read its version again when asked
    if offer is not None:  # verified: what staging does not read gives its RAM back
        offer.pop("release", None)


def drop_stale_staging(a):
    """The hub no longer offers the update we had begun: forget its files."""
    if a.st.get("offer") and a.st["phase"] in ("downloading", "failed"):
        fs.rmtree(NEW)
        a.st["offer"] = None
        a.st["phase"] = "failed" if a.st["phase"] == "failed" else "committed"
        a.save()
