"""`picoctl usb ...` end to end on a virtual Pico and a virtual BOOTSEL drive, recording to a hub."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from picoctl import config, release
from picoctl.history import local_actor
from picoctl.cli import main
from picoctl.commands.init import init_site
from picoctl.sim.bootsel_drive import VirtualDrive, make_drive
from picoctl.sim.virtual_pico import VirtualPico
from picoctl.usb import uf2
from picoctl.sim.board import find_micropython
from conftest import pico_flash
from loopback import Peer, serving
from picoctl.shipped import PICO_APP

pytestmark = [pytest.mark.micropython,
              pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port not installed")]



class Hub(Peer):
    token = ""
    posts: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.json_body()
        ok = self.headers["Authorization"] == f"Bearer {self.token}"
        if ok:
            Hub.posts.append((self.path, body))
            self.answer(201, b'{"id": 1}')  # the hub's JSON answers
        else:
            self.answer(401, b'{"error": "bad token"}')


@pytest.fixture
def site(tmp_path, monkeypatch):
    path = init_site(tmp_path / "site")
    cfg = config.load(path)
    cfg.usb.drive_roots = str(tmp_path / "media")
    cfg.usb.extra_ports = str(tmp_path / "ports" / "pico-*")
    cfg.usb.poll_s = 0.05
    config.save(cfg, path)
    (tmp_path / "media").mkdir()
    (tmp_path / "ports").mkdir()
    Hub.token, Hub.posts = cfg.read_token(), []
    with serving(Hub) as url:
        monkeypatch.setenv("PICOCTL_HUB_URL", url)
        monkeypatch.setenv("PICOCTL_CONFIG", str(path))
        yield tmp_path


def history(kind: str) -> list[dict]:
    return [b for p, b in Hub.posts if p == "/api/v1/history" and b["kind"] == kind]


def pico(site: Path, app: bool = False, version: str | None = None, **kw) -> VirtualPico:
    flash = pico_flash(site / "flash", "pico-bench-7", app=app, version=version)
    return VirtualPico(flash, serial="E66138935F1B2C3D", link_dir=site / "ports", **kw)


def test_list_shows_virtual_board_and_drive(site, capsys):
    make_drive(site / "media" / "RPI-RP2")
    with pico(site):
        assert main(["usb", "list", "--json"]) == 0
    boards = json.loads(capsys.readouterr().out)
    assert [(b["kind"], b["serial_number"] or b["board_id"]) for b in boards] == [
        ("bootsel", "RPI-RP2"), ("serial", "E66138935F1B2C3D")]


def test_push_records_the_update_in_history(site, capsys):
    src = site / "src"
    src.mkdir()
    shutil.copy(PICO_APP, src / "main.py")
    release.build("pico", "1.3.0", src, site / "unsigned")
    with pico(site) as board:  # a site's usb push takes only releases signed by a key of its set
        assert main(["usb", "push", str(site / "unsigned"), "--port", board.port]) == 2
        assert "meta.json is not signed" in capsys.readouterr().err
        release.build("pico", "1.3.0", src, site / "rel", key_hex=(site / "site" / "keys" / "release.key").read_text().strip())
        assert main(["usb", "push", str(site / "rel"), "--port", board.port]) == 0
    assert "board reports version 1.3.0" in " ".join(capsys.readouterr().out.split())
    (event,) = history("usb_push")
    assert (event["device_id"], event["version"], event["result"], event["actor"]) == ("pico-bench-7", "1.3.0", "ok", local_actor())


def test_flash_by_port_goes_through_bootsel_and_back(site, capsys):
    image = uf2.build_uf2(os.urandom(5000), 0x10000000, "rp2040")
    (site / "fw.uf2").write_bytes(image)
    drives: list[VirtualDrive] = []

    def to_bootsel(board: VirtualPico) -> None:  # the board's USB comes back as a BOOTSEL drive
        drive = VirtualDrive(site / "media" / "RPI-RP2", on_flashed=lambda _: board.replug())
        drives.append(drive.__enter__())

    with pico(site, on_bootsel=to_bootsel) as board:
        assert main(["usb", "flash", str(site / "fw.uf2"), "--port", board.port, "--timeout", "5", "--wait-port"]) == 0
        assert board.plugged
    for d in drives:
        d.stop()
    out = " ".join(capsys.readouterr().out.split())
    assert "the board rebooted" in out and "serial port back" in out
    assert drives[0].image == image
    (event,) = history("usb_flash")
    assert (event["device_id"], event["result"]) == ("E66138935F1B2C3D", "ok")


def test_bad_uf2_is_refused_in_one_line_and_not_recorded(site, capsys):
    drive = make_drive(site / "media" / "RPI-RP2")
    (site / "bad.uf2").write_bytes(uf2.build_uf2(b"x" * 600, 0x10000000, "rp2350"))
    assert main(["usb", "flash", str(site / "bad.uf2"), "--drive", str(drive)]) == 2
    err = capsys.readouterr().err
    assert "is for rp2350, but the board is rp2040" in err and err.strip().count("\n") == 0
    assert history("usb_flash") == []
    assert main(["usb", "flash", str(site / "missing.uf2")]) == 2


def test_failed_push_is_recorded(site, capsys):
    (site / "app").mkdir()
    (site / "app" / "main.py").write_text("print(1)\n")
    assert main(["usb", "push", str(site / "app"), "--port", str(site / "ports" / "pico-NOPE")]) == 1
    assert "cannot open the serial port" in capsys.readouterr().err
    (event,) = history("usb_push")
    assert event["result"] == "failed" and "cannot open" in event["detail"]


def test_log_forwards_heartbeats_to_the_hub(site, capsys):
    with pico(site, app=True, version="1.3.0") as board:
        assert main(["usb", "log", "--port", board.port, "--seconds", "1"]) == 0
    beats = [b for p, b in Hub.posts if p == "/api/v1/devices/pico-bench-7/heartbeat"]
    assert len(beats) >= 3 and beats[0]["version"] == "1.3.0" and beats[0]["mem_free"] > 0
    assert '"type": "heartbeat"' in capsys.readouterr().out


def test_a_damaged_release_is_bad_input_for_push_and_flash(site, capsys):
    """A truncated or altered artifact is a wrong file given: exit 2, one line, nothing recorded."""
    (site / "app").mkdir()
    (site / "app" / "main.py").write_text("print(1)\n")
    release.build("pico", "1.0.0", site / "app", site / "rel-tar")
    (site / "fw.uf2").write_bytes(uf2.build_uf2(b"\x00" * 1024, 0x10000000, "rp2040"))
    release.build("pico", "1.0.1", site / "fw.uf2", site / "rel-uf2")
    for rel in (site / "rel-tar", site / "rel-uf2"):
        artifact = next(p for p in rel.iterdir() if p.name != "meta.json")
        data = bytearray(artifact.read_bytes())
        data[-1] ^= 0xFF
        artifact.write_bytes(bytes(data))
    assert main(["usb", "push", str(site / "rel-tar"), "--port", str(site / "ports" / "pico-X")]) == 2
    assert "sha256 does not match" in capsys.readouterr().err
    assert main(["usb", "flash", str(site / "rel-uf2"), "--drive", str(make_drive(site / "media" / "RPI-RP2"))]) == 2
    err = capsys.readouterr().err
    assert "sha256 does not match" in err and err.strip().count("\n") == 0
    assert history("usb_push") == history("usb_flash") == []


def test_flash_to_a_drive_says_at_once_the_board_rebooted(site, capsys):
    """Firmware without USB serial brings no port back: the flash ends when the drive goes."""
    (site / "fw.uf2").write_bytes(uf2.build_uf2(os.urandom(3000), 0x10000000, "rp2040"))
    with VirtualDrive(site / "media" / "RPI-RP2") as drive:
        t0 = time.monotonic()
        assert main(["usb", "flash", str(site / "fw.uf2"), "--drive", str(drive.path), "--timeout", "8"]) == 0
        took = time.monotonic() - t0
    out = " ".join(capsys.readouterr().out.split())
    assert "the board rebooted" in out and "serial port" not in out and took < 4
    with VirtualDrive(site / "media" / "RPI-RP2") as drive:
        assert main(["usb", "flash", str(site / "fw.uf2"), "--drive", str(drive.path), "--timeout", "1",
                     "--wait-port"]) == 1
    assert "the board rebooted but no serial port came back within 1s" in capsys.readouterr().err


def test_flash_says_what_of_a_universal_image_it_skipped(site, capsys):
    rp2040 = uf2.build_uf2(os.urandom(1024), 0x10000000, "rp2040")
    rp2350 = uf2.build_uf2(os.urandom(2048), 0x10000000, "rp2350")
    (site / "universal.uf2").write_bytes(rp2350 + rp2040)
    with VirtualDrive(site / "media" / "RPI-RP2") as drive:
        assert main(["usb", "flash", str(site / "universal.uf2"), "--drive", str(drive.path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2048 bytes, rp2040; skipped 8 blocks of rp2350-arm-s (0xe48bff59)" in out
    (event,) = history("usb_flash")
    assert "skipped 8 blocks of rp2350-arm-s" in event["detail"]
