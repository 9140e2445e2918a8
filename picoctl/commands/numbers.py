"""Argument types for the numbers operators type: ASCII digits only, in range, finite; argparse turns
their refusal into a usage error (exit 2)."""

from __future__ import annotations

import argparse
import math

LARGEST = 2**63 - 1  # the hub keeps counts and ids as 64-bit integers


def count(text: str) -> int:
    """A whole number from 1 to 2**63-1."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= LARGEST:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {LARGEST}, got {text!r}")
    return int(text)


def seconds(text: str) -> float:
    """A finite, non-negative number of seconds."""
    try:
        value = float(text) if text.isascii() else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds (0 or more), got {text!r}")
    return value
