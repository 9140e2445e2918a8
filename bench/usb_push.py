"""Push a 200 KiB pico release to the virtual USB Pico with the commands a user types, in the same
run: `picoctl usb push` (write, on-board sha256 of every file, rename, reset, version read back)
against `mpremote cp -r . :` (write only), each a process, each onto a fresh virtual Pico (the
MicroPython unix port behind a pty); then `picoctl usb push` while `usb follow` reads the board, and
how long an operation waits for the follower to give the port up.

ratio = mpremote time / picoctl time, medians of RUNS runs (above 1: picoctl is faster end to end,
start-up included); followed_ratio = picoctl time / picoctl time with the follower (1: it costs
nothing); handover_ms = the median wait of 20 claims of a port the follower is reading;
startup_ratio = `mpremote --help` time / `picoctl --help` time (medians).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from picoctl import release  # noqa: E402
from picoctl.sim.virtual_pico import VirtualPico  # noqa: E402
from picoctl.usb import port_claim  # noqa: E402
from picoctl.usb.serial_log import SerialLog  # noqa: E402

TOTAL = 200 * 1024
RUNS = 5
BIN = Path(sys.executable).parent
PICOCTL = [str(BIN / "picoctl")] if (BIN / "picoctl").exists() else [sys.executable, "-m", "picoctl"]
MPREMOTE = [str(BIN / "mpremote")] if (BIN / "mpremote").exists() else [sys.executable, "-m", "mpremote"]
# No fleet.toml: nothing is recorded. Bytecode may be written: an installed picoctl has its .pyc
# files (pip compiles them), as mpremote has; an editable install without them would be timed compiling.
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
       "PICOCTL_CONFIG": os.devnull + ".none"}


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


def timed(cmd: list[str], **kw: object) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, env=ENV, **kw)
    return time.perf_counter() - t0


def run_picoctl(rel: Path, work: Path, n: int, followed: bool = False) -> float:
    with VirtualPico(work / f"flash-picoctl-{n}-{followed}") as board:
        time.sleep(0.3)  # past its power-up
        follower = following(board.port) if followed else None
        elapsed = timed([*PICOCTL, "usb", "push", str(rel), "--port", board.port])
        if follower:
            follower.stop()
        got = board_files(board.flash_dir)
    assert b'"1.0.0"' in got["version.json"], "picoctl usb push did not leave the release's version"
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
    with VirtualPico(work / f"flash-mpremote-{n}") as board:
        time.sleep(0.3)  # past its power-up
        elapsed = timed([*MPREMOTE, "connect", board.pty, "cp", "-r", ".", ":"], cwd=files)
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
        run_picoctl(rel, work, -1)  # warm-up, untimed: bytecode written, files cached, for both tools
        run_mpremote(files, work, -1)
        picoctl_runs, mpremote_runs, followed_runs = [], [], []
        for n in range(RUNS):
            picoctl_runs.append(run_picoctl(rel, work, n))
            mpremote_runs.append(run_mpremote(files, work, n))
            followed_runs.append(run_picoctl(rel, work, n, followed=True))
        p, m = statistics.median(picoctl_runs), statistics.median(mpremote_runs)
        f, handover = statistics.median(followed_runs), handover_ms(work)
        p_start = statistics.median(timed([*PICOCTL, "--help"]) for _ in range(RUNS))
        m_start = statistics.median(timed([*MPREMOTE, "--help"]) for _ in range(RUNS))
        print(f"release: {len(meta['files'])} files, {size} bytes; medians of {RUNS} runs, each command a process")
        print(f"picoctl usb push (write, on-board sha256 verify, rename, reset, read version): "
              f"{', '.join(f'{t:.2f}' for t in picoctl_runs)} s -> median {p:.2f} s ({size / p / 1024:.0f} KiB/s)")
        print(f"mpremote cp -r . : (write only):                                          "
              f"{', '.join(f'{t:.2f}' for t in mpremote_runs)} s -> median {m:.2f} s ({size / m / 1024:.0f} KiB/s)")
        print(f"start-up: picoctl --help {p_start:.2f} s, mpremote --help {m_start:.2f} s")
        print(f"picoctl usb push while `usb follow` reads the board:                       "
              f"{', '.join(f'{t:.2f}' for t in followed_runs)} s -> median {f:.2f} s")
        print(f"an operation waits {handover:.0f} ms (median of 20) for the follower to give the port up")
        print(f"RESULT picoctl_s={p:.3f} mpremote_s={m:.3f} ratio={m / p:.2f} followed_s={f:.3f} "
              f"followed_ratio={p / f:.2f} handover_ms={handover:.0f} startup_ratio={m_start / p_start:.2f} "
              f"bytes={size} files={len(meta['files'])}")


if __name__ == "__main__":
    main()
