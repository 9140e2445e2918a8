"""Readings of the machine the app runs on; a value the machine does not offer is null."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
UPTIME = Path("/proc/uptime")


def cpu_temp_c() -> float | None:
    try:
        return int(THERMAL.read_text()) / 1000
    except (OSError, ValueError):
        return None


def uptime_s() -> float | None:
    try:
        return float(UPTIME.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_all() -> dict:
    disk = shutil.disk_usage("/")
    return {
        "at": time.time(),
        "cpu_temp_c": cpu_temp_c(),
        "load_1m": os.getloadavg()[0],
        "uptime_s": uptime_s(),
        "disk_free_bytes": disk.free,
    }
