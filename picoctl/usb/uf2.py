"""UF2 images: check one for a board family, take the blocks that board would flash, and build one.

A UF2 file is a run of 512-byte blocks: two start magics, flags, target address, payload size,
block number, block count, family id, 476 bytes of data (of which RP2 boards use 256), end magic.
https://github.com/microsoft/uf2

As the specification and the RP2 boot ROMs have it: a block of another family is disregarded whole
(its number and count too), so images for several families concatenated (RP2040 + RP2350
"universal" images) flash the board's own; so is a block without a family id (a file container,
say) and one marked not-main-flash (a comment, embedded source); blocks may come in any order and
more than once (the first of each number is the one written); the image is complete once every
number 0..count-1 of the board's family has come in blocks the ROM writes. An RP2350 takes the
first of its families (ARM-S, RISC-V, ARM-NS) met in the file, and the one-block "absolute"
sequence (the E10 erratum workaround) that may open it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import BadInput

BLOCK_SIZE = 512
PAYLOAD_SIZE = 256
MAGIC_START0 = 0x0A324655
MAGIC_START1 = 0x9E5D5157
MAGIC_END = 0x0AB16F30
FLAG_NOT_MAIN_FLASH = 0x00000001
FLAG_FAMILY_ID = 0x00002000
HEADER = struct.Struct("<8I")
DATA_AREA = 476

# Family ids from the UF2 registry (uf2families.json).
FAMILIES: dict[str, tuple[int, ...]] = {
    "rp2040": (0xE48BFF56,),
    "rp2350": (0xE48BFF59, 0xE48BFF5A, 0xE48BFF5B),  # ARM secure, RISC-V, ARM non-secure
}
ABSOLUTE_FAMILY = 0xE48BFF57
FAMILY_OF_ID = {fid: name for name, ids in FAMILIES.items() for fid in ids}
FAMILY_NAMES = {0xE48BFF56: "rp2040", 0xE48BFF57: "absolute", 0xE48BFF58: "data", 0xE48BFF59: "rp2350-arm-s",
                0xE48BFF5A: "rp2350-riscv", 0xE48BFF5B: "rp2350-arm-ns", 0x1C5F21B0: "esp32",
                0xBFDD4EEE: "esp32s2", 0xC47E5767: "esp32s3", 0x68ED2B88: "samd21", 0x55114460: "samd51",
                0xADA52840: "nrf52840"}


@dataclass(frozen=True)
class UF2Info:
    family: str  # "rp2040" | "rp2350": the board family the image was taken for
    family_id: int
    blocks: int  # blocks the board writes (its family's, each number once)
    payload_bytes: int
    start_addr: int
    end_addr: int  # one past the last byte written
    skipped: dict[int | None, int] = field(default_factory=dict)  # family id (None: none) -> blocks disregarded
    duplicates: int = 0  # blocks repeating a number already seen (the first one is written)
    not_main_flash: int = 0  # blocks of the family marked not-main-flash, which the boot ROM ignores

    @property
    def note(self) -> str:
        """What of the file the board does not write, in words ("" when nothing)."""
        parts = [f"{n} blocks {'without a family id' if fid is None else 'of ' + family_name(fid)}"
                 for fid, n in sorted(self.skipped.items(), key=lambda kv: kv[0] or 0)]
        if self.not_main_flash:
            parts.append(f"{self.not_main_flash} not-main-flash blocks")
        said = f"skipped {', '.join(parts)}" if parts else ""
        if self.duplicates:
            said += ("; " if said else "") + f"{self.duplicates} repeated blocks written once"
        return said


def family_name(fid: int | None) -> str:
    if fid is None:
        return "no family id"
    return f"{FAMILY_NAMES[fid]} (0x{fid:08x})" if fid in FAMILY_NAMES else f"family 0x{fid:08x}"


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise BadInput(f"unknown UF2 family {family!r} (expected one of {', '.join(FAMILIES)})")


@dataclass(frozen=True)
class _Block:
    index: int  # position in the file
    flags: int
    addr: int
    size: int
    number: int
    count: int
    family_id: int | None  # None: the family-id flag is unset (the field holds a file size, or nothing)

    @property
    def written(self) -> bool:
        """Whether an RP2 boot ROM writes this block at all (else it ignores it, number and count too)."""
        return self.family_id is not None and not self.flags & FLAG_NOT_MAIN_FLASH


def _blocks(data: bytes) -> list[_Block]:
    if not data:
        raise BadInput("UF2 image is empty")
    if len(data) % BLOCK_SIZE:
        raise BadInput(f"UF2 image is {len(data)} bytes, not a whole number of 512-byte blocks: truncated?")
    out = []
    for i in range(len(data) // BLOCK_SIZE):
        off = i * BLOCK_SIZE
        m0, m1, flags, addr, size, number, count, fid = HEADER.unpack_from(data, off)
        (end,) = struct.unpack_from("<I", data, off + BLOCK_SIZE - 4)
        if m0 != MAGIC_START0 or m1 != MAGIC_START1 or end != MAGIC_END:
            raise BadInput(f"UF2 block {i}: bad magic number: not a UF2 image or damaged")
        out.append(_Block(i, flags, addr, size, number, count, fid if flags & FLAG_FAMILY_ID else None))
    if not any(b.family_id is not None for b in out):
        raise BadInput("UF2 image: no block has a family id (flag 0x2000); RP2 boards need one")
    return out


def _sequence(blocks: list[_Block], fid: int) -> list[_Block]:
    """The blocks of family `fid` the boot ROM writes: the first of each number, by number; BadInput
    when they cannot all be written or do not all come."""
    mine = [b for b in blocks if b.family_id == fid and b.written]
    count = mine[0].count
    taken: dict[int, _Block] = {}
    for b in mine:
        if b.size != PAYLOAD_SIZE:
            raise BadInput(f"UF2 block {b.index}: payload size {b.size}, RP2 boards take {PAYLOAD_SIZE}")
        if b.addr % PAYLOAD_SIZE:
            raise BadInput(f"UF2 block {b.index}: target address 0x{b.addr:08x} is not 256-byte aligned")
        if b.count != count or count == 0:
            raise BadInput(f"UF2 block {b.index}: block count {b.count} differs from the image's {count} "
                           f"({family_name(fid)})")
        if b.number >= count:
            raise BadInput(f"UF2 block {b.index}: block number {b.number} is past the image's count {count}")
        taken.setdefault(b.number, b)
    missing = [n for n in range(count) if n not in taken]
    if missing:
        raise BadInput(f"UF2 image has {len(taken)} of its {count} blocks ({family_name(fid)}); block {missing[0]} "
                       f"is missing{_ignored_with(blocks, fid, missing[0], count)}")
    return [taken[n] for n in range(count)]


def _ignored_with(blocks: list[_Block], fid: int, number: int, count: int) -> str:
    """Why block `number` of family `fid` is missing when the file has it in a block the ROM ignores."""
    for b in blocks:
        if (b.number, b.count) == (number, count) and b.family_id in (fid, None) and not b.written:
            flag = "has no family id (flag 0x2000)" if b.family_id is None else "is marked not-main-flash (flag 0x1)"
            return (f": block {b.index} of the file has its number but {flag}, which the boot ROM ignores, "
                    "so the board would never see the image complete")
    return ": truncated?"


def _chosen(blocks: list[_Block], family: str | None) -> tuple[str, int]:
    """The board family and family id the image is flashed as."""
    present = [b.family_id for b in blocks]
    rp = [fid for fid in dict.fromkeys(b.family_id for b in blocks if b.written) if fid in FAMILY_OF_ID]
    if family is None:
        if not rp:
            raise BadInput("UF2 image holds no RP2040/RP2350 blocks")
        family = FAMILY_OF_ID[rp[0]]
    for fid in rp:  # the first of the board's families met in the file
        if FAMILY_OF_ID[fid] == family:
            return family, fid
    found = sorted({FAMILY_OF_ID[fid] for fid in rp})
    if found:
        raise BadInput(f"UF2 image is for {', '.join(found)}, but the board is {family}: refusing to flash it")
    others = ", ".join(family_name(f) for f in dict.fromkeys(present))
    if any(f in FAMILY_OF_ID for f in present):
        others += "; its RP2 blocks are all marked not-main-flash, which the boot ROM does not write"
    raise BadInput(f"UF2 image holds no blocks for {family} (only {others})")


def select(data: bytes, family: str | None = None) -> tuple[bytes, UF2Info]:
    """The blocks a board of `family` writes from `data` (as one image, in block order) and what they
    are; BadInput naming the block when the image is damaged or has nothing complete for that family.
    `family` None: check the image for its first RP2 family."""
    if family is not None:
        _check_family(family)
    blocks = _blocks(data)
    family, fid = _chosen(blocks, family)
    keep = _sequence(blocks, fid)
    wanted = {fid}
    if family == "rp2350" and any(b.family_id == ABSOLUTE_FAMILY and b.written for b in blocks):
        keep = _sequence(blocks, ABSOLUTE_FAMILY) + keep
        wanted.add(ABSOLUTE_FAMILY)
    skipped: dict[int | None, int] = {}
    for b in blocks:
        if b.family_id not in wanted:
            skipped[b.family_id] = skipped.get(b.family_id, 0) + 1
    not_main_flash = sum(1 for b in blocks if b.family_id in wanted and not b.written)
    duplicates = sum(1 for b in blocks if b.family_id in wanted and b.written) - len(keep)
    main = [b for b in keep if b.family_id == fid]
    image = b"".join(data[b.index * BLOCK_SIZE: (b.index + 1) * BLOCK_SIZE] for b in keep)
    info = UF2Info(family, fid, len(keep), sum(b.size for b in main), min((b.addr for b in main), default=0),
                   max((b.addr + b.size for b in main), default=0), skipped, duplicates, not_main_flash)
    return image, info


def validate(data: bytes, family: str | None = None) -> UF2Info:
    """Check a UF2 image (see select); what a board of `family` would write of it."""
    return select(data, family)[1]


def payload_of(data: bytes, family: str | None = None) -> dict[int, bytes]:
    """The main-flash payload a board of `family` writes from a valid image, by target address."""
    image, info = select(data, family)
    out: dict[int, bytes] = {}
    for off in range(0, len(image), BLOCK_SIZE):
        _m0, _m1, _flags, addr, size, _n, _c, fid = HEADER.unpack_from(image, off)
        if fid == info.family_id:
            out[addr] = image[off + 32: off + 32 + size]
    return out


def build_uf2(payload: bytes, base_addr: int, family: str) -> bytes:
    """A UF2 image writing `payload` (padded with 0xFF to 256 bytes) from `base_addr`."""
    _check_family(family)
    fid = FAMILIES[family][0]
    if base_addr % PAYLOAD_SIZE:
        raise BadInput(f"base address 0x{base_addr:08x} is not 256-byte aligned")
    if not payload:
        raise BadInput("UF2 payload is empty")
    chunks = [payload[i: i + PAYLOAD_SIZE] for i in range(0, len(payload), PAYLOAD_SIZE)]
    out = bytearray()
    for n, chunk in enumerate(chunks):
        out += HEADER.pack(MAGIC_START0, MAGIC_START1, FLAG_FAMILY_ID, base_addr + n * PAYLOAD_SIZE,
                           PAYLOAD_SIZE, n, len(chunks), fid)
        out += chunk.ljust(PAYLOAD_SIZE, b"\xff").ljust(DATA_AREA, b"\x00")
        out += struct.pack("<I", MAGIC_END)
    return bytes(out)
