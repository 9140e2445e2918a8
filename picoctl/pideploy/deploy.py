"""Deploy, roll back and update the Pi app; each runs under the deploy lock after recovering the journal."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .. import release
from ..config import FleetConfig
from ..errors import BadInput, PicoctlError
from ..progress import Progress
from . import commands, fetch, journal, unpack
from .activate import activate, clean_incoming, recover, releases_on_disk
from .events import DeployResult, Log, local_actor, quiet, record
from .layout import Layout, linked_version
from .lock import deploy_lock


@contextmanager
def _locked(cfg: FleetConfig, what: str, wait_s: float, log: Log, progress: Progress) -> Iterator[Layout]:
    layout = Layout.of(cfg)
    layout.ensure()
    with deploy_lock(layout.lock, what, wait_s):
        recover(cfg, layout, log, progress)
        yield layout


def deploy(cfg: FleetConfig, source: str, progress: Progress | None = None, log: Log = quiet, *,
           sha256: str | None = None, actor: str | None = None, wait_s: float = 0.0) -> DeployResult:
    """Fetch, verify, unpack, smoke-test and activate a pi release from a folder, meta.json or URL.

    Raises (nothing changed) when the release is refused; returns ok=False when it was activated and
    failed, after switching back.
    """
    progress = progress or Progress("pi deploy")
    actor = actor or local_actor()
    started = time.monotonic()
    with _locked(cfg, f"deploy {source}", wait_s, log, progress) as layout:
        before = linked_version(layout.current)
        progress.start(phase="verify")
        entry = journal.Entry("deploy", None, before, linked_version(layout.previous), actor, source=source)
        try:
            journal.write(layout.journal, entry)  # from here on, even a SIGKILL leaves an event (via recover)
            fetched = fetch.fetch(cfg, source, layout.incoming, progress, sha256)
            version = fetched.meta["version"]
            if version == before:
                journal.clear(layout.journal)
                clean_incoming(layout)
                progress.finish("already current")
                return DeployResult(True, "deploy", before, version, before, time.monotonic() - started,
                                    f"{version} is already current", changed=False)
            entry.to_version = version
            journal.advance(layout.journal, entry, "fetched")
            log(f"verified {version} ({fetched.meta['size']} bytes, signed); unpacking")
            stage = layout.incoming / f"unpack-{version}"
            unpack.unpack(fetched.artifact, fetched.meta, stage, cfg.pi.max_archive_bytes, progress, source)
            dest = unpack.install(layout, stage, version)
            fetched.artifact.unlink()
            journal.advance(layout.journal, entry, "unpacked")
        except PicoctlError as exc:
            journal.clear(layout.journal)
            clean_incoming(layout)
            progress.fail(str(exc))
            reason = str(exc) if source in str(exc) else f"{source}: {exc}"
            record(cfg, "deploy", actor, "refused", before, entry.to_version, time.monotonic() - started, reason)
            raise
        ok, reason = True, ""
        if cfg.pi.smoke_command:
            progress.phase("smoke test")
            log(f"smoke test: {cfg.pi.smoke_command}")
            env = {"PICOCTL_RELEASE_DIR": str(dest), "PICOCTL_RELEASE_VERSION": version}
            failure = commands.run("smoke", cfg.pi.smoke_command, cfg.pi.command_timeout_s, cwd=dest, env=env)
            if failure:
                journal.clear(layout.journal)
                ok, reason = False, f"{failure}; {before or 'no release'} stays current"
        if ok:
            ok, reason = _activate(cfg, layout, entry, log, progress, started)
        return _conclude(cfg, "deploy", actor, before, version, layout, started, ok, reason, progress)


def rollback(cfg: FleetConfig, to: str | None = None, progress: Progress | None = None, log: Log = quiet, *,
             actor: str | None = None, wait_s: float = 0.0) -> DeployResult:
    """Switch back to the previous release (or `to`, any release on disk), restart and health-check."""
    progress = progress or Progress("pi rollback")
    actor = actor or local_actor()
    started = time.monotonic()
    if to is not None:
        release.check_version(to)
    with _locked(cfg, f"rollback to {to or 'previous'}", wait_s, log, progress) as layout:
        before = linked_version(layout.current)
        target = to or linked_version(layout.previous)
        on_disk = ", ".join(releases_on_disk(layout)) or "none"
        if target is None:
            raise BadInput(f"no previous release to roll back to; name one with --to (on disk: {on_disk})")
        if not layout.release_dir(target).is_dir():
            raise BadInput(f"release {target} is not on disk (on disk: {on_disk})")
        if target == before:
            raise BadInput(f"{target} is already current")
        progress.start(phase="switch")
        entry = journal.Entry("rollback", target, before, linked_version(layout.previous), actor)
        try:
            journal.write(layout.journal, entry)
        except PicoctlError as exc:
            progress.fail(str(exc))
            record(cfg, "rollback", actor, "refused", before, target, time.monotonic() - started, str(exc))
            raise
        ok, reason = _activate(cfg, layout, entry, log, progress, started)
        return _conclude(cfg, "rollback", actor, before, target, layout, started, ok, reason, progress)


def _activate(cfg: FleetConfig, layout: Layout, entry: journal.Entry, log: Log, progress: Progress,
              started: float) -> tuple[bool, str]:
    """activate(), with an event when the disk stops it halfway (the journal lets the next call finish)."""
    try:
        return activate(cfg, layout, entry, log, progress)
    except PicoctlError as exc:
        progress.fail(str(exc))
        record(cfg, entry.op, entry.actor, "failed", entry.from_version, entry.to_version, time.monotonic() - started,
               f"{exc}; the next picoctl pi command finishes or undoes the switch")
        raise


def _conclude(cfg: FleetConfig, op: str, actor: str, before: str | None, to: str, layout: Layout, started: float,
              ok: bool, reason: str, progress: Progress) -> DeployResult:
    duration = time.monotonic() - started
    record(cfg, op, actor, "ok" if ok else "failed", before, to, duration, reason)
    if ok:
        progress.finish()
    else:
        progress.fail(reason)
    return DeployResult(ok, op, before, to, linked_version(layout.current), duration, reason)


def published_source(cfg: FleetConfig, channel: str | None = None) -> str:
    """Where pi.update_url points for `channel`: a URL or a meta.json path (a mounted share); '' if unset."""
    if not cfg.pi.update_url:
        return ""
    url = cfg.pi.update_url.replace("{channel}", channel or cfg.pi.channel)
    return url if fetch.is_url(url) else str(cfg.resolve(url))


def update(cfg: FleetConfig, channel: str | None = None, progress: Progress | None = None, log: Log = quiet, *,
           actor: str | None = None, wait_s: float = 0.0) -> DeployResult:
    """Deploy the release published at `pi.update_url` when it is newer than current and on our channel."""
    channel = channel or cfg.pi.channel
    if channel not in release.ROLLOUTS:
        raise BadInput(f"unknown channel {channel!r} (expected stable or canary)")
    if not cfg.pi.update_url:
        raise BadInput("pi.update_url is not set in fleet.toml")
    source = published_source(cfg, channel)
    started = time.monotonic()
    progress = progress or Progress("pi update")
    with _locked(cfg, f"update from {source}", wait_s, log, progress) as layout:
        current = linked_version(layout.current)
    meta = fetch.fetch_meta_url(source, cfg.fetch) if fetch.is_url(source) else release.load_meta(Path(source))
    published = meta["version"]
    if channel == "stable" and meta["rollout"] != "stable":
        reason = f"{published} is published for canary only; channel stable stays on {current or 'no release'}"
    elif current is not None and release.version_key(published) <= release.version_key(current):
        reason = f"up to date: {current} is current, {published} is published"
    else:
        log(f"{published} is newer than {current or 'no release'}; deploying")
        return deploy(cfg, source, progress, log, actor=actor or f"{local_actor()} (update, {channel})", wait_s=wait_s)
    return DeployResult(True, "update", current, published, current, time.monotonic() - started, reason, changed=False)
