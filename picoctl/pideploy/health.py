"""Health check of the running app: GET the configured URL until it answers 200 or a deadline passes."""

from __future__ import annotations

import time

import httpx

REQUEST_TIMEOUT_S = 5.0


def _check(client: httpx.Client, url: str, timeout_s: float) -> tuple[bool, str]:
    try:
        r = client.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return False, f"{url}: {type(exc).__name__}: {exc}"
    if r.status_code == 200:
        return True, f"{url}: HTTP 200"
    return False, f"{url}: HTTP {r.status_code}"


def check_once(url: str, timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[bool, str]:
    """(healthy, what was seen) for one request."""
    with httpx.Client() as client:
        return _check(client, url, timeout_s)


def wait_healthy(url: str, timeout_s: float, interval_s: float) -> tuple[bool, str]:
    """Retry until healthy or `timeout_s` has passed; the reason names the last failure."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client() as client:
        while True:
            remaining = deadline - time.monotonic()
            ok, seen = _check(client, url, max(0.1, min(REQUEST_TIMEOUT_S, remaining)))
            if ok:
                return True, seen
            if time.monotonic() + interval_s > deadline:
                return False, f"not healthy within {timeout_s:g}s (last: {seen})"
            time.sleep(interval_s)
