"""Pi self-deploy on loopback: release folders + `current` switch against copying over the app folder.

For a 5 MiB and a 50 MiB app (the example app plus incompressible data), both ways run in this one
process against the same HTTP server, the same restart command (picoctl.sim.pi_app_control, a real app
process) and the same health check:
- picoctl: `pideploy.deploy(meta.json URL)` and `pideploy.rollback()` (a link switch + restart);
- baseline, the original plan's deploy.sh: download + verify, back up the app folder, untar over it,
  restart; its rollback restores the backup copy.
Times are medians of REPEAT runs, from the call until the new release answers its health check
(picoctl's `DeployResult.duration_s`, which leaves out sending the history event; the wall time of
the whole call, event included, is printed beside it).

The durable switch (every file and folder of the release fsynced before the rename and the `current`
switch) is measured against the same deploys with every fsync made a no-op, on a third Pi root: an
upper bound of what durability costs (the journal and the links were fsynced before too).
"""

from __future__ import annotations

import os
import shlex
import shutil
import contextlib
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from picoctl import config, pideploy, release, signing  # noqa: E402
from picoctl.pideploy.health import wait_healthy  # noqa: E402
from picoctl.progress import Progress  # noqa: E402
from picoctl.sim import pi_app_control  # noqa: E402
from picoctl.sim.local_hub import free_port  # noqa: E402

APP = REPO / "examples" / "pi-app"
MIB = 1 << 20
REPEAT = 3
VERSIONS = ("1.0.0", "2.0.0", "3.0.0", "4.0.0")


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed_install(fn: Callable[[Progress], pideploy.DeployResult], walls: list[float]) -> tuple[float, float]:
    """A picoctl deploy: (its time to healthy, the time from unpacking to the restart: unpack, fsyncs,
    rename into releases/ and the `current` switch), keeping the call's wall time in `walls`."""
    marks: dict[str, float] = {}
    progress = Progress("pi deploy", lambda ev: marks.setdefault(ev.phase, time.perf_counter()))
    took = ours(lambda: fn(progress), walls)
    return took, marks["restart"] - marks["unpack"]


def ours(fn: Callable[[], pideploy.DeployResult], walls: list[float]) -> float:
    """Run a picoctl deploy or rollback; its time to healthy, keeping the call's wall time in `walls`."""
    t0 = time.perf_counter()
    result = fn()
    walls.append(time.perf_counter() - t0)
    assert result.ok, result.reason
    return result.duration_s


