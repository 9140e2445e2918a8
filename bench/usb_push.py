"""Push a 200 KiB pico release to the virtual USB Pico: picoctl (with on-board verification) beside
`mpremote cp -r` (the command line), in the same run; then picoctl again while `usb follow` reads
the board, and how long an operation waits for the follower to give the port up.

Each tool pushes to a fresh virtual Pico (MicroPython unix port behind a pty); the median of
three runs is reported. ratio = mpremote time / picoctl time (above 1: picoctl is faster);
followed_ratio = picoctl time / picoctl time with the follower running (1: it costs nothing);
handover_ms = the median wait of 20 claims of a port the follower is reading.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from picoctl import release  # noqa: E402
from picoctl.progress import Progress  # noqa: E402
from picoctl.sim.virtual_pico import VirtualPico  # noqa: E402
from picoctl.usb import port_claim  # noqa: E402
from picoctl.usb.push import push_release  # noqa: E402
from picoctl.usb.serial_log import SerialLog  # noqa: E402

TOTAL = 200 * 1024
RUNS = 3


def make_source(root: Path) -> None:
    """About 200 KiB in 20 files: Python sources and binary tables, in two folders."""
    rng = random.Random(1)
    (root / "lib").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "main.py").write_text("import lib.app0\n")
    per = TOTAL // 20
    for i in range(10):
        lines = [f"VALUE_{n} = {rng.randrange(10**9)}  # sensor calibration entry {n}\n" for n in range(per // 48)]
        (root / "lib" / f"app{i}.py").write_text("".join(lines)[:per])
        (root / "data" / f"table{i}.bin").write_bytes(rng.randbytes(per))


def board_files(flash: Path) -> dict[str, bytes]:
    return {p.relative_to(flash).as_posix(): p.read_bytes() for p in flash.rglob("*") if p.is_file()}


def following(port: str) -> SerialLog:
    """A follower reading `port` (as `usb follow` does), once it has the port open."""
    log = SerialLog(port, gives_way=True)
    log.start()
    deadline = time.monotonic() + 10
    while not log.connected:
        assert time.monotonic() < deadline, "the follower never opened the port"
        time.sleep(0.01)
    return log


def run_picoctl(rel: Path, work: Path, n: int, followed: bool = False) -> float:
    with VirtualPico(work / f"flash-picoctl-{n}-{followed}") as board:
        time.sleep(0.2)
        follower = following(board.port) if followed else None
        t0 = time.perf_counter()
        result = push_release(board.port, rel, Progress("bench"), verify=True)
        elapsed = time.perf_counter() - t0
        assert result.version == "1.0.0" and result.verified
        if follower:
            follower.stop()
    return elapsed


def handover_ms(work: Path) -> float:
    """Median time for an operation to get a port the follower is reading."""
    waits = []
    with VirtualPico(work / "flash-handover") as board:
        follower = following(board.port)
        for _ in range(20):
            while not follower.connected:
                time.sleep(0.01)
            t0 = time.perf_counter()
            with port_claim.claim(board.port, "bench"):
                waits.append(time.perf_counter() - t0)
        follower.stop()
    return statistics.median(waits) * 1000


def run_mpremote(files: Path, work: Path, n: int) -> float:
    mpremote = [sys.executable, "-m", "mpremote"]
    with VirtualPico(work / f"flash-mpremote-{n}") as board:
        time.sleep(0.2)
        t0 = time.perf_counter()
        subprocess.run([*mpremote, "connect", board.pty, "cp", "-r", ".", ":"], cwd=files, check=True,
                       stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - t0
        got = board_files(board.flash_dir)
    want = board_files(files)
    assert all(got.get(k) == v for k, v in want.items()), "mpremote cp did not copy every file intact"
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-usb-") as tmp:
        work = Path(tmp)
        make_source(work / "src")
        rel = work / "rel"
        meta = release.build("pico", "1.0.0", work / "src", rel)
        files = work / "files"
        files.mkdir()
        for name, data in release.read_tar_files(rel / meta["artifact"]).items():
            (files / name).parent.mkdir(parents=True, exist_ok=True)
            (files / name).write_bytes(data)
        size = sum(f["size"] for f in meta["files"])
        picoctl_runs, mpremote_runs, followed_runs = [], [], []
        for n in range(RUNS):
            picoctl_runs.append(run_picoctl(rel, work, n))
            mpremote_runs.append(run_mpremote(files, work, n))
            followed_runs.append(run_picoctl(rel, work, n, followed=True))
        p, m = statistics.median(picoctl_runs), statistics.median(mpremote_runs)
        f, handover = statistics.median(followed_runs), handover_ms(work)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mpremote", "version"], check=True, stdout=subprocess.DEVNULL)
        startup = time.perf_counter() - t0
        print(f"release: {len(meta['files'])} files, {size} bytes")
        print(f"picoctl push (write, on-board sha256 verify, rename, reset, read version): "
              f"{', '.join(f'{t:.2f}' for t in picoctl_runs)} s -> median {p:.2f} s ({size / p / 1024:.0f} KiB/s)")
        print(f"mpremote cp -r (write only):                                            "
              f"{', '.join(f'{t:.2f}' for t in mpremote_runs)} s -> median {m:.2f} s ({size / m / 1024:.0f} KiB/s)")
        print(f"(of mpremote's time, {startup:.2f} s is starting the command: `mpremote version` alone)")
        print(f"picoctl push while `usb follow` reads the board:                         "
              f"{', '.join(f'{t:.2f}' for t in followed_runs)} s -> median {f:.2f} s")
        print(f"an operation waits {handover:.0f} ms (median of 20) for the follower to give the port up")
        print(f"RESULT picoctl_s={p:.3f} mpremote_s={m:.3f} ratio={m / p:.2f} followed_s={f:.3f} "
              f"followed_ratio={p / f:.2f} handover_ms={handover:.0f} bytes={size} files={len(meta['files'])}")


if __name__ == "__main__":
    main()
