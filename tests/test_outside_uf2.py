"""UF2 images against an encoder and a reader written here from the UF2 specification alone.

The encoder makes what other tools write: comment blocks (not-main-flash, 476-byte payloads) with
their own numbering, file-container blocks without a family id, MD5 and extension-tag flags. Each
image is either flashed, landing exactly the payload the spec's reader says an RP2 boot ROM writes
(it writes only blocks of its family with the family flag, not marked not-main-flash, of 256 bytes),
or refused naming why. What picoctl writes (build_uf2, a pico release, the blocks it copies onto a
BOOTSEL drive) must be an image the reader accepts.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from picoctl import release
from picoctl.errors import BadInput
from picoctl.progress import Progress
from picoctl.sim.bootsel_drive import VirtualDrive
from picoctl.usb import uf2
from picoctl.usb.uf2flash import flash_uf2

START0, START1, END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
NOT_MAIN_FLASH, FILE_CONTAINER, FAMILY_PRESENT, MD5_PRESENT, EXTENSION_TAGS = 0x1, 0x1000, 0x2000, 0x4000, 0x8000
RP2040, RP2350_ARM_S = 0xE48BFF56, 0xE48BFF59
FLASH = 0x10000000
APP = os.urandom(7 * 256 + 17)


@dataclass
class Block:
    flags: int
    addr: int
    data: bytes  # the payload (payloadSize bytes)
    number: int
    count: int
    field: int  # familyID with FAMILY_PRESENT, else fileSize (or 0)
    tail: bytes = b""  # what follows the payload in the 476-byte data area (MD5, extension tags)

    def pack(self) -> bytes:
        area = (self.data + self.tail).ljust(476, b"\0")
        assert len(area) == 476
        return struct.pack("<8I", START0, START1, self.flags, self.addr, len(self.data), self.number, self.count,
                           self.field) + area + struct.pack("<I", END)


def encode(payload: bytes, base: int, family: int, extra_flags: int = 0) -> list[Block]:
    """A flash image as the spec's uf2conv writes it: 256 bytes a block, numbered 0..n-1."""
    pages = [payload[i: i + 256].ljust(256, b"\xff") for i in range(0, len(payload), 256)]
    out = []
    for n, page in enumerate(pages):
        tail = b""
        if extra_flags & MD5_PRESENT:  # the region's start, length and MD5, at the end of the data area
            tail = b"\0" * (476 - 256 - 24) + struct.pack("<II", base + 256 * n, 256) + hashlib.md5(page).digest()
        elif extra_flags & EXTENSION_TAGS:  # a tag of 4-byte header (size, type), padded to 4 bytes, then a 0 tag
            text = b"picoctl-test"
            tail = struct.pack("<I", (len(text) + 4) | (0x650D9D << 8)) + text + b"\0" * (-len(text) % 4) + b"\0" * 4
        out.append(Block(FAMILY_PRESENT | extra_flags, base + 256 * n, page, n, len(pages), family, tail))
    return out


def comments(text: bytes, family: int, numbered_from: int = 0, count: int | None = None) -> list[Block]:
    """Embedded source as MakeCode writes it: not-main-flash blocks of 476 bytes."""
    chunks = [text[i: i + 476] for i in range(0, len(text), 476)]
    return [Block(FAMILY_PRESENT | NOT_MAIN_FLASH, 0, c, numbered_from + n, count or len(chunks), family)
            for n, c in enumerate(chunks)]


def container(name: bytes, content: bytes) -> list[Block]:
    """A file carried in the UF2 (flag 0x1000): fileSize in the family field, the name after the data."""
    chunks = [content[i: i + 256] for i in range(0, len(content), 256)]
    return [Block(FILE_CONTAINER, 256 * n, c, n, len(chunks), len(content), name + b"\0") for n, c in enumerate(chunks)]


def join(blocks: list[Block]) -> bytes:
    return b"".join(b.pack() for b in blocks)


def rom_reads(data: bytes, family: int) -> dict[int, bytes]:
    """What an RP2 boot ROM writes from `data`, read by the spec alone; AssertionError if it never completes."""
    assert data and len(data) % 512 == 0, "not whole 512-byte blocks"
    taken: dict[int, tuple[int, bytes]] = {}
    count = None
    for off in range(0, len(data), 512):
        m0, m1, flags, addr, size, number, total, field = struct.unpack_from("<8I", data, off)
        (end,) = struct.unpack_from("<I", data, off + 508)
        assert (m0, m1, end) == (START0, START1, END), f"bad magic at block {off // 512}"
        if not flags & FAMILY_PRESENT or field != family or flags & NOT_MAIN_FLASH or size != 256 or addr % 256:
            continue
        count = count if count is not None else total
        assert total == count and number < total, f"block {off // 512}: numbering"
        taken.setdefault(number, (addr, data[off + 32: off + 32 + 256]))
    assert count is not None and len(taken) == count, f"{len(taken)} of {count} blocks: the board never reboots"
    return {addr: page for addr, page in taken.values()}


