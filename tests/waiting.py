"""Waiting for a condition in tests: polled, bounded, and failing with what was awaited."""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable


def wait_for(pred: Callable[[], Any], timeout: float, what: str = "", every: float = 0.2) -> Any:
    """The first truthy value of `pred()`, polled every `every` s; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")


async def until(pilot: Any, pred: Callable[[], Any], timeout: float = 8.0, what: str = "",
                poll: Callable[[], Awaitable[Any]] | None = None) -> Any:
    """The first truthy value of `pred()` in a Textual Pilot test, polled every 0.05 s of the app's time
    (after `poll()`, if given: a key to press again, say)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if poll is not None:
            await poll()
        value = pred()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what or pred}")
