"""UF2 images: validate one for a board family, and build one (for tests and the demo).

A UF2 file is a run of 512-byte blocks: two start magics, flags, target address, payload size,
block number, block count, family id, 476 bytes of data (of which RP2 boards use 256), end magic.
https://github.com/microsoft/uf2
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

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

# Family ids from the UF2 registry (uf2families.json). RP2350 images may start with a one-block
# "absolute" sequence (the RP2350-E10 erratum workaround), which belongs to no family of its own.
FAMILIES: dict[str, tuple[int, ...]] = {
    "rp2040": (0xE48BFF56,),
    "rp2350": (0xE48BFF59, 0xE48BFF5A, 0xE48BFF5B),  # ARM secure, RISC-V, ARM non-secure
}
ABSOLUTE_FAMILY = 0xE48BFF57
FAMILY_OF_ID = {fid: name for name, ids in FAMILIES.items() for fid in ids}


@dataclass(frozen=True)
class UF2Info:
    family: str  # "rp2040" | "rp2350"
    family_id: int
    blocks: int
    payload_bytes: int
    start_addr: int
    end_addr: int  # one past the last byte written


def _family_id(family: str) -> int:
    try:
        return FAMILIES[family][0]
    except KeyError:
        raise BadInput(f"unknown UF2 family {family!r} (expected one of {', '.join(FAMILIES)})") from None


def validate(data: bytes, family: str | None = None) -> UF2Info:
    """Check every block of a UF2 image; `family` given, refuse an image for another one."""
    if family is not None:
        _family_id(family)
    if not data:
        raise BadInput("UF2 image is empty")
    if len(data) % BLOCK_SIZE:
        raise BadInput(f"UF2 image is {len(data)} bytes, not a whole number of 512-byte blocks: truncated?")
    sequences: dict[int, tuple[int, int]] = {}  # family id -> (next block number, block count)
    payload = 0
    lo, hi = None, 0
    for i in range(len(data) // BLOCK_SIZE):
        off = i * BLOCK_SIZE
        m0, m1, flags, addr, size, block_no, num_blocks, fid = HEADER.unpack_from(data, off)
        (end,) = struct.unpack_from("<I", data, off + BLOCK_SIZE - 4)
        if m0 != MAGIC_START0 or m1 != MAGIC_START1 or end != MAGIC_END:
            raise BadInput(f"UF2 block {i}: bad magic number: not a UF2 image or damaged")
        if not flags & FLAG_FAMILY_ID:
            raise BadInput(f"UF2 block {i}: no family id (flag 0x2000 unset); RP2 boards need one")
        if fid != ABSOLUTE_FAMILY and fid not in FAMILY_OF_ID:
            raise BadInput(f"UF2 block {i}: family id 0x{fid:08x} is not an RP2040 or RP2350 family")
        if size != PAYLOAD_SIZE:
            raise BadInput(f"UF2 block {i}: payload size {size}, RP2 boards take {PAYLOAD_SIZE}")
        if addr % PAYLOAD_SIZE:
            raise BadInput(f"UF2 block {i}: target address 0x{addr:08x} is not 256-byte aligned")
        expected, count = sequences.get(fid, (0, num_blocks))
        if num_blocks != count or num_blocks == 0:
            raise BadInput(f"UF2 block {i}: block count {num_blocks} differs from the image's {count}")
        if block_no != expected:
            raise BadInput(f"UF2 block {i}: block number {block_no}, expected {expected}: blocks out of order or missing")
        sequences[fid] = (expected + 1, count)
        if fid != ABSOLUTE_FAMILY and not flags & FLAG_NOT_MAIN_FLASH:
            payload += size
            lo = addr if lo is None else min(lo, addr)
            hi = max(hi, addr + size)
    for fid, (seen, count) in sequences.items():
        if seen != count:
            raise BadInput(f"UF2 image ends after {seen} of {count} blocks (family 0x{fid:08x}): truncated")
    families = {FAMILY_OF_ID[fid] for fid in sequences if fid != ABSOLUTE_FAMILY}
    if len(families) != 1:
        raise BadInput("UF2 image holds no RP2040/RP2350 blocks" if not families
                       else f"UF2 image mixes families: {', '.join(sorted(families))}")
    (image_family,) = families
    if family is not None and image_family != family:
        raise BadInput(f"UF2 image is for {image_family}, but the board is {family}: refusing to flash it")
    fid = next(f for f in sequences if FAMILY_OF_ID.get(f) == image_family)
    return UF2Info(image_family, fid, len(data) // BLOCK_SIZE, payload, lo or 0, hi)


def payload_of(data: bytes) -> dict[int, bytes]:
    """The main-flash payload of a valid image, by target address (what the board would write)."""
    out: dict[int, bytes] = {}
    for off in range(0, len(data), BLOCK_SIZE):
        _m0, _m1, flags, addr, size, _n, _c, fid = HEADER.unpack_from(data, off)
        if fid != ABSOLUTE_FAMILY and not flags & FLAG_NOT_MAIN_FLASH:
            out[addr] = data[off + 32: off + 32 + size]
    return out


def build_uf2(payload: bytes, base_addr: int, family: str) -> bytes:
    """A UF2 image writing `payload` (padded with 0xFF to 256 bytes) from `base_addr`."""
    fid = _family_id(family)
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
