"""SIGKILL at a sweep of instants: a Pi deploy, the hub while it takes a release, a release build.

Each run is timed once whole, then killed at fractions of that time. After each kill the next run
must find a consistent state and say what it recovered: the Pi's `current` names a whole release
(every file of its archive, byte for byte) and the next deploy works; the hub's store opens with the
release either absent or whole, and no half-uploaded file is left behind; a release folder either
does not exist or verifies.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import httpx

import test_pideploy
from picoctl import pideploy, release, signing
from picoctl.errors import PicoctlError
from picoctl.sim.local_hub import LocalHub
from picoctl.workdirs import remove_interrupted, work_dir
from test_pideploy import Rig

keys, rig, built = test_pideploy.keys, test_pideploy.rig, test_pideploy.built  # the fixtures
SWEEP = 5  # kills per test, spread over one whole run


def _instants(whole_s: float) -> list[float]:
    return [whole_s * (i + 0.5) / SWEEP for i in range(SWEEP)]


def _kill_after(proc: subprocess.Popen, delay: float) -> None:
    try:
        proc.wait(delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    proc.communicate()


def _archive_files(release_dir: Path) -> dict[str, bytes]:
    meta = release.load_meta(release_dir)
    with tarfile.open(release_dir / meta["artifact"]) as tar:
        return {m.name[len(meta["root"]) + 1:]: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar if m.isfile()}


def _assert_whole(rig: Rig, built: dict[str, Path]) -> str | None:
    """The version `current` names, checked to be a whole release on disk (None: no current)."""
    link = rig.root / "current"
    if not os.path.lexists(link):
        return None
    version = Path(os.readlink(link)).name
    folder = rig.root / "releases" / version
    assert folder.is_dir() and not folder.is_symlink(), f"current names {version}, which is not on disk"
    for name, data in _archive_files(built[version]).items():
        assert (folder / name).read_bytes() == data, f"{version}/{name} is not whole"
    return version


def test_a_pi_deploy_killed_at_any_instant_leaves_a_whole_current(rig: Rig, built: dict[str, Path]) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    started = time.monotonic()
    assert rig.cli("deploy", str(built["2.0.0"])).returncode == 0
    whole_s = time.monotonic() - started
    target = "1.0.0"
    for delay in _instants(whole_s):
        _kill_after(rig.popen("deploy", str(built[target])), delay)
        assert _assert_whole(rig, built) in ("1.0.0", "2.0.0")
        interrupted = (rig.root / ".deploy-journal.json").exists()
        status = rig.cli("status", "--json")
        assert status.returncode == 0, status.stderr
        assert ("recovering" in status.stderr) == interrupted, status.stderr
        now = _assert_whole(rig, built)
        rig.assert_consistent(now or "")
        target = "2.0.0" if now == "1.0.0" else "1.0.0"
    assert pideploy.deploy(rig.cfg, str(built["2.1.0"])).ok
    rig.assert_consistent("2.1.0")


def test_a_pi_rollback_killed_at_any_instant_leaves_a_whole_current(rig: Rig, built: dict[str, Path]) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    pideploy.deploy(rig.cfg, str(built["2.0.0"]))
    started = time.monotonic()
    assert rig.cli("rollback").returncode == 0
    whole_s = time.monotonic() - started
    for delay in _instants(whole_s):
        _kill_after(rig.popen("rollback"), delay)
        assert _assert_whole(rig, built) in ("1.0.0", "2.0.0")
        status = rig.cli("status", "--json")
        assert status.returncode == 0, status.stderr
        rig.assert_consistent(_assert_whole(rig, built) or "")


# --- the hub -------------------------------------------------------------------------------------

def test_a_hub_killed_while_taking_a_release_keeps_it_whole_or_absent(tmp_path: Path) -> None:
    hub = LocalHub.create(tmp_path / "site")
    hub.start()
    try:
        rel = hub.build_release("1.0.0", {"main.py": b"print(1)\n", "big.bin": os.urandom(6 << 20)})
        meta = release.load_meta(rel)
        started = time.monotonic()
        hub.client.publish(rel)
        whole_s = time.monotonic() - started
        hub.restart()
        rel = hub.build_release("1.1.0", {"main.py": b"print(2)\n", "big.bin": os.urandom(6 << 20)})
        meta = release.load_meta(rel)
        for delay in _instants(whole_s):
            done = threading.Event()

            def publish(done: threading.Event = done) -> None:
                try:
                    hub.client.publish(rel)
                except PicoctlError:
                    pass  # the hub went away under it
                done.set()

            threading.Thread(target=publish, daemon=True).start()
            time.sleep(delay)
            hub.kill()
            assert done.wait(30)
            left = list((hub.cfg.data_dir / "tmp").iterdir())
            hub.start()
            found = {r["version"]: r for r in hub.client.releases()}
            assert "1.0.0" in found
            if "1.1.0" in found:
                blob = hub.cfg.data_dir / "blobs" / meta["sha256"][:2] / meta["sha256"]
                assert signing.sha256_file(blob) == meta["sha256"], "a release is recorded but its artifact is not whole"
            assert not list((hub.cfg.data_dir / "tmp").iterdir()), "an interrupted upload was left in the data folder"
            if left:
                assert f"removed {len(left)} release upload(s) a stopped hub left unfinished" in hub.log_path.read_text()
        assert hub.client.publish(rel)["meta"]["version"] == "1.1.0"
        assert httpx.get(f"{hub.url}/artifacts/{meta['sha256']}").content == (rel / meta["artifact"]).read_bytes()
    finally:
        hub.close()


# --- release build -------------------------------------------------------------------------------

def test_a_release_build_killed_at_any_instant_leaves_no_release_that_looks_whole(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("print('hi')\n")
    for i in range(20):
        (src / f"data{i}.bin").write_bytes(os.urandom(200_000))
    private, public = signing.generate_keypair()
    (tmp_path / "release.key").write_text(private)

    def build(out: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "picoctl", "release", "build", "--target", "pi", "--version",
                                 "1.0.0", "--source", str(src), "--out", str(out), "--key", str(tmp_path / "release.key")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    started = time.monotonic()
    whole = build(tmp_path / "whole")
    assert whole.wait(60) == 0, whole.communicate()
    whole_s = time.monotonic() - started
    dist = tmp_path / "dist"
    for n, delay in enumerate(_instants(whole_s)):
        out = dist / f"r{n}"
        _kill_after(build(out), delay)
        if out.exists():
            assert release.verify(out, public)["version"] == "1.0.0"
            continue
        left = list(dist.glob(".build-*")) if dist.exists() else []
        again = build(out)
        _, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
        assert release.verify(out, public)["version"] == "1.0.0"
        if left:
            assert f"removed {len(left)} unfinished build folder(s) an interrupted build left in {dist}" in err.decode()
        assert not list(dist.glob(".build-*")), "an interrupted build's folder stayed"


def test_the_work_folder_of_a_live_process_is_left_alone(tmp_path: Path) -> None:
    with work_dir(tmp_path, ".build-") as live:
        (live / "half.bin").write_bytes(b"x" * 1000)
        stale = tmp_path / ".build-stale"
        (stale / "work").mkdir(parents=True)
        (stale / ".lock").touch()  # its process is gone: nobody holds the lock
        assert remove_interrupted(tmp_path, ".build-") == 1
        assert (live / "half.bin").exists() and not stale.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_folder_killed_before_its_lock_is_removed_at_once(tmp_path: Path) -> None:
    """SIGKILL between making a work folder and locking it leaves a folder with no lock: the next run
    removes it, however young (a folder is made and locked under the parent's lock, which the sweep
    takes, so a lockless one is never being made)."""
    (tmp_path / "release-abc" / "work").mkdir(parents=True)
    assert remove_interrupted(tmp_path, "release-") == 1
    assert list(tmp_path.iterdir()) == []


def test_the_sweep_waits_while_a_folder_is_being_made(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # as work_dir holds it between making its folder and locking it
    (tmp_path / "release-making").mkdir()
    swept = threading.Thread(target=remove_interrupted, args=(tmp_path, "release-"))
    swept.start()
    swept.join(0.5)
    try:
        assert swept.is_alive() and (tmp_path / "release-making").exists()
    finally:
        os.close(fd)
        swept.join(10)
