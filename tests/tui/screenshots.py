"""`python tests/tui/screenshots.py DIR`: an SVG of every screen, rendered from the recorded demo session
with its fixed clock, at 100x30 (README) — the same path the snapshot tests take at 80x24 and 120x40."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Awaitable, Callable

from picoctl.config import DeviceTypeConfig, FleetConfig
from picoctl.tui.app import PicoctlApp
from picoctl.tui.source import Recording

DEMO = Path(__file__).resolve().parent / "data" / "demo.json"  # test data, which a wheel does not ship
WHY = DEMO.with_name("why.json")  # the demo's canary halted by gh-03's crash (record_why.py)
SIZE = (100, 30)


def demo_app(recording: Path = DEMO, start_mode: str = "fleet") -> PicoctlApp:
    """The app on a recording: its fixed clock, no ticking, the cursor not blinking."""
    os.environ["TZ"] = "UTC"
    source = Recording(recording)
    cfg = FleetConfig()
    cfg.device_types.update({t: DeviceTypeConfig(**v) for t, v in source.data.get("device_types", {}).items()})
    app = PicoctlApp(cfg, source, clock=lambda: source.clock_at, start_mode=start_mode, live_ticks=False)
    app.animation_level = "none"
    return app


@asynccontextmanager
async def settled(recording: Path = DEMO, start_mode: str = "fleet",
                  size: tuple[int, int] = (80, 24)) -> AsyncIterator[tuple[PicoctlApp, Any]]:
    """`demo_app(recording, start_mode)` running under Pilot at `size`, settled: (app, pilot)."""
    app = demo_app(recording, start_mode)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        yield app, pilot


async def settle(pilot: object) -> None:
    """Until the recording is loaded and every worker and refresh is done."""
    app = pilot.app  # type: ignore[attr-defined]
    await asyncio.wait_for(app.loaded.wait(), 5)
    await pilot.pause()  # type: ignore[attr-defined]
    busy = [w for w in app.workers if w.group != "hub"]
    if busy:  # an empty list would mean every worker, the endless stream follower included
        await app.workers.wait_for_complete(busy)
    app.flush()
    await pilot.pause()  # type: ignore[attr-defined]


async def _open_device(pilot: object) -> None:
    await pilot.press("enter")  # type: ignore[attr-defined]


async def _usb_log(pilot: object) -> None:
    await pilot.press("l")  # type: ignore[attr-defined]
    await pilot.pause(0.3)  # type: ignore[attr-defined]


async def _help(pilot: object) -> None:
    await pilot.press("question_mark")  # type: ignore[attr-defined]


async def _canary(pilot: object) -> None:
    await pilot.press("n")  # type: ignore[attr-defined]


async def _confirm_halt(pilot: object) -> None:
    await pilot.press("h")  # type: ignore[attr-defined]


async def _why(pilot: object) -> None:
    await pilot.press("w")  # type: ignore[attr-defined]


Step = Callable[[object], Awaitable[None]] | None
SHOTS: dict[str, tuple[str, Step, Path]] = {
    "fleet": ("fleet", None, DEMO),
    "device": ("fleet", _open_device, DEMO),
    "releases": ("releases", None, DEMO),
    "canary-form": ("releases", _canary, DEMO),
    "confirm-halt": ("releases", _confirm_halt, DEMO),
    "history": ("history", None, DEMO),
    "pi": ("pi", None, DEMO),
    "usb": ("usb", _usb_log, DEMO),
    "help": ("fleet", _help, DEMO),
    "why": ("releases", None, WHY),
    "why-device": ("releases", _why, WHY),
}


async def shoot(name: str, size: tuple[int, int] = SIZE) -> str:
    mode, step, recording = SHOTS[name]
    async with settled(recording, start_mode=mode, size=size) as (app, pilot):
        if step is not None:
            await step(pilot)
            await settle(pilot)
        return app.export_screenshot(title=f"picoctl {name}")


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    for name in SHOTS:
        (out / f"{name}.svg").write_text(asyncio.run(shoot(name)))
        print(f"{out / name}.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
