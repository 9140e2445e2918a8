"""The check duty, for the agent (ota/agent.py): ask the hub for an offer and verify it (its shape with
ota/offer.py, its key set and signed release with ota/trust_check.py and ota/signature.py, see
docs/trust.md), reporting every way it ends that the hub can hear of. Loaded for the duty and dropped
before a verified offer is staged (ota/update.py). The duty's functions take the Agent first.
"""

import json
import os
from binascii import hexlify

import ota
from ota import fs, hw
from ota.agent import NEW, Refused, describe


def run(a):
    """The duty: the verified offer to stage, or None (no offer, or one refused or failed: reported)."""
    about = None  # the offer's seq and version, for a report of how it failed
    try:
        raw, about = yield from ask(a)
        offer = verify(a, raw)
    except Refused as exc:
        print("ota: offer refused:", exc)
        yield from a.report("failed", "offer refused: " + str(exc))
        return None
    except (OSError, ota.HTTPError) as exc:  # the network's: the next check asks again
        print("ota: check failed:", describe(exc))
        return None
    except MemoryError as exc:  # the heap at this moment: the offer is retried (ota/oom.py)
        if about is None:  # no offer known yet, so none failed: the next check asks again
            print("ota: check failed:", describe(exc))
            return None
        reason, transient = ota.call("oom", "ending", a, about["version"], "verifying the offer", exc)
        print("ota:", reason)
        try:
            a.save()  # the count
        except OSError as err:
            print("ota: state not saved:", err)
        yield from a.report("failed", reason, transient, about)
        return None
    except Exception as exc:  # still an offer that was not taken, and the hub hears of it
        reason = "check failed: " + describe(exc)
        print("ota:", reason)
        yield from a.report("failed", reason, False, about)
        return None
    if offer is None:
        no_offer(a, raw)
        return None
    yield from a.report("checking", "offer verified", False, offer)
    return offer


def ask(a):
    """The hub's MAC-verified answer to a check, once it answers our nonce, as it came (ota/agent.py's
    _post keeps it in the transfer buffer); with its offer's seq and version (None: no offer)."""
    hw.step("check")
    nonce = hexlify(os.urandom(16)).decode()
    body = {"id": a.id, "counter": a.counter(), "type": a.cfg["type"], "version": a.running_version(),
            "seq": a.st["seq"], "nonce": nonce, "keys": a.keys_version()}
    raw = yield from a._post("/check", body, True, True)  # with neither the HTTP client nor the MAC loaded
    return raw, answers(a, raw, nonce)


def answers(a, raw, nonce):
    """The seq and version of the offer in the answer `raw` (None: no offer), once it answers us.
    Not in ask(): a finished generator's frame would keep the parse alive."""
    resp = parse(raw)
    if resp.get("id") != a.id:
        raise Refused("response for device %r" % (resp.get("id"),))
    if resp.get("nonce") != nonce:  # the answer's MAC is verified: comparing our own nonce tells nothing
        raise Refused("response nonce differs from ours: replayed response")
    offer = resp.get("offer")
    return {"seq": offer.get("seq"), "version": offer.get("version")} if isinstance(offer, dict) else None


def parse(raw):
    """The check's answer, parsed again each time a step needs it, so no signature is verified while
    the parse takes the heap (two to three times the answer's size)."""
    resp = json.loads(raw)
    if not isinstance(resp, dict):
        raise Refused("/check: response is not an object")
    return resp


def verify(a, raw):
    """The answer's offer once it and the answer's key set (either may be absent) are good to take, or
    None; raises Refused naming the first thing wrong. The board is the last verifier of content: the
    offer's shape (ota/offer.py), a newer key set's and the release's signatures (ota/signature.py)
    and what the release signed (ota/trust_check.py, ota/release_check.py), each step with its own
    code loaded only, and each signature with no parse of the answer alive: every step that reads the
    answer parses it in a function of its own (a returned function's frame keeps nothing). Nothing
    here yields, so `raw` (in the transfer buffer) stays as the MAC verified it."""
    try:
        offered = shaped(a, raw)
        todo = key_set(raw)
        if todo is not None:
            version, digest, sigs = todo
            todo = None
            why = problem(digest, sigs)
            if why is not None:
                raise Refused("key set v%d: %s" % (version, why) if sigs
                              else "key set v%d is not signed by a root key this board trusts" % version)
            take_key_set(raw, version)
        if not offered:
            return None
        digest, sig, key, floor = release(raw)
        why = problem(digest, ((sig, key),))
        if why is not None:
            raise Refused(why)
        return signed(a, raw, floor)
    finally:
        a.keys = None  # the trusted key set may have changed: read its version again when asked


def shaped(a, raw):
    """False when the answer carries no offer; raises Refused when its offer's shape is wrong."""
    offer = parse(raw).get("offer")
    if offer is None:
        return False
    hw.step("offer received")
    try:
        ota.call("offer", "check_offer", offer, a.cfg["type"], a.st["seq"])
    finally:
        ota.unload("protocol")  # which ota/offer.py loaded
    return True


def key_set(raw):
    """What the answer's key set must be signed with (ota/trust_check.py), or None: none, or ours."""
    keys = parse(raw).get("keys")
    return None if keys is None else ota.call("trust_check", "key_set_signatures", keys)


def take_key_set(raw, version):
    """Trust the answer's key set `version`, whose signature verified."""
    ota.call("trust_check", "take_key_set", parse(raw)["keys"], version)


def release(raw):
    """What the offer's release must be signed with, and the board's floor (ota/trust_check.py)."""
    return ota.call("trust_check", "release_signature", parse(raw)["offer"])


def signed(a, raw, floor):
    """The offer, once what its verified release signed is the offer (ota/release_check.py), with the
    floor raised to the release's `min_version` when that is higher."""
    offer = parse(raw)["offer"]
    floor = ota.call("release_check", "signed_release", offer, a.cfg["type"], floor)  # drops the signed release
    if floor is not None:
        ota.call("trust_check", "raise_floor", floor)
    return offer


def problem(digest, sigs):
    """None when one of `sigs` ((signature, key) in hex) is Ed25519 by its key over `digest` (a signed
    text's sha256; ota/signature.py, loaded for each); else what is wrong with the last ("" for none)."""
    why = ""
    for sig, key in sigs:
        why = ota.call("signature", "problem", digest, sig, key)
        if why is None:
            break
    return why


def no_offer(a, raw):
    """The answer `raw` offers nothing. While the hub holds back its next offer after our transient
    failure (its `retry_s`), what was staged is kept and the hub asked again when that is due;
    otherwise the update we had begun is no longer offered: its files are forgotten."""
    retry = parse(raw).get("retry_s")
    if isinstance(retry, int) and retry > 0:
        a.next_check = hw.deadline(min(retry, a.cfg["check_s"]) * 1000)
        return
    if a.st.get("offer") and a.st["phase"] in ("downloading", "failed"):
        fs.rmtree(NEW)
        a.st["offer"] = None
        a.st["phase"] = "failed" if a.st["phase"] == "failed" else "committed"
        a.save()
