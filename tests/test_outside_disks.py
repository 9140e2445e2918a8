"""Full disks, for real: a small tmpfs mounted where each part writes, filled to a sweep of free sizes.

The hub's data folder, a Pi's releases folder and a release build's output folder each run out of
space at many points of their writes. Each must say so in one clear error, lose nothing it had
acknowledged, leave nothing half-written, keep serving what it had, and work again once space is
freed, without a restart. (Needs `mount`, as root in CI; skipped where it is not allowed.)
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import test_pideploy
from picoctl import pideploy, release, signing
from picoctl.client import HubError
from picoctl.errors import PicoctlError
from picoctl.sim.fleet import DeviceProtocolError, SimDevice
from picoctl.sim import pi_app_control
from picoctl.sim.local_hub import LocalHub
from test_pideploy import Rig

keys, rig, built = test_pideploy.keys, test_pideploy.rig, test_pideploy.built  # the fixtures
FS_BYTES = 32 << 20
FREE = [0, 64 << 10, 512 << 10, 2 << 20]  # what is left free when the write starts


class SmallDisk:
    """A tmpfs of FS_BYTES at `path`; `fill(free)` leaves `free` bytes, `drain()` frees it all again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / ".filler"

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, free: int) -> None:
        self.drain()
        with open(self.filler, "wb") as f:
            want = self.free() - free
            while want > 0:
                try:
                    want -= f.write(b"\0" * min(want, 1 << 20))
                except OSError:
                    break
                f.flush()

    def drain(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    path = tmp_path / "disk"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files and work folders left under `folder`."""
    return [p for p in folder.rglob("*") if p.name.startswith((".tmp-", "release-", ".build-", "artifact-", "unpack-"))]


# --- the hub -------------------------------------------------------------------------------------

def test_a_hub_on_a_full_disk_refuses_in_words_keeps_serving_and_recovers_live(tmp_path: Path, disk: SmallDisk) -> None:
    hub = LocalHub.create(tmp_path / "site", data_dir=str(disk.path / "data"))
    hub.start()
    try:
        dev = SimDevice("gh-01", hub.register("gh-01"))
        first = hub.build_release("1.0.0", {"main.py": b"print(1)\n", "data.bin": os.urandom(100_000)})
        hub.publish(first)
        acked = 0
        with httpx.Client(base_url=hub.url) as c:
            dev.heartbeat(c)
            acked += 1
            for n, free in enumerate(FREE):
                big = hub.build_release(f"1.1.{n}", {"main.py": b"print(2)\n", "data.bin": os.urandom(1 << 20)})
                disk.fill(free)
                try:
                    hub.publish(big)
                    published = True
                except HubError as exc:
                    assert exc.status == 503 and "No space left on device" in exc.message, exc.message
                    published = False
                beats_refused = 0
                for _ in range(50):  # heartbeats until the disk bites (or it does not at all)
                    try:
                        dev.heartbeat(c)
                        acked += 1
                    except DeviceProtocolError as exc:
                        assert "HTTP 503" in str(exc) and "nothing was saved" in str(exc), str(exc)
                        beats_refused += 1
                        break
                # it keeps serving what it had
                assert httpx.get(f"{hub.url}/artifacts/{release.load_meta(first)['sha256']}").status_code == 200
                assert hub.client.device("gh-01")["id"] == "gh-01"
                versions = {r["version"] for r in hub.client.releases()}
                assert "1.0.0" in versions and (f"1.1.{n}" in versions) == published
                assert not _leftovers(disk.path / "data" / "tmp"), "a refused upload left its files"
                disk.drain()
                dev.heartbeat(c)  # space again: it works, with no restart
                acked += 1
                assert hub.publish(big)["meta"]["version"] == f"1.1.{n}"
        beats = hub.client.device("gh-01")["heartbeats"]
        assert len(beats) >= min(acked, hub.cfg.hub.heartbeat_history)
        assert "Traceback" not in hub.log_path.read_text()
    finally:
        hub.close()


# --- a Pi ----------------------------------------------------------------------------------------

def _big_release(d: Path, keys: test_pideploy.Keys, version: str) -> Path:
    src = d / f"src-{version}"
    src.mkdir(parents=True)
    (src / "main.py").write_text((test_pideploy.APP / "main.py").read_text())
    (src / "sensors.py").write_text((test_pideploy.APP / "sensors.py").read_text())
    (src / "model.bin").write_bytes(os.urandom(3 << 20))
    release.build("pi", version, src, d / version, key_hex=keys.private)
    return d / version


def test_a_pi_on_a_full_disk_refuses_the_deploy_and_keeps_current(rig: Rig, built: dict[str, Path], keys, disk: SmallDisk) -> None:
    rig.cfg.pi.root = str(disk.path / "pi")
    rig.cfg.pi.restart_command = shlex.join(pi_app_control.command(rig.cfg.pi.root, rig.port, rig.tmp / "app.pid",
                                                                   rig.tmp / "app.log"))
    rig.cfg.pi.max_archive_bytes = 64 << 20
    rig.save()
    assert pideploy.deploy(rig.cfg, str(built["1.0.0"])).ok
    big = _big_release(rig.tmp / "big", keys, "4.0.0")
    for free in FREE:
        disk.fill(free)
        with pytest.raises(PicoctlError, match="No space left on device") as refused:
            pideploy.deploy(rig.cfg, str(big))
        assert len(str(refused.value).splitlines()) == 1
        rig.assert_consistent("1.0.0")
        assert sorted(p.name for p in (disk.path / "pi" / "releases").iterdir()) == ["1.0.0"]
        disk.drain()
    assert pideploy.deploy(rig.cfg, str(big)).ok
    rig.assert_consistent("4.0.0")


# --- release build -------------------------------------------------------------------------------

def test_a_release_build_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, disk: SmallDisk) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("print('hi')\n")
    (src / "model.bin").write_bytes(os.urandom(3 << 20))
    private, public = signing.generate_keypair()
    (tmp_path / "release.key").write_text(private)
    for n, free in enumerate(FREE):
        disk.fill(free)
        out = disk.path / "dist" / f"r{n}"
        run = subprocess.run([sys.executable, "-m", "picoctl", "release", "build", "--target", "pi", "--version", "1.0.0",
                              "--source", str(src), "--out", str(out), "--key", str(tmp_path / "release.key")],
                             capture_output=True, text=True, timeout=60)
        if run.returncode == 0:
            assert release.verify(out, public)["version"] == "1.0.0"
        else:
            assert run.returncode == 1 and "No space left on device" in run.stderr, run.stderr
            assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr, run.stderr
            assert not out.exists()
        assert not _leftovers(disk.path), "a build left its work folder"
        disk.drain()


# --- a new site (picoctl init) -------------------------------------------------------------------

def test_picoctl_init_onto_a_full_disk_leaves_nothing_and_can_be_tried_again(disk: SmallDisk) -> None:
    site = disk.path / "site"
    for free in (0, 2 << 10, 8 << 10, 20 << 10):
        disk.fill(free)
        run = subprocess.run([sys.executable, "-m", "picoctl", "init", "--dir", str(site)], capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 1 and "cannot create the site" in run.stderr, (run.returncode, run.stderr)
        assert "No space left on device" in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert list(site.iterdir()) == [], "a half-made site was left"
        disk.drain()
    run = subprocess.run([sys.executable, "-m", "picoctl", "init", "--dir", str(site)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in site.iterdir()) == ["data", "fleet.toml", "keys", "operator.token"]
