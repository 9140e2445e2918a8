"""Canonical JSON, Ed25519 release signatures and device HMACs."""

import hashlib
import hmac

import pytest

from picoctl import signing
from picoctl.errors import BadInput


def test_canonical_json_is_order_independent() -> None:
    assert signing.canonical_json({"b": 1, "a": [1, "é"]}) == signing.canonical_json({"a": [1, "é"], "b": 1})
    assert signing.canonical_json({"b": 1, "a": 2}) == b'{"a":2,"b":1}'


def test_sign_verify_round_trip_and_tamper() -> None:
    private, public = signing.generate_keypair()
    doc = {"version": "1.0.0", "sha256": "ab" * 32, "files": [{"name": "main.py"}]}
    doc["signature"] = signing.sign_document(doc, private)
    assert signing.verify_document(doc, public)
    for change in ({"version": "1.0.1"}, {"files": [{"name": "evil.py"}]}, {"extra": 1}):
        assert not signing.verify_document({**doc, **change}, public)
    flipped = doc["signature"][:-1] + ("0" if doc["signature"][-1] != "0" else "1")
    assert not signing.verify_document({**doc, "signature": flipped}, public)
    assert not signing.verify_document({**doc, "signature": "zz"}, public)
    assert not signing.verify_document({k: v for k, v in doc.items() if k != "signature"}, public)
    _, other_public = signing.generate_keypair()
    assert not signing.verify_document(doc, other_public)


def test_bad_keys_are_clear() -> None:
    with pytest.raises(BadInput, match="Ed25519 private key"):
        signing.sign_document({}, "1234")
    with pytest.raises(BadInput, match="Ed25519 public key"):
        signing.verify_document({"signature": "00"}, "xyz")


def test_write_keypair_refuses_overwrite(tmp_path) -> None:
    priv, pub = signing.write_keypair(tmp_path)
    assert signing.public_from_private(signing.load_private_key(priv)) == pub.read_text().strip()
    with pytest.raises(BadInput, match="already exists"):
        signing.write_keypair(tmp_path)


def test_device_mac_matches_rfc_hmac() -> None:
    key = signing.new_device_key()
    body = b'{"id":"gh-01","counter":1}'
    mac = signing.device_mac(key, body)
    assert mac == hmac.new(bytes.fromhex(key), body, hashlib.sha256).hexdigest()
    # RFC 4231 test case 2
    assert signing.device_mac(b"Jefe".hex(), b"what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
