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
    (lambda b: b.pop(4), "block 4 is missing"),
    (lambda b: b.pop(), "block 10 is missing: truncated"),
    (lambda b: b[1].__setitem__(slice(16, 20), struct.pack("<I", 476)), "payload size 476"),
    (lambda b: b[1].__setitem__(slice(28, 32), struct.pack("<I", 0xADA52840)), "block 1 is missing"),
    (lambda b: b[2].__setitem__(slice(24, 28), struct.pack("<I", 12)), "block count 12 differs"),
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
], ids=["other-family", "truncated", "zeros"])
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


# -- images made independently of picoctl.usb.uf2, from the UF2 specification ----------------------
RP2040, RP2350_ARM_S, RP2350_RISCV, ESP32 = 0xE48BFF56, 0xE48BFF59, 0xE48BFF5A, 0x1C5F21B0


def spec_blocks(payload: bytes, base: int, family_id: int) -> list[bytes]:
    """uf2conv's way: 256 bytes a block, numbered 0..n-1, the family id in the fileSize field."""
    pages = [payload[i: i + 256].ljust(256, b"\xff") for i in range(0, len(payload), 256)]
    return [struct.pack("<8I", 0x0A324655, 0x9E5D5157, 0x2000, base + 256 * n, 256, n, len(pages), family_id)
            + page + b"\x00" * (476 - 256) + struct.pack("<I", 0x0AB16F30) for n, page in enumerate(pages)]


A, B, C = (os.urandom(5 * 256) for _ in range(3))
UNIVERSAL = b"".join(spec_blocks(A, BASE, RP2040) + spec_blocks(B, BASE, RP2350_ARM_S)
                     + spec_blocks(C, BASE, RP2350_RISCV))


@pytest.mark.parametrize("family, want, skipped", [
    ("rp2040", A, "skipped 5 blocks of rp2350-arm-s (0xe48bff59), 5 blocks of rp2350-riscv (0xe48bff5a)"),
    ("rp2350", B, "skipped 5 blocks of rp2040 (0xe48bff56), 5 blocks of rp2350-riscv (0xe48bff5a)"),
], ids=["rp2040", "rp2350"])
def test_a_universal_image_flashes_the_boards_own_family(tmp_path, family, want, skipped):
    with VirtualDrive(tmp_path / "drive", family) as drive:
        result = flash_uf2(UNIVERSAL, drive.path, Progress("flash"))
    assert _flash_contents(drive.flashed) == want and result.info.note == skipped
    assert result.bytes_written == 5 * 512  # only the blocks this board writes were copied


def test_blocks_of_another_family_inside_an_image_are_skipped(tmp_path):
    own = spec_blocks(A, BASE, RP2040)
    data = b"".join(own[:2] + spec_blocks(b"\x01" * 512, 0x0, ESP32) + own[2:])
    info = uf2.validate(data, "rp2040")
    assert info.blocks == 5 and info.note == "skipped 2 blocks of esp32 (0x1c5f21b0)"
    with pytest.raises(BadInput, match=r"holds no blocks for rp2040 \(only esp32"):
        uf2.validate(b"".join(spec_blocks(A, 0, ESP32)), "rp2040")


def test_blocks_in_any_order_and_repeated_flash_as_the_boot_rom_does(tmp_path):
    own = spec_blocks(A, BASE, RP2040)
    other = bytearray(own[3])
    other[32:288] = b"\x00" * 256  # a later copy of block 3 with other data: the first one is written
    data = b"".join([own[4], own[1], own[3], own[0], own[1], bytes(other), own[2]])
    with VirtualDrive(tmp_path / "drive") as drive:
        result = flash_uf2(data, drive.path, Progress("flash"))
    assert _flash_contents(drive.flashed) == A
    assert result.info.blocks == 5 and result.info.note == "2 repeated blocks written once"