def flash(tmp_path: Path, data: bytes, family: str = "rp2040") -> tuple[VirtualDrive, uf2.UF2Info]:
    with VirtualDrive(tmp_path / "drive", family) as drive:
        result = flash_uf2(data, drive.path, Progress("flash"))
    assert drive.image is not None
    return drive, result.info


def _flat(pages: dict[int, bytes]) -> bytes:
    return b"".join(pages[a] for a in sorted(pages))


# --- what picoctl writes, read back by the spec's reader -----------------------------------------

@pytest.mark.parametrize("family,fid", [("rp2040", RP2040), ("rp2350", RP2350_ARM_S)])
def test_what_build_uf2_writes_the_specs_reader_accepts(family: str, fid: int) -> None:
    data = uf2.build_uf2(APP, FLASH, family)
    assert _flat(rom_reads(data, fid))[: len(APP)] == APP


def test_a_pico_release_of_a_uf2_keeps_the_image_byte_for_byte(tmp_path: Path) -> None:
    image = join(encode(APP, FLASH, RP2040) + comments(b"# source\n" * 100, RP2040))
    (tmp_path / "fw.uf2").write_bytes(image)
    meta = release.build("pico", "1.0.0", tmp_path / "fw.uf2", tmp_path / "rel")
    assert (tmp_path / "rel" / meta["artifact"]).read_bytes() == image
    assert release.verify(tmp_path / "rel", None)["format"] == "uf2"


# --- what other tools write, flashed as the boot ROM would ---------------------------------------

ACCEPTED = {
    "plain": lambda: encode(APP, FLASH, RP2040),
    "comments-after": lambda: encode(APP, FLASH, RP2040) + comments(os.urandom(2000), RP2040),
    "comments-first": lambda: comments(os.urandom(1000), RP2040) + encode(APP, FLASH, RP2040),
    "file-container": lambda: encode(APP, FLASH, RP2040) + container(b"config.txt", os.urandom(700)),
    "md5": lambda: encode(APP, FLASH, RP2040, MD5_PRESENT),
    "extension-tags": lambda: encode(APP, FLASH, RP2040, EXTENSION_TAGS),
    "reversed": lambda: list(reversed(encode(APP, FLASH, RP2040))),
    "everything": lambda: (container(b"a", b"x" * 300) + list(reversed(encode(APP, FLASH, RP2040, MD5_PRESENT)))
                           + comments(b"y" * 900, RP2040) + encode(os.urandom(512), FLASH, RP2350_ARM_S)),
}


@pytest.mark.parametrize("case", ACCEPTED)
def test_an_image_another_tool_wrote_flashes_what_the_rom_writes(tmp_path: Path, case: str) -> None:
    data = join(ACCEPTED[case]())
    want = rom_reads(data, RP2040)
    drive, info = flash(tmp_path, data)
    assert drive.image is not None and rom_reads(drive.image, RP2040) == want  # what landed, read by the spec
    assert _flat(want)[: len(APP)] == APP
    assert info.blocks == len(want)


def test_the_note_says_what_the_board_does_not_write() -> None:
    data = join(encode(APP, FLASH, RP2040) + comments(b"z" * 952, RP2040) + container(b"f", b"q" * 300))
    assert uf2.validate(data, "rp2040").note == "skipped 2 blocks without a family id, 2 not-main-flash blocks"


REFUSED = {
    # the comments take numbers of the image's own count: the ROM ignores them and never sees it complete
    "comments-in-the-count": (lambda: [Block(b.flags, b.addr, b.data, b.number, 9, b.field)
                                       for b in encode(APP, FLASH, RP2040)] + comments(b"c" * 476, RP2040, 8, 9),
                              "block 8 is missing: block 8 of the file has its number but is marked not-main-flash"),
    "payload-476": (lambda: [Block(FAMILY_PRESENT, FLASH, os.urandom(476), 0, 1, RP2040)], "payload size 476"),
    "payload-128": (lambda: [Block(FAMILY_PRESENT, FLASH, os.urandom(128), 0, 1, RP2040)], "payload size 128"),
    "only-comments": (lambda: comments(b"c" * 2000, RP2040), "marked not-main-flash"),
    "no-family-at-all": (lambda: container(b"f", b"q" * 600), "no block has a family id"),
    "unaligned": (lambda: [Block(FAMILY_PRESENT, FLASH + 4, os.urandom(256), 0, 1, RP2040)], "not 256-byte aligned"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_an_image_the_rom_would_never_finish_is_refused_in_words(tmp_path: Path, case: str) -> None:
    make, message = REFUSED[case]
    data = join(make())
    with pytest.raises(AssertionError):
        rom_reads(data, RP2040)  # the spec's reader agrees the board would not flash it
    with pytest.raises(BadInput, match=message):
        flash(tmp_path, data)
    assert not list((tmp_path / "drive").glob("*.UF2"))


def test_a_bad_magic_in_the_middle_is_refused_before_anything_is_copied(tmp_path: Path) -> None:
    blocks = [b.pack() for b in encode(APP, FLASH, RP2040)]
    blocks[3] = b"\0" * 512
    with pytest.raises(BadInput, match="UF2 block 3: bad magic"):
        flash(tmp_path, b"".join(blocks))
    assert not list((tmp_path / "drive").glob("*.UF2"))
