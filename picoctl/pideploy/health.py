"""Health check of the running app: GET the configured URL until the expected release answers 200.

An app whose health response is a JSON object with a `version` (the example app's is) is confirmed
to be the release just switched to: the old process still answering after a restart command that
returned too early does not pass for the new one. A response without one is taken on its status.
"""

from __future__ import annotations

import time

import httpx

REQUEST_TIMEOUT_S = 5.0


def answering_version(r: httpx.Response) -> str | None:
    """The `version` a health response names, if it is a JSON object with a string one."""
    try:
        body = r.json()
    except ValueError:
        return None
    version = body.get("version") if isinstance(body, dict) else None
    return version if isinstance(version, str) else None


def _check(client: httpx.Client, url: str, timeout_s: float, version: str | None) -> tuple[bool, str]:
    try:
        r = client.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return False, f"{url}: {type(exc).__name__}: {exc}"
    if r.status_code != 200:
        return False, f"{url}: HTTP {r.status_code}"
    answering = answering_version(r)
    if version is not None and answering is not None and answering != version:
        return False, f"{url}: HTTP 200 from version {answering}, not {version}"
    return True, f"{url}: HTTP 200" + (f", version {answering}" if answering else "")


def check_once(url: str, version: str | None = None, timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[bool, str]:
    """(healthy, what was seen) for one request; healthy needs `version` when the app names one."""
    with httpx.Client() as client:
        return _check(client, url, timeout_s, version)


def wait_healthy(url: str, timeout_s: float, interval_s: float, version: str | None = None) -> tuple[bool, str]:
    """Retry until `version` answers healthy or `timeout_s` has passed; the reason names the last failure."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client() as client:
        while True:
            remaining = deadline - time.monotonic()
            ok, seen = _check(client, url, max(0.1, min(REQUEST_TIMEOUT_S, remaining)), version)
            if ok:
                return True, seen
            if time.monotonic() + interval_s > deadline:
                return False, f"not healthy within {timeout_s:g}s (last: {seen})"
            time.sleep(interval_s)
