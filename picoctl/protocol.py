"""The contract between the hub, the boards and every face of picoctl, one rule each."""

from __future__ import annotations

STATUSES = ("new", "online", "stale", "offline")


def liveness(last_seen: float | None, now: float, stale_after_s: float, offline_after_s: float) -> str:
    """A device's status from its last heartbeat: new (never heard from), online, stale or offline."""
    if last_seen is None:
        return "new"
    quiet = now - last_seen
    return "online" if quiet <= stale_after_s else "stale" if quiet <= offline_after_s else "offline"
