"""UF2 validation and building, and flashing onto a virtual BOOTSEL drive."""

from __future__ import annotations

import os
import struct
import threading

import pytest

from picoctl.errors import BadInput, PicoctlError
from picoctl.progress import Progress
from picoctl.sim.bootsel_drive import VirtualDrive, make_drive
from picoctl.usb import uf2
from picoctl.usb.bootsel import find_drives, read_info
from picoctl.usb.uf2flash import flash_uf2

BASE = 0x10000000
PAYLOAD = os.urandom(10 * 256 + 100)


def _flash_contents(image: dict[int, bytes]) -> bytes:
    return b"".join(image[a] for a in sorted(image))


def test_build_and_validate_roundtrip():
    data = uf2.build_uf2(PAYLOAD, BASE, "rp2040")
    info = uf2.validate(data, "rp2040")
    assert (info.family, info.blocks, info.start_addr) == ("rp2040", 11, BASE)
    assert info.end_addr == BASE + 11 * 256
    assert _flash_contents(uf2.payload_of(data))[: len(PAYLOAD)] == PAYLOAD
    assert uf2.validate(uf2.build_uf2(b"x", BASE, "rp2350")).family == "rp2350"


def test_rp2350_image_with_absolute_block_is_accepted():
    absolute = struct.pack("<8I", uf2.MAGIC_START0, uf2.MAGIC_START1, uf2.FLAG_FAMILY_ID, 0x10FFFF00, 256, 0, 1,
                           uf2.ABSOLUTE_FAMILY) + b"\xef" * 476 + struct.pack("<I", uf2.MAGIC_END)
    data = absolute + uf2.build_uf2(PAYLOAD, BASE, "rp2350")
    info = uf2.validate(data, "rp2350")
    assert info.family == "rp2350" and info.start_addr == BASE


def _blocks(data: bytes) -> list[bytearray]:
    return [bytearray(data[i: i + 512]) for i in range(0, len(data), 512)]


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[0].__setitem__(slice(0, 4), b"NOPE"), "bad magic"),
    (lambda b: b[3].__setitem__(slice(508, 512), b"\0\0\0\0"), "bad magic"),
    (lambda b: b.__setitem__(slice(2, 4), [b[3], b[2]]), "out of order"),
    (lambda b: b.pop(4), "out of order"),
    (lambda b: b.pop(), "truncated"),
    (lambda b: b[1].__setitem__(slice(16, 20), struct.pack("<I", 476)), "payload size 476"),
    (lambda b: b[1].__setitem__(slice(28, 32), struct.pack("<I", 0xADA52840)), "not an RP2040 or RP2350"),
    (lambda b: b[1].__setitem__(slice(8, 12), struct.pack("<I", 0)), "no family id"),
])
def test_broken_images_are_refused(damage, message):
    blocks = _blocks(uf2.build_uf2(PAYLOAD, BASE, "rp2040"))
    damage(blocks)
    with pytest.raises(BadInput, match=message):
        uf2.validate(b"".join(blocks))


def test_partial_block_and_empty_and_wrong_family():
    data = uf2.build_uf2(PAYLOAD, BASE, "rp2040")
    with pytest.raises(BadInput, match="truncated"):
        uf2.validate(data[:-100])
    with pytest.raises(BadInput, match="empty"):
        uf2.validate(b"")
    with pytest.raises(BadInput, match="is for rp2040, but the board is rp2350"):
        uf2.validate(data, "rp2350")
    with pytest.raises(BadInput, match="unknown UF2 family"):
        uf2.validate(data, "esp32")
    with pytest.raises(BadInput, match="aligned"):
        uf2.build_uf2(b"x", BASE + 1, "rp2040")


def test_drive_info_and_discovery(tmp_path):
    make_drive(tmp_path / "media" / "op" / "RPI-RP2")
    make_drive(tmp_path / "media" / "RP2350", "rp2350")
    (tmp_path / "media" / "USBSTICK").mkdir()
    drives = {d.path.name: d for d in find_drives([tmp_path / "media", tmp_path / "nowhere"])}
    assert set(drives) == {"RPI-RP2", "RP2350"}
    assert drives["RPI-RP2"].family == "rp2040" and drives["RPI-RP2"].board_id == "RPI-RP2"
    assert drives["RP2350"].family == "rp2350"
    with pytest.raises(BadInput, match="not a BOOTSEL drive"):
        read_info(tmp_path / "media" / "USBSTICK")


def test_flash_lands_bytes_and_waits_for_reboot(tmp_path):
    events = []
    data = uf2.build_uf2(PAYLOAD, BASE, "rp2040")
    with VirtualDrive(tmp_path / "RPI-RP2") as drive:
        result = flash_uf2(data, drive.path, Progress("flash", events.append))
        assert drive.image == data
        assert _flash_contents(drive.flashed)[: len(PAYLOAD)] == PAYLOAD
    assert not (tmp_path / "RPI-RP2").exists()
    assert result.bytes_written == len(data) and result.info.blocks == 11
    assert [e.state for e in events][0] == "started" and events[-1].state == "finished"
    assert any(e.phase == "reboot" for e in events)
    assert max(e.done for e in events) == len(data)


def test_flash_from_file_in_chunks(tmp_path):
    big = os.urandom(300 * 1024)
    path = tmp_path / "fw.uf2"
    path.write_bytes(uf2.build_uf2(big, BASE, "rp2350"))
    events = []
    with VirtualDrive(tmp_path / "RP2350", "rp2350") as drive:
        flash_uf2(path, drive.path, Progress("flash", events.append))
    assert _flash_contents(drive.flashed)[: len(big)] == big
    assert sum(1 for e in events if e.state == "running" and e.phase == "copy") >= 9  # 64 KiB chunks


@pytest.mark.parametrize("data, message", [
    (uf2.build_uf2(PAYLOAD, BASE, "rp2350"), "is for rp2350, but the board is rp2040"),
    (uf2.build_uf2(PAYLOAD, BASE, "rp2040")[:-512], "truncated"),
    (b"\0" * 1024, "bad magic"),
])
def test_bad_image_is_refused_before_touching_the_drive(tmp_path, data, message):
    drive = make_drive(tmp_path / "RPI-RP2")
    with pytest.raises(BadInput, match=message):
        flash_uf2(data, drive, Progress("flash"))
    assert sorted(p.name for p in drive.iterdir()) == ["INDEX.HTM", "INFO_UF2.TXT"]


def test_flash_refuses_non_drive_and_reports_no_reboot(tmp_path):
    with pytest.raises(BadInput, match="not a BOOTSEL drive"):
        flash_uf2(uf2.build_uf2(PAYLOAD, BASE, "rp2040"), tmp_path, Progress("flash"))
    drive = make_drive(tmp_path / "STUCK")  # no watcher: the "board" never reboots
    events = []
    with pytest.raises(PicoctlError, match="did not reboot within 0.3s"):
        flash_uf2(uf2.build_uf2(PAYLOAD, BASE, "rp2040"), drive, Progress("flash", events.append), gone_timeout_s=0.3)
    assert events[-1].state == "failed" and "did not reboot" in events[-1].reason


def test_flash_callback_can_plug_the_board_back(tmp_path):
    back = threading.Event()
    with VirtualDrive(tmp_path / "RPI-RP2", on_flashed=lambda _: back.set()):
        flash_uf2(uf2.build_uf2(PAYLOAD, BASE, "rp2040"), tmp_path / "RPI-RP2", Progress("flash"))
    assert back.wait(1)
