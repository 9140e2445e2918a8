"""Heap ballast for measuring MicroPython code in a small heap (the agent's benchmark, the Ed25519 test)."""

from __future__ import annotations


def ballast(free: int) -> str:
    """MicroPython source that takes the heap but about `free` bytes (after a collection) with blocks,
    largest first, held in the global `ballast`: what runs after it has `free` bytes to work in."""
    return f"""
import gc
ballast = [None] * 64
_i, _n = 0, 32768
while _n >= 64 and _i < 64:
    gc.collect()
    if gc.mem_free() - _n < {free}:
        _n //= 2
        continue
    try:
        ballast[_i] = bytearray(_n - 16)
        _i += 1
    except MemoryError:
        _n //= 2
gc.collect()
"""
