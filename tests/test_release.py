"""Release bundles: reproducible builds, verification, and every bad input named clearly."""

import json
import os
import tarfile
from pathlib import Path

import pytest

from picoctl import release, signing
from picoctl.cli import main
from picoctl.errors import BadInput, PicoctlError


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, str]:
    priv, pub = signing.write_keypair(tmp_path / "keys")
    return priv, pub.read_text().strip()


@pytest.fixture
def app(tmp_path: Path) -> Path:
    src = tmp_path / "app"
    (src / "lib").mkdir(parents=True)
    (src / "main.py").write_text("import lib.sensor\nprint('v1')\n")
    (src / "lib" / "sensor.py").write_text("def read():\n    return 42\n")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_bytes(b"junk")
    return src


def build(target: str, src: Path, out: Path, key: Path | None, **kw) -> dict:
    return release.build(target, "1.2.0", src, out, key_hex=signing.load_private_key(key) if key else None, **kw)


@pytest.mark.parametrize("target", ["pi", "picow", "pico"])
def test_builds_are_byte_identical(tmp_path: Path, app: Path, keys, target: str, monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a = build(target, app, tmp_path / "a", keys[0])
    os.utime(app / "main.py", (1, 1))  # mtimes must not leak into the artifact
    b = build(target, app, tmp_path / "b", keys[0])
    assert a == b
    for name in ("meta.json", a["artifact"]):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert release.verify(tmp_path / "a", keys[1])["version"] == "1.2.0"


def test_meta_has_required_fields_and_file_list(tmp_path: Path, app: Path, keys) -> None:
    meta = build("picow", app, tmp_path / "r", keys[0], artifact_base_url="https://example.org/rel/")
    for field in release.META_FIELDS:
        assert field in meta
    assert meta["artifact_url"] == "https://example.org/rel/picow-1.2.0.tar"
    assert [f["name"] for f in meta["files"]] == ["lib/sensor.py", "main.py"]
    assert release.read_tar_files(tmp_path / "r" / meta["artifact"])["main.py"].startswith(b"import lib")


def test_mpy_compiles_modules_but_not_main(tmp_path: Path, app: Path) -> None:
    meta = build("picow", app, tmp_path / "r", None, mpy=True)
    names = [f["name"] for f in meta["files"]]
    assert names == ["lib/sensor.mpy", "main.py"]
    data = release.read_tar_files(tmp_path / "r" / meta["artifact"])["lib/sensor.mpy"]
    assert data[:1] == b"M"  # mpy magic


def test_pi_tarball_is_prefixed(tmp_path: Path, app: Path) -> None:
    meta = build("pi", app, tmp_path / "r", None)
    with tarfile.open(tmp_path / "r" / meta["artifact"]) as tar:
        assert sorted(tar.getnames()) == ["pi-sensors-1.2.0/lib/sensor.py", "pi-sensors-1.2.0/main.py"]
    assert meta["root"] == "pi-sensors-1.2.0"


@pytest.mark.parametrize(
    "version", ["1.0", "v1.0.0", "01.0.0", "1.0.0.0", "", "1.0.0-", "latest"],
)
def test_bad_versions(tmp_path: Path, app: Path, version: str) -> None:
    with pytest.raises(BadInput, match="not a semantic version"):
        release.build("picow", version, app, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_version_ordering() -> None:
    ordered = ["0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0"]
    assert sorted(reversed(ordered), key=release.version_key) == ordered


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        release.build("picow", "1.0.0", tmp_path / "missing", tmp_path / "r")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="empty"):
        release.build("picow", "1.0.0", tmp_path / "empty", tmp_path / "r")
    (tmp_path / "noentry").mkdir()
    (tmp_path / "noentry" / "app.py").write_text("x = 1\n")
    with pytest.raises(BadInput, match="entry file main.py"):
        release.build("pico", "1.0.0", tmp_path / "noentry", tmp_path / "r")
    with pytest.raises(BadInput, match="entry file main.py"):
        release.build("pi", "1.0.0", tmp_path / "noentry", tmp_path / "r")
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "main.py").write_text("")
    (tmp_path / "link" / "evil.py").symlink_to("/etc/passwd")
    with pytest.raises(BadInput, match="links"):
        release.build("picow", "1.0.0", tmp_path / "link", tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".build-")] == []


