"""Move file bytes over a board's raw REPL in few, large commands.

mpremote's fs_writefile sends `f.write(b'…')` per 256 bytes by default: the board parses the bytes'
repr (up to four characters a byte) and every command costs a round trip. Here a file goes as
base64 text (4 characters per 3 bytes, decoded by `binascii.a2b_base64`), each piece compressed with
zlib first when the board has MicroPython's `deflate` module and that makes it smaller, several
pieces of a file in one command of at most BATCH characters. Hashes of many files come back from
one command too. Each piece and each command stays small next to a Pico's heap (about 190 KB free on
an RP2040): a command is at most BATCH characters of source, a piece at most PIECE bytes, and
decompression uses a 4 KB window.
"""

from __future__ import annotations

import ast
import binascii
import zlib
from typing import Callable

from mpremote.transport_serial import SerialTransport

PIECE = 8 * 1024  # raw bytes a piece carries at most
BATCH = 16 * 1024  # characters of source in one command at most
WBITS = 12  # a 4 KB window: what the board allocates to inflate a piece
HASH_BATCH = 64 * 1024  # bytes of files hashed by one command (a progress step)

SETUP = """import binascii, io
try:
    import deflate
except ImportError:
    deflate = None
def _pw(p, d, z, a):
    d = binascii.a2b_base64(d)
    if z:
        d = deflate.DeflateIO(io.BytesIO(d), deflate.ZLIB).read()
    with open(p, 'ab' if a else 'wb') as f:
        f.write(d)
def _ph(p):
    import hashlib
    h, b = hashlib.sha256(), bytearray(1024)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(memoryview(b)[:n])
    return binascii.hexlify(h.digest())
print(deflate is not None)
"""


def prepare(t: SerialTransport) -> bool:
    """Define the board-side helpers; whether the board can inflate (has `deflate`)."""
    return t.exec(SETUP).strip() == b"True"


def _pieces(path: str, data: bytes, inflate: bool) -> list[tuple[str, int]]:
    """The `_pw` calls that write `data` to `path`, with the raw bytes each one carries."""
    calls = []
    for at in range(0, max(len(data), 1), PIECE):
        raw = data[at: at + PIECE]
        packed, z = raw, 0
        if inflate and len(raw) > 256:
            squeezer = zlib.compressobj(9, zlib.DEFLATED, WBITS)
            small = squeezer.compress(raw) + squeezer.flush()
            if len(small) < len(raw) * 0.9:
                packed, z = small, 1
        text = binascii.b2a_base64(packed, newline=False).decode()
        calls.append((f"_pw({path!r},{text!r},{z},{1 if at else 0})", len(raw)))
    return calls


def write_file(t: SerialTransport, path: str, data: bytes, inflate: bool, on_bytes: Callable[[int], None]) -> None:
    """Write `data` to `path` on the board, in commands of at most BATCH characters; `on_bytes`
    hears the raw bytes done after every command."""
    batch: list[str] = []
    size, carried = 0, 0
    for call, raw in _pieces(path, data, inflate):
        if batch and size + len(call) > BATCH:
            t.exec("\n".join(batch))
            on_bytes(carried)
            batch, size, carried = [], 0, 0
        batch.append(call)
        size += len(call) + 1
        carried += raw
    t.exec("\n".join(batch))
    on_bytes(carried)


def hashes(t: SerialTransport, files: list[tuple[str, int]], on_done: Callable[[list[str], int], None]) -> dict[str, bytes]:
    """sha256 of each (board path, size) as the board computes it; `on_done(paths, bytes)` after each command."""
    out: dict[str, bytes] = {}
    group: list[tuple[str, int]] = []

    def ask() -> None:
        if not group:
            return
        paths = [p for p, _ in group]
        answer = ast.literal_eval(t.exec(f"print([_ph(p) for p in {paths!r}])").decode().strip())
        out.update({p: binascii.unhexlify(h) for p, h in zip(paths, answer, strict=False)})
        on_done(paths, sum(n for _, n in group))
        group.clear()

    for path, n in files:
        if group and sum(k for _, k in group) + n > HASH_BATCH:
            ask()
        group.append((path, n))
    ask()
    return out
