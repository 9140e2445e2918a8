"""Waiting for a condition in tests: polled, bounded, and failing with what was awaited."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    """The first truthy value of `pred()`, polled every 0.2 s; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
