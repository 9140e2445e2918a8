"""Release key sets on the host: signing, rotation and revocation rules, what releases carry, and
`picoctl keys`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from picoctl import keyset, release, signing
from picoctl.cli import main
from picoctl.commands.init import init_site
from picoctl.errors import BadInput, PicoctlError
from picoctl.provision import DEVICE_CODE


def pair() -> tuple[str, str]:
    return signing.generate_keypair()


def test_successor_must_be_signed_by_a_current_root_and_be_newer() -> None:
    root, root_pub = pair()
    _, rel_pub = pair()
    v1 = keyset.check_first(keyset.make(1, [root_pub], [rel_pub], [root]))
    new_root, new_root_pub = pair()
    v2 = keyset.check_successor(v1, keyset.make(2, [new_root_pub], [rel_pub], [root]))
    assert v2.root == (new_root_pub,)
    with pytest.raises(BadInput, match="not signed by a root key of the current set"):
        keyset.check_successor(v2, keyset.make(3, [root_pub], [rel_pub], [root]))  # the old root, revoked
    with pytest.raises(BadInput, match="version 2 is not above the current set's 2"):
        keyset.check_successor(v2, keyset.make(2, [new_root_pub], [rel_pub], [new_root]))
    with pytest.raises(BadInput, match="not signed by any of its own root keys"):
        keyset.check_first(keyset.make(1, [root_pub], [rel_pub], [new_root]))


@pytest.mark.parametrize("envelope, message", [
    ({"signed": "{}", "signatures": []}, "not a key set"),
    ({"signed": "not json", "signatures": []}, "not JSON"),
    ({"signed": '{"_type": "keys", "version": 1, "root": [], "release": []}', "signatures": []}, "canonical form"),
    ([], "expected"),
])
def test_malformed_key_sets_are_named(envelope, message) -> None:
    with pytest.raises(BadInput, match=message):
        keyset.parse(envelope)


def test_a_tampered_signed_text_loses_its_signature() -> None:
    root, root_pub = pair()
    _, rel_pub = pair()
    env = keyset.make(1, [root_pub], [rel_pub], [root])
    body = json.loads(env["signed"])
    body["release"] = [pair()[1]]
    with pytest.raises(BadInput, match="not signed"):
        keyset.check_first({**env, "signed": signing.signed_bytes(body).decode()})


def test_releases_carry_type_signer_and_floor_and_verify_only_under_their_set(tmp_path: Path) -> None:
    key, pub = pair()
    meta = release.build("picow", "2.0.0", DEVICE_CODE / "app", tmp_path / "r", key_hex=key, min_version="1.5.0")
    assert (meta["_type"], meta["signed_by"], meta["min_version"]) == ("release", pub, "1.5.0")
    assert release.verify(tmp_path / "r", [pair()[1], pub])["version"] == "2.0.0"
    with pytest.raises(PicoctlError, match="a key not in the set"):
        release.verify(tmp_path / "r", [pair()[1]])  # revoked: the set no longer lists its key
    env = release.board_envelope(meta)
    assert signing.verify_bytes(env["signed"].encode(), env["signature"], pub) and env["key"] == pub
    assert json.loads(env["signed"])["files"] == meta["files"]
    with pytest.raises(BadInput, match="above the release's own version"):
        release.build("picow", "2.0.0", DEVICE_CODE / "app", tmp_path / "r2", key_hex=key, min_version="2.1.0")


def test_keys_sign_set_rotates_and_revokes_and_refuses_a_foreign_root(tmp_path: Path, capsys) -> None:
    cfg = init_site(tmp_path / "site")
    assert main(["keys", "generate", "--out", str(tmp_path / "new")]) == 0
    sign = ["--config", str(cfg), "keys", "sign-set", "--root-key", str(tmp_path / "site/keys/root.key")]
    assert main([*sign, "--release", str(tmp_path / "new/release.pub")]) == 0
    assert "key set v2" in capsys.readouterr().out
    ks = keyset.load(tmp_path / "site/keys/keys.json")
    assert ks.version == 2 and ks.release == ((tmp_path / "new/release.pub").read_text().strip(),)
    assert main(["keys", "generate", "--out", str(tmp_path / "other"), "--name", "root"]) == 0
    assert main(["--config", str(cfg), "keys", "sign-set", "--root-key", str(tmp_path / "other/root.key"),
                 "--release", str(tmp_path / "new/release.pub")]) == 2
    assert "not signed by a root key of the current set" in capsys.readouterr().err
    assert keyset.load(tmp_path / "site/keys/keys.json").version == 2  # nothing written


def test_the_device_screen_says_which_key_set_a_board_trusts() -> None:
    from picoctl.tui.model import Device

    d = Device.from_json({"id": "gh-01", "type": "picow", "keys": 2})
    assert d.keys == 2
    d.update({"keys": 3})
    assert d.keys == 3 and Device.from_json({"id": "gh-02", "type": "picow"}).keys is None


def test_provisioning_puts_the_site_key_set_on_the_board_and_checks_the_release(tmp_path: Path) -> None:
    from picoctl import config, provision

    cfg = config.load(init_site(tmp_path / "site"))
    keys = provision.site_keys(cfg)
    got: dict[str, bytes] = {}
    provision.provision("gh-01", "http://hub", lambda i, t: "ab" * 32, got.update, mpy=False, keys=keys)
    assert json.loads(got["ota/trust.json"]) == {"keys": keys, "floor": "0.0.0"}
    with pytest.raises(BadInput, match="key set it is to trust"):
        provision.provision("gh-02", "http://hub", lambda i, t: "ab" * 32, got.update, mpy=False)
    site_key = (cfg.path.parent / cfg.release.signing_key_file).read_text().strip()
    release.build("picow", "2.1.0", DEVICE_CODE / "app", tmp_path / "floored", key_hex=site_key, min_version="2.0.0")
    provision.provision("gh-04", "http://hub", lambda i, t: "ab" * 32, got.update, release_dir=tmp_path / "floored",
                        mpy=False, keys=keys)
    assert json.loads(got["ota/trust.json"]) == {"keys": keys, "floor": "2.0.0"}  # as if it took 2.1.0 over the air
    other, _ = pair()
    release.build("picow", "1.0.0", DEVICE_CODE / "app", tmp_path / "foreign", key_hex=other)
    with pytest.raises(PicoctlError, match="a key not in the set"):
        provision.provision("gh-03", "http://hub", lambda i, t: "ab" * 32, got.update, release_dir=tmp_path / "foreign",
                            mpy=False, keys=keys)
