"""Every screen rendered from the recorded demo sessions (fixed clock, TZ=UTC) at 80x24 and 120x40."""

from __future__ import annotations

import pytest

from screenshots import SHOTS, demo_app, settle

SIZES = [(80, 24), (120, 40)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(SHOTS))
def test_screen(snap_compare, name: str, size: tuple[int, int]) -> None:
    mode, step, recording = SHOTS[name]

    async def prepare(pilot) -> None:
        await settle(pilot)
        if step is not None:
            await step(pilot)
            await settle(pilot)

    assert snap_compare(demo_app(recording, start_mode=mode), terminal_size=size, run_before=prepare)
