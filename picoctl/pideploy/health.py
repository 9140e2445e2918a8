"""Health check of the running app: GET the configured URL until the expected release answers 200.

An app whose health response is a JSON object with a `version` (the example app's is) is confirmed
to be the release just switched to: the old process still answering after a restart command that
returned too early does not pass for the new one. A response without one is taken on its status.
Each request is done within its timeout in all, headers and body (an app that drips its answer, or
streams one, fails the check in time), and a body past fetch_bounds.MAX_ANSWER_BYTES fails it.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from ..errors import PicoctlError
from ..fetch_bounds import Deadline

REQUEST_TIMEOUT_S = 5.0


def answering_version(body: bytes) -> str | None:
    """The `version` a health response names, if it is a JSON object with a string one."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return None
    version = obj.get("version") if isinstance(obj, dict) else None
    return version if isinstance(version, str) else None


async def _get(url: str, timeout_s: float) -> tuple[int, bytes]:
    deadline = Deadline(timeout_s, url)
    async with httpx.AsyncClient(timeout=timeout_s) as client, deadline.held(), client.stream("GET", url) as r:
        return r.status_code, await deadline.body(r)


def _check(url: str, timeout_s: float, version: str | None) -> tuple[bool, str, bool]:
    """(healthy, what was seen, whether the app answered at all)."""
    try:
        status, body = asyncio.run(_get(url, timeout_s))
    except PicoctlError as exc:
        return False, str(exc), False
    except httpx.HTTPError as exc:
        return False, f"{url}: {type(exc).__name__}: {exc}", False
    if status != 200:
        return False, f"{url}: HTTP {status}", True
    answering = answering_version(body)
    if version is not None and answering is not None and answering != version:
        return False, f"{url}: HTTP 200 from version {answering}, not {version}", True
    return True, f"{url}: HTTP 200" + (f", version {answering}" if answering else ""), True


def check_once(url: str, version: str | None = None, timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[bool, str]:
    """(healthy, what was seen) for one request; healthy needs `version` when the app names one."""
    return _check(url, timeout_s, version)[:2]


def wait_healthy(url: str, timeout_s: float, interval_s: float, version: str | None = None) -> tuple[bool, str]:
    """Retry until `version` answers healthy or `timeout_s` has passed; the reason names the last failure,
    and the app's last answer before it when the last request got none (an HTTP 500 says more than a
    request the deadline cut short)."""
    deadline = time.monotonic() + timeout_s
    answer = ""
    while True:
        remaining = deadline - time.monotonic()
        ok, seen, answered = _check(url, max(0.1, min(REQUEST_TIMEOUT_S, remaining)), version)
        if ok:
            return True, seen
        if time.monotonic() + interval_s > deadline:
            before = f"last answer: {answer}; then: " if answer and not answered else "last: "
            return False, f"not healthy within {timeout_s:g}s ({before}{seen})"
        answer = seen if answered else answer
        time.sleep(interval_s)
