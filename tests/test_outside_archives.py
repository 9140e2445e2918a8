"""Pi release archives made by independent tools: GNU tar, git archive, Python's tarfile.

Each one is signed as `picoctl release build` would sign it, then deployed for real. Those a person
would make of a release folder (plain, `./` prefixes, GNU or pax long names, unicode names, sparse
files, git archive's pax global header) are accepted and unpack byte for byte; those holding a link,
a device, a FIFO, an absolute path or `..` are refused naming the entry, and nothing is written
outside the release folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from picoctl import pideploy, signing
from picoctl.errors import BadInput
import test_pideploy
from test_pideploy import APP, Keys, Rig, details

keys, rig = test_pideploy.keys, test_pideploy.rig  # the fixtures: a key pair, a Pi root with its app and hub

VERSION = "9.0.0"
ROOT = f"pi-sensors-{VERSION}"
LONG = "/".join(["a-rather-long-folder-name-of-forty-chars"] * 4) + "/module_with_a_long_name.py"  # > 100 bytes


def tree(src: Path) -> Path:
    """The example app as a release folder `src/<ROOT>`, with a nested, a long and a unicode name."""
    top = src / ROOT
    shutil.copytree(APP, top)
    (top / "lib" / "deep").mkdir(parents=True)
    (top / "lib" / "deep" / "data.bin").write_bytes(bytes(range(256)) * 9)
    (top / LONG).parent.mkdir(parents=True)
    (top / LONG).write_text("VALUE = 1\n")
    (top / "données é.txt").write_text("unicode\n")
    (top / "empty").write_bytes(b"")
    return top


def seal(folder: Path, keys: Keys, artifact: Path) -> Path:
    """A release folder around `artifact` (a .tar.gz made by another tool), signed."""
    folder.mkdir()
    name = f"{ROOT}.tar.gz"
    shutil.copy(artifact, folder / name)
    meta = {"_type": "release", "target": "pi", "version": VERSION, "rollout": "canary", "format": "tar.gz",
            "root": ROOT, "artifact": name, "artifact_url": name, "size": (folder / name).stat().st_size,
            "sha256": signing.sha256_file(folder / name), "created_at": "2026-01-01T00:00:00Z"}
    meta["signature"] = signing.sign_document(meta, keys.private)
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def run(*args: str | Path, cwd: Path | None = None) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, cwd=cwd)


def _plain(src: Path, out: Path) -> None:
    run("tar", "-czf", out, "-C", src, ROOT)


def _dot_slash(src: Path, out: Path) -> None:
    run("tar", "-czf", out, "-C", src, f"./{ROOT}")


def _gnu_format(src: Path, out: Path) -> None:
    run("tar", "--format=gnu", "-czf", out, "-C", src, ROOT)


def _pax_format(src: Path, out: Path) -> None:
    run("tar", "--format=pax", "-czf", out, "-C", src, ROOT)


def _sparse(src: Path, out: Path) -> None:
    with open(src / ROOT / "sparse.bin", "wb") as f:
        f.seek(1 << 20)
        f.write(b"end")
    run("tar", "--sparse", "--format=pax", "-czf", out, "-C", src, ROOT)


def _git_archive(src: Path, out: Path) -> None:
    top = src / ROOT
    env = ["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"]
    run("git", *env, "init", "-q", cwd=top)
    run("git", *env, "add", "-A", cwd=top)
    run("git", *env, "commit", "-qm", "release", cwd=top)
    run("git", "archive", "--format=tar.gz", f"--prefix={ROOT}/", "-o", out, "HEAD", cwd=top)


def _python_gnu(src: Path, out: Path) -> None:
    with tarfile.open(out, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        tar.add(src / ROOT, arcname=ROOT)


ACCEPTED = {"gnu-tar": _plain, "gnu-tar-dot-slash": _dot_slash, "gnu-tar-gnu-long-names": _gnu_format,
            "gnu-tar-pax": _pax_format, "gnu-tar-sparse": _sparse, "git-archive": _git_archive,
            "python-tarfile-gnu": _python_gnu}


@pytest.mark.parametrize("case", ACCEPTED)
def test_an_archive_made_by_another_tool_deploys_byte_for_byte(rig: Rig, keys: Keys, case: str) -> None:
    src = rig.tmp / "src"
    top = tree(src)
    ACCEPTED[case](src, rig.tmp / "made.tar.gz")
    result = pideploy.deploy(rig.cfg, str(seal(rig.tmp / "rel", keys, rig.tmp / "made.tar.gz")))
    assert result.ok, result.reason
    assert rig.serving() == VERSION
    unpacked = rig.root / "releases" / VERSION
    want = {p.relative_to(top).as_posix(): p.read_bytes() for p in top.rglob("*") if p.is_file() and ".git" not in p.parts}
    got = {p.relative_to(unpacked).as_posix(): p.read_bytes() for p in unpacked.rglob("*")
           if p.is_file() and p.name != ".picoctl-release.json"}
    assert got.keys() == want.keys()
    assert all(got[k] == want[k] for k in want), [k for k in want if got[k] != want[k]]


def _symlink(src: Path, out: Path) -> None:
    os.symlink("/etc/passwd", src / ROOT / "evil")
    _plain(src, out)


def _hardlink(src: Path, out: Path) -> None:
    os.link(src / ROOT / "main.py", src / ROOT / "evil")
    _plain(src, out)


def _fifo(src: Path, out: Path) -> None:
    os.mkfifo(src / ROOT / "evil")
    _plain(src, out)


def _device(src: Path, out: Path) -> None:
    try:
        os.mknod(src / ROOT / "evil", 0o600 | 0o020000, os.makedev(1, 3))  # a character device, as /dev/null
    except PermissionError:
        pytest.skip("making a device node needs root")
    _plain(src, out)


def _absolute(src: Path, out: Path) -> None:
    run("tar", "-czPf", out, "-C", src, ROOT, src / "evil")


def _dotdot(src: Path, out: Path) -> None:
    run("tar", "-czPf", out, "-C", src, ROOT, f"{ROOT}/../evil")


def _outside(rig: Rig) -> dict[Path, bytes]:
    """Every file beside the Pi's folder (and the signed release), with its content."""
    skip = (rig.root, rig.tmp / "rel", rig.tmp / "data")  # data: the deploy's own event queue
    return {p: p.read_bytes() for p in rig.tmp.rglob("*")
            if p.is_file() and not p.is_symlink() and not any(p.is_relative_to(s) for s in skip)}


REFUSED = {"symlink": (_symlink, "is a link"), "hardlink": (_hardlink, "is a link"),
           "fifo": (_fifo, "device or special file"), "device": (_device, "device or special file"),
           "absolute": (_absolute, "unsafe file name"), "dotdot": (_dotdot, "unsafe file name")}


@pytest.mark.parametrize("case", REFUSED)
def test_an_archive_with_a_link_device_or_escape_is_refused_and_writes_nothing(rig: Rig, keys: Keys, case: str) -> None:
    make, message = REFUSED[case]
    src = rig.tmp / "src"
    tree(src)
    (src / "evil").write_text("outside the release\n")
    make(src, rig.tmp / "made.tar.gz")
    before = _outside(rig)
    with pytest.raises(BadInput, match=message) as refused:
        pideploy.deploy(rig.cfg, str(seal(rig.tmp / "rel", keys, rig.tmp / "made.tar.gz")))
    assert "evil" in str(refused.value)
    assert _outside(rig) == before  # nothing written beside the Pi's folder
    assert list((rig.root / "releases").iterdir()) == [] and list((rig.root / ".incoming").iterdir()) == []
    assert not (rig.root / "current").exists()
    [(result, _d)] = details(rig, "pi_deploy")
    assert result == "refused"