@pytest.mark.parametrize("target", release.TARGETS)
@pytest.mark.parametrize("case,message", [("folder-link", "links"), ("backslash", "unsafe file name")])
def test_a_source_the_release_could_not_hold_is_refused_at_build(tmp_path: Path, target: str, case: str,
                                                                 message: str) -> None:
    """Not built into a release its own verify, a Pi deploy or a push would refuse, nor one missing a folder."""
    src = tmp_path / "src"
    (src / "shared").mkdir(parents=True)
    (src / "main.py").write_text("import lib\n")
    (src / "shared" / "lib.py").write_text("X = 1\n")
    if case == "folder-link":
        (src / "lib").symlink_to("shared")
    else:
        (src / "shared" / "back\\slash.py").write_text("")
    with pytest.raises(BadInput, match=message):
        release.build(target, "1.0.0", src, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_refuses_to_overwrite_output(tmp_path: Path, app: Path) -> None:
    build("picow", app, tmp_path / "r", None)
    before = (tmp_path / "r" / "meta.json").read_bytes()
    with pytest.raises(BadInput, match="not empty"):
        build("picow", app, tmp_path / "r", None)
    assert (tmp_path / "r" / "meta.json").read_bytes() == before


def test_verify_names_what_is_wrong(tmp_path: Path, app: Path, keys) -> None:
    meta = build("picow", app, tmp_path / "r", keys[0])
    art = tmp_path / "r" / meta["artifact"]
    good = art.read_bytes()

    art.write_bytes(good[:-10])
    with pytest.raises(PicoctlError, match="truncated"):
        release.verify(tmp_path / "r", keys[1])

    flipped = bytearray(good)
    flipped[600] ^= 1
    art.write_bytes(bytes(flipped))
    with pytest.raises(PicoctlError, match="sha256 does not match"):
        release.verify(tmp_path / "r", keys[1])

    art.write_bytes(good)
    _, other = signing.generate_keypair()
    with pytest.raises(PicoctlError, match="signature does not verify"):
        release.verify(tmp_path / "r", other)

    doc = json.loads((tmp_path / "r" / "meta.json").read_text())
    (tmp_path / "r" / "meta.json").write_text(json.dumps({**doc, "rollout": "stable"}))
    with pytest.raises(PicoctlError, match="signature does not verify"):
        release.verify(tmp_path / "r", keys[1])

    (tmp_path / "r" / "meta.json").write_text("{not json")
    with pytest.raises(BadInput, match="not a readable meta.json"):
        release.verify(tmp_path / "r", keys[1])


@pytest.mark.parametrize("args", [["-C", "{src}", "."], ["--format=pax", "-C", "{src}", "."], ["-C", "{src}", "main.py", "lib"]],
                         ids=["dot", "pax-dot", "named"])
def test_a_board_bundle_made_by_gnu_tar_verifies(tmp_path: Path, app: Path, keys, args: list[str]) -> None:
    import shutil
    import subprocess

    meta = build("picow", app, tmp_path / "r", keys[0])
    shutil.rmtree(app / "__pycache__")
    art = tmp_path / "r" / meta["artifact"]
    subprocess.run(["tar", "-cf", str(art), *[a.format(src=app) for a in args]], check=True)
    meta.update(size=art.stat().st_size, sha256=signing.sha256_file(art))
    meta["signature"] = signing.sign_document(meta, keys[0].read_text().strip())
    (tmp_path / "r" / "meta.json").write_text(json.dumps(meta))
    assert release.verify(tmp_path / "r", keys[1])["version"] == "1.2.0"
    assert release.read_tar_files(art) == {"main.py": (app / "main.py").read_bytes(),
                                          "lib/sensor.py": (app / "lib" / "sensor.py").read_bytes()}


def test_tar_with_traversal_or_link_is_refused(tmp_path: Path) -> None:
    import io

    for name, kind in (("../evil.py", tarfile.REGTYPE), ("/abs.py", tarfile.REGTYPE), ("ok.py", tarfile.SYMTYPE),
                       ("./../evil.py", tarfile.REGTYPE), ("lib/../../x", tarfile.DIRTYPE)):
        path = tmp_path / "bad.tar"
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info, io.BytesIO(b""))
        with pytest.raises(BadInput):
            release.read_tar_files(path)


def test_cli_exit_codes(tmp_path: Path, app: Path, keys, capsys) -> None:
    out = tmp_path / "r"
    args = ["release", "build", "--target", "picow", "--version", "2.0.0", "--source", str(app), "--out", str(out)]
    assert main([*args, "--key", str(keys[0]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "2.0.0"
    pub = tmp_path / "keys" / "release.pub"
    assert main(["release", "verify", str(out), "--pubkey", str(pub)]) == 0
    assert main([*args[:-2], "--out", str(tmp_path / "x"), "--version", "2.0"]) == 2
    assert "not a semantic version" in capsys.readouterr().err
    art = out / "picow-2.0.0.tar"
    art.write_bytes(art.read_bytes()[:-1])
    assert main(["release", "verify", str(out), "--pubkey", str(pub)]) == 1
    assert "truncated" in capsys.readouterr().err