class Site:
    """One Pi root with its app process, restart command and health URL."""

    def __init__(self, work: Path, name: str, public_key: str) -> None:
        self.work = work / name
        self.work.mkdir()
        self.root = self.work / "pi"
        self.port = free_port()
        self.pidfile = self.work / "app.pid"
        self.restart = pi_app_control.command(self.root, self.port, self.pidfile)
        cfg = config.FleetConfig()
        cfg.hub.public_url = f"http://127.0.0.1:{free_port()}"  # no hub: events queue locally
        cfg.hub.data_dir = str(self.work / "data")
        cfg.hub.token_file = str(self.work / "token")
        cfg.release.public_key = public_key
        cfg.pi.root = str(self.root)
        cfg.pi.restart_command = shlex.join(self.restart)
        cfg.pi.health_url = f"http://127.0.0.1:{self.port}/healthz"
        cfg.pi.health_interval_s = 0.02
        cfg.pi.max_archive_bytes = 200 * MIB
        self.cfg = cfg

    def restart_and_wait(self) -> None:
        subprocess.run(self.restart, check=True)
        ok, seen = wait_healthy(self.cfg.pi.health_url, 30, 0.02)
        assert ok, seen

    def stop(self) -> None:
        try:
            os.kill(int(self.pidfile.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


@contextlib.contextmanager
def without_fsync() -> Iterator[list[int]]:
    """os.fsync as a no-op, counting the calls it skips."""
    skipped: list[int] = []
    real = os.fsync
    os.fsync = lambda fd: skipped.append(fd)  # type: ignore[assignment]
    try:
        yield skipped
    finally:
        os.fsync = real


def baseline_deploy(site: Site, base_url: str, version: str, public_key: str) -> None:
    """The original deploy.sh: fetch + verify, copy the app folder aside, untar over it, restart."""
    rel = site.work / "download"
    shutil.rmtree(rel, ignore_errors=True)
    rel.mkdir()
    meta = httpx.get(f"{base_url}/{version}/meta.json").json()
    with httpx.stream("GET", f"{base_url}/{version}/{meta['artifact']}") as r, open(rel / meta["artifact"], "wb") as f:
        for chunk in r.iter_bytes(1 << 16):
            f.write(chunk)
    (rel / "meta.json").write_text(httpx.get(f"{base_url}/{version}/meta.json").text)
    release.verify(rel, public_key)
    app, backup = site.root / "current", site.root / "backup"
    shutil.rmtree(backup, ignore_errors=True)
    if app.exists():
        shutil.copytree(app, backup)
    app.mkdir(parents=True, exist_ok=True)
    with tarfile.open(rel / meta["artifact"]) as tar:
        for member in tar.getmembers():
            member.name = member.name.split("/", 1)[1]
        tar.extractall(app, filter="data")
    site.restart_and_wait()


def baseline_rollback(site: Site) -> None:
    app, backup = site.root / "current", site.root / "backup"
    shutil.rmtree(app)
    shutil.copytree(backup, app)
    site.restart_and_wait()


def build_releases(out: Path, size_mib: int, private_key: str, versions: tuple[str, ...]) -> None:
    src = out / "src"
    shutil.copytree(APP, src)
    (src / "payload.bin").write_bytes(os.urandom(size_mib * MIB))
    for v in versions:
        release.build("pi", v, src, out / v, key_hex=private_key)


def measure(work: Path, size_mib: int, keys: tuple[str, str], repeat: int) -> dict[str, float]:
    private_key, public_key = keys
    published = work / f"published-{size_mib}"
    published.mkdir()
    build_releases(published, size_mib, private_key, VERSIONS[:1 + repeat])
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietFiles, directory=str(published)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    mine, theirs = Site(work, f"ours-{size_mib}", public_key), Site(work, f"baseline-{size_mib}", public_key)
    unsynced = Site(work, f"nosync-{size_mib}", public_key)
    deploy_walls: list[float] = []
    rollback_walls: list[float] = []
    try:
        assert pideploy.deploy(mine.cfg, f"{base}/{VERSIONS[0]}/meta.json").ok
        with without_fsync():
            assert pideploy.deploy(unsynced.cfg, f"{base}/{VERSIONS[0]}/meta.json").ok
        deploys, installs, nosync, nosync_installs, fsyncs = [], [], [], [], 0
        for v in VERSIONS[1:1 + repeat]:  # the two arms alternate, so the machine's load falls on both alike
            url = f"{base}/{v}/meta.json"
            took, install = timed_install(lambda p, url=url: pideploy.deploy(mine.cfg, url, p), deploy_walls)
            deploys.append(took)
            installs.append(install)
            assert pideploy.status(mine.cfg).current == v
            with without_fsync() as skipped:
                took, install = timed_install(lambda p, url=url: pideploy.deploy(unsynced.cfg, url, p), [])
            nosync.append(took)
            nosync_installs.append(install)
            fsyncs = len(skipped)
        rollbacks = []
        for _ in range(repeat):
            before = pideploy.status(mine.cfg).current
            rollbacks.append(ours(lambda: pideploy.rollback(mine.cfg), rollback_walls))
            assert pideploy.status(mine.cfg).current != before

        baseline_deploy(theirs, base, VERSIONS[0], public_key)
        base_deploys = [timed(lambda v=v: baseline_deploy(theirs, base, v, public_key)) for v in VERSIONS[1:1 + repeat]]
        base_rollbacks = [timed(lambda: baseline_rollback(theirs)) for _ in range(repeat)]
    finally:
        mine.stop()
        theirs.stop()
        unsynced.stop()
        server.shutdown()
        server.server_close()
    return {"deploy": statistics.median(deploys), "rollback": statistics.median(rollbacks),
            "deploy_nosync": statistics.median(nosync), "fsyncs": fsyncs,
            "install": statistics.median(installs), "install_nosync": statistics.median(nosync_installs),
            "deploy_wall": statistics.median(deploy_walls), "rollback_wall": statistics.median(rollback_walls),
            "baseline_deploy": statistics.median(base_deploys), "baseline_rollback": statistics.median(base_rollbacks)}


def main() -> None:
    keys = signing.generate_keypair()
    with tempfile.TemporaryDirectory(prefix="pi-deploy-bench-") as tmp:
        work = Path(tmp)
        small = measure(work, 5, keys, REPEAT)
        large = measure(work, 50, keys, 1)
    print(f"{'':28}{'5 MiB':>10}{'50 MiB':>10}")
    for key, label in (("deploy", "picoctl deploy (s)"), ("deploy_wall", "  whole call, event sent"),
                       ("deploy_nosync", "  without any fsync (s)"), ("install", "  unpack to switch (s)"),
                       ("install_nosync", "    without any fsync (s)"), ("baseline_deploy", "copy-over deploy (s)"),
                       ("rollback", "picoctl rollback (s)"), ("rollback_wall", "  whole call, event sent"),
                       ("baseline_rollback", "restore-copy rollback (s)")):
        print(f"{label:28}{small[key]:>10.3f}{large[key]:>10.3f}")
    print(f"{'fsync calls per deploy':28}{small['fsyncs']:>10.0f}{large['fsyncs']:>10.0f}")
    durable = {k: m["install"] / m["install_nosync"] for k, m in (("5", small), ("50", large))}
    print(f"the durable switch: unpack to switch takes {durable['5']:.2f}x as long as without fsync at 5 MiB, "
          f"{durable['50']:.2f}x at 50 MiB")
    print(f"deploy ratio baseline/picoctl at 5 MiB: {small['baseline_deploy'] / small['deploy']:.2f}x")
    print(f"rollback 50 MiB / 5 MiB: picoctl {large['rollback'] / small['rollback']:.2f}x, "
          f"baseline {large['baseline_rollback'] / small['baseline_rollback']:.2f}x")
    print(f"RESULT deploy_s={small['deploy']:.3f} baseline_deploy_s={small['baseline_deploy']:.3f} "
          f"rollback_s_5mib={small['rollback']:.3f} rollback_s_50mib={large['rollback']:.3f} "
          f"baseline_rollback_s_5mib={small['baseline_rollback']:.3f} "
          f"baseline_rollback_s_50mib={large['baseline_rollback']:.3f} "
          f"deploy_s_50mib={large['deploy']:.3f} baseline_deploy_s_50mib={large['baseline_deploy']:.3f} "
          f"deploy_nosync_s={small['deploy_nosync']:.3f} install_s={small['install']:.3f} "
          f"install_nosync_s={small['install_nosync']:.3f} install_s_50mib={large['install']:.3f} "
          f"install_nosync_s_50mib={large['install_nosync']:.3f} durable_ratio={durable['5']:.2f} "
          f"durable_ratio_50mib={durable['50']:.2f} fsyncs={small['fsyncs']:.0f}")


if __name__ == "__main__":
    main()
