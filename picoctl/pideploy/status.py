"""What is deployed on this Pi and whether it answers its health check now."""

from __future__ import annotations

from dataclasses import dataclass

from .. import history
from ..config import FleetConfig
from ..progress import Progress
from . import health
from .activate import recover, releases_on_disk
from .events import Log, quiet
from .layout import Layout, linked_version
from .lock import LockBusy, deploy_lock, holder


@dataclass(frozen=True)
class PiStatus:
    root: str
    current: str | None
    previous: str | None
    releases: list[str]  # on disk, most recently activated first
    healthy: bool | None  # None when nothing is deployed
    health: str
    busy: str = ""  # who holds the deploy lock, when someone does
    recovered: str = ""  # what this call did about an interrupted deploy
    queued_events: int = 0  # history events waiting for the hub


def _queued(cfg: FleetConfig) -> int:
    try:
        return sum(1 for line in history.queue_path(cfg).read_text().splitlines() if line.strip())
    except OSError:
        return 0


def status(cfg: FleetConfig, log: Log = quiet) -> PiStatus:
    """Recover an interrupted deploy if the lock is free, then describe the releases and health."""
    layout = Layout.of(cfg)
    layout.ensure()
    busy = recovered = ""
    try:
        with deploy_lock(layout.lock, "status", 0.0):
            result = recover(cfg, layout, log, Progress("pi recover"))
            recovered = result.reason if result else ""
    except LockBusy:
        busy = holder(layout.lock)
    current = linked_version(layout.current)
    if current is None:
        healthy, seen = None, "no release deployed"
    else:
        healthy, seen = health.check_once(cfg.pi.health_url, current)
    return PiStatus(str(layout.root), current, linked_version(layout.previous), releases_on_disk(layout),
                    healthy, seen, busy, recovered, _queued(cfg))
