"""`picoctl usb follow` keeps USB Picos in the fleet: a virtual Pico's heartbeats reach the real hub
with no one watching its console, and the follower gives the port up to a push or a log viewer (and
takes it back after); operations on one port wait for each other and fail naming the holder."""

from __future__ import annotations

import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Hub, pico_flash
from picoctl.shipped import PICO_APP
from picoctl import config, release
from picoctl.cli import main
from picoctl.errors import PicoctlError
from picoctl.progress import Progress
from picoctl.sim.board import find_micropython
from picoctl.sim.virtual_pico import VirtualPico
from picoctl.usb import port_claim, push, serial_log
from picoctl.usb.follow import Follower
from picoctl.usb.serial_log import SerialLog
from picoctl.usb.telemetry import parse_heartbeat
from waiting import wait_for

pytestmark = [pytest.mark.micropython,
              pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port not installed")]

DEVICE = "pico-follow-1"


@pytest.fixture
def board(tmp_path: Path) -> Iterator[VirtualPico]:
    (tmp_path / "ports").mkdir()
    with VirtualPico(pico_flash(tmp_path / "flash", DEVICE, version="1.0.0"), link_dir=tmp_path / "ports") as vp:
        yield vp


@pytest.fixture
def follower(hub: Hub, board: VirtualPico, tmp_path: Path) -> Iterator[tuple[Follower, list[str]]]:
    hub.cfg.usb.extra_ports = str(tmp_path / "ports" / "pico-*")
    hub.cfg.usb.poll_s = 0.2
    events: list[str] = []
    with Follower(hub.cfg, lambda port, what: events.append(what)) as f:
        yield f, events


def reported(hub: Hub) -> str | None:
    return {d["id"]: d for d in hub.client.devices()}.get(DEVICE, {}).get("version")


def test_heartbeats_reach_the_hub_and_a_push_takes_the_port(hub: Hub, board: VirtualPico, follower, tmp_path: Path) -> None:
    f, events = follower
    wait_for(lambda: reported(hub) == "1.0.0", 10, "the board in the fleet")
    assert "following" in events and "connected" in events

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(PICO_APP, src / "main.py")
    release.build("pico", "1.1.0", src, tmp_path / "rel")
    result = push.push_release(board.port, tmp_path / "rel", Progress("push"))
    assert result.version == "1.1.0"
    assert "given way to another picoctl command" in events
    # the follower took the port back: the hub hears the new version without anyone watching
    wait_for(lambda: reported(hub) == "1.1.0", 10, "heartbeats of 1.1.0")
    assert events.count("connected") >= 2


def test_the_cli_follows_until_its_time_is_up(hub: Hub, board: VirtualPico, tmp_path: Path, capsys) -> None:
    hub.cfg.usb.extra_ports = str(tmp_path / "ports" / "pico-*")
    config.save(hub.cfg, hub.cfg.path)
    assert main(["--config", str(hub.cfg.path), "usb", "follow", "--seconds", "3"]) == 0
    assert reported(hub) == "1.0.0"
    err = capsys.readouterr().err
    assert f"heartbeats go to {hub.cfg.hub_url}" in err and f"{board.port}: following" in err and "connected" in err


def test_a_bad_usb_section_stops_the_cli_with_one_line(hub: Hub, capsys) -> None:
    hub.cfg.usb.poll_s = 0
    config.save(hub.cfg, hub.cfg.path)
    assert main(["--config", str(hub.cfg.path), "usb", "follow", "--seconds", "1"]) == 2
    assert "usb.poll_s: expected a positive number of seconds, got 0" in capsys.readouterr().err


def test_a_log_viewer_has_the_port_while_it_looks(hub: Hub, board: VirtualPico, follower) -> None:
    f, _ = follower
    wait_for(lambda: f.heartbeats(board.port) > 0, 10, "forwarded heartbeats")
    seen: list[str] = []
    with SerialLog(board.port, on_line=seen.append):
        wait_for(lambda: sum(1 for line in seen if parse_heartbeat(line)) >= 3, 10, "heartbeats in the viewer")
        held = f.heartbeats(board.port)
        wait_for(lambda: sum(1 for line in seen if parse_heartbeat(line)) >= 6, 10, "more heartbeats in the viewer")
        assert f.heartbeats(board.port) == held  # the viewer reads every line; the follower none
    wait_for(lambda: f.heartbeats(board.port) > held, 10, "the follower back after the viewer")


def test_operations_on_one_port_wait_then_fail_naming_the_holder(board: VirtualPico, monkeypatch) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom picoctl.usb import port_claim\n"
         f"with port_claim.claim({board.port!r}, 'a test holder'):\n print('held', flush=True)\n time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert select.select([holder.stdout], [], [], 10)[0], "the holder did not take the port within 10 s"
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(port_claim, "CLAIM_S", 0.5)
        with pytest.raises(PicoctlError, match=r"in use by a test holder \(pid \d+\); try again when it is done"):
            push.push_files(board.port, {"x.txt": b"x"}, Progress("push"))
        assert not (board.flash_dir / "x.txt").exists()
        said: list[str] = []
        monkeypatch.setattr(serial_log, "CLAIM_WAIT_S", 0.2)
        with SerialLog(board.port, on_status=lambda up, why: said.append(why)) as viewer:  # a log says why it waits
            time.sleep(1.5)  # several attempts: the reason is said once
            assert not viewer.connected and len(said) == 1 and f"in use by a test holder (pid {holder.pid})" in said[0]
        holder.kill()  # a killed holder holds nothing: the kernel drops its locks
        holder.wait(10)
        assert push.push_files(board.port, {"x.txt": b"x"}, Progress("push")).files == 1
        assert (board.flash_dir / "x.txt").read_bytes() == b"x"
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()


def test_a_lock_folder_that_cannot_be_used_is_a_clear_error(board: VirtualPico, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(port_claim, "lock_dir", lambda: tmp_path / "no-such-folder")
    with pytest.raises(PicoctlError, match=r"cannot take its lock file .*no-such-folder.*: No such file or directory"):
        push.push_files(board.port, {"x.txt": b"x"}, Progress("push"))
    said: list[str] = []
    follower = SerialLog(board.port, on_status=lambda up, why: said.append(why), gives_way=True)
    follower.start()
    wait_for(lambda: said, 10, "the follower's status")
    follower.stop()
    assert "cannot take its lock file" in said[0] and not (board.flash_dir / "x.txt").exists()


def test_no_lock_file_stays_behind_once_everyone_let_go(hub: Hub, board: VirtualPico, tmp_path: Path,
                                                         monkeypatch) -> None:
    locks = tmp_path / "locks"
    locks.mkdir()
    monkeypatch.setattr(port_claim, "lock_dir", lambda: locks)
    hub.cfg.usb.extra_ports = str(tmp_path / "ports" / "pico-*")
    hub.cfg.usb.poll_s = 0.2
    with Follower(hub.cfg, lambda port, what: None) as f:
        wait_for(lambda: f.heartbeats(board.port) > 0, 10, "the follower reading the board")
        for n in range(3):
            assert push.push_files(board.port, {"x.txt": b"%d" % n}, Progress("push")).files == 1
        wait_for(lambda: f.heartbeats(board.port) > 0, 10, "the follower back")
    assert sorted(p.name for p in locks.iterdir()) == []
    with port_claim.claim(board.port, "a test"):
        assert len(list(locks.iterdir())) == 2
    assert list(locks.iterdir()) == []
