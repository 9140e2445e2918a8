"""The switch transaction shared by deploy and rollback, and the recovery of an interrupted one.

switch (`previous` := old current, `current` := new, each a link renamed over the old) -> restart ->
health check -> done; on failure: switch both links back, restart, check health again. Every step is
journaled first, so `recover` can finish or undo whatever a killed process left behind.
"""

from __future__ import annotations

import os
import shutil
import time

from ..config import FleetConfig
from ..progress import Progress
from ..release import SEMVER
from . import commands, health, journal, unpack
from .events import DeployResult, Log, record
from .layout import Layout, linked_version, point

POST_SWITCH = ("switched", "restarted")


def releases_on_disk(layout: Layout) -> list[str]:
    """Versions unpacked under releases/, most recently activated first."""
    if not layout.releases.is_dir():
        return []
    dirs = [p for p in layout.releases.iterdir() if p.is_dir() and not p.is_symlink() and SEMVER.match(p.name)]
    return [p.name for p in sorted(dirs, key=lambda p: p.stat().st_mtime, reverse=True)]


def _remove(layout: Layout, version: str) -> None:
    """Move a release out of releases/ in one rename, then delete it."""
    trash = layout.incoming / f"removed-{version}-{os.getpid()}"
    os.replace(layout.release_dir(version), trash)
    shutil.rmtree(trash)


def prune(cfg: FleetConfig, layout: Layout, log: Log) -> list[str]:
    """Keep `pi.keep_releases` releases, always including current and previous; return those removed."""
    kept = {v for v in (linked_version(layout.current), linked_version(layout.previous)) if v}
    removed = []
    for version in releases_on_disk(layout):
        if version in kept:
            continue
        if len(kept) < cfg.pi.keep_releases:
            kept.add(version)
        else:
            _remove(layout, version)
            removed.append(version)
    if removed:
        log(f"removed old releases: {', '.join(removed)}")
    return removed


def clean_incoming(layout: Layout) -> None:
    """Delete leftovers of earlier deploys (downloads, half-unpacked folders), after putting back a
    same-version release whose replacement never got in place."""
    unpack.restore_replaced(layout)
    for p in layout.incoming.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def activate(cfg: FleetConfig, layout: Layout, entry: journal.Entry, log: Log, progress: Progress) -> tuple[bool, str]:
    """Switch to `entry.to_version`, restart, check health; switch back on failure. (healthy, reason)."""
    assert entry.to_version is not None, "a deploy is journaled with its version before it switches"
    point(layout.previous, entry.from_version)
    point(layout.current, entry.to_version)
    os.utime(layout.release_dir(entry.to_version))
    log(f"current -> {entry.to_version}")
    journal.advance(layout.journal, entry, "switched")
    return finish(cfg, layout, entry, log, progress)


def finish(cfg: FleetConfig, layout: Layout, entry: journal.Entry, log: Log, progress: Progress) -> tuple[bool, str]:
    """From `switched` or `restarted`: restart if not done yet, then health-check; revert on failure."""
    if entry.step == "switched":
        progress.phase("restart")
        log(f"restart: {cfg.pi.restart_command}")
        failure = commands.run("restart", cfg.pi.restart_command, cfg.pi.command_timeout_s)
        if failure:
            return revert(cfg, layout, entry, failure, log, progress)
        journal.advance(layout.journal, entry, "restarted")
    progress.phase("health check", item=cfg.pi.health_url)
    log(f"health check: {cfg.pi.health_url} (up to {cfg.pi.health_timeout_s:g}s)")
    ok, seen = health.wait_healthy(cfg.pi.health_url, cfg.pi.health_timeout_s, cfg.pi.health_interval_s,
                                   entry.to_version)
    if not ok:
        return revert(cfg, layout, entry, f"health check failed: {seen}", log, progress)
    journal.clear(layout.journal)
    prune(cfg, layout, log)
    return True, f"{entry.to_version} is healthy ({seen})"


def revert(cfg: FleetConfig, layout: Layout, entry: journal.Entry, reason: str, log: Log,
           progress: Progress) -> tuple[bool, str]:
    """Put both links back as they were before `entry`, restart and check health. Always (False, why)."""
    journal.advance(layout.journal, entry, "reverting", reason)
    back = entry.from_version
    log(f"{reason}; switching back to {back or 'no release'}")
    progress.phase("switch back")
    point(layout.current, back)
    point(layout.previous, entry.previous_before)
    if back is None:
        outcome = f"{reason}; there is no earlier release to go back to"
    elif failure := commands.run("restart", cfg.pi.restart_command, cfg.pi.command_timeout_s):
        outcome = f"{reason}; switched back to {back} but {failure}"
    else:
        ok, seen = health.wait_healthy(cfg.pi.health_url, cfg.pi.health_timeout_s, cfg.pi.health_interval_s, back)
        outcome = f"{reason}; rolled back to {back}" + ("" if ok else f", which is not healthy either ({seen})")
    journal.clear(layout.journal)
    return False, outcome


def recover(cfg: FleetConfig, layout: Layout, log: Log, progress: Progress) -> DeployResult | None:
    """Finish or undo an operation a killed process left in the journal; None when there was none."""
    entry = journal.read(layout.journal)
    clean_incoming(layout)
    if entry is None:
        return None
    current = linked_version(layout.current)
    log(f"an interrupted {entry.op} of {entry.to_version or entry.source} stopped after '{entry.step}'; recovering")
    if entry.step == "reverting":
        ok, reason = revert(cfg, layout, entry, entry.reason, log, progress)
        result = "failed"
    elif current == entry.to_version and entry.to_version != entry.from_version:
        if entry.step not in POST_SWITCH:  # killed between the switch and its journal entry
            journal.advance(layout.journal, entry, "switched")
        ok, reason = finish(cfg, layout, entry, log, progress)
        result = "ok" if ok else "failed"
        reason = f"finished after an interruption: {reason}"
    else:
        point(layout.previous, entry.previous_before)
        journal.clear(layout.journal)
        ok, result = False, "aborted"
        reason = f"interrupted after '{entry.step}' and undone; {current or 'no release'} stays current"
    duration = time.time() - entry.started_at
    record(cfg, entry.op, entry.actor, result, entry.from_version, entry.to_version, duration, reason)
    log(reason)
    return DeployResult(ok, entry.op, entry.from_version, entry.to_version, linked_version(layout.current),
                        duration, reason)
