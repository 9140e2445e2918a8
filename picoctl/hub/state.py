"""The hub's running state: config, store connections, the writer, the event broadcaster, devices."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import anyio.to_thread
from starlette.requests import Request

from ..config import FleetConfig
from ..errors import PicoctlError
from ..workdirs import remove_interrupted
from . import engine, store
from .auth import DeviceAuth, Refused, Registry
from .blobs import BlobStore
from .db import ERRORS, Leadership, Listener, Store, first_line, is_postgres, redact
from .events import Broadcaster
from .ingest import Tx, Writer
from .store import Db

T = TypeVar("T")
DB_NAME = "fleet.db"
LOCK_NAME = "hub.lock"
UPLOAD_PREFIX = "release-"  # <data_dir>/tmp/release-XXXX: the work folder of one release upload
SECURITY_EVENTS_PER_S = 20
TICK_ERROR_LOG_S = 60.0
PRUNE_EVERY = 20  # heartbeats of a device stored between prunes of its history (by this hub)
log = logging.getLogger("picoctl.hub")


class RateLimitedLog:
    """Logs an error with its traceback at most once per `every_s`; the next one counts those left out."""

    def __init__(self, logger: logging.Logger, every_s: float) -> None:
        self._log, self._every_s = logger, every_s
        self._last: float | None = None
        self._skipped = 0

    def exception(self, message: str, *args: Any, exc: BaseException) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self._every_s:
            self._skipped += 1
            return
        if self._skipped:
            message += f" ({self._skipped} more since the last one logged)"
            self._skipped = 0
        self._last = now
        self._log.error(message, *args, exc_info=exc)


class PruneSchedule:
    """Which devices' heartbeat history to prune now: each after every `every` of its heartbeats
    stored here, so a device keeps at most `every` - 1 more than its history per hub between prunes."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._since: dict[str, int] = {}

    def due(self, device_ids: Iterable[str]) -> list[str]:
        out = []
        for device_id in device_ids:
            n = self._since.get(device_id, 0) + 1
            if n >= self.every:
                out.append(device_id)
                n = 0
            self._since[device_id] = n
        return out


def store_location(cfg: FleetConfig) -> str:
    """The hub's database: hub.database_url, else fleet.db in the data folder."""
    return cfg.hub.database_url or str(cfg.data_dir / DB_NAME)


class Hub:
    def __init__(self, cfg: FleetConfig) -> None:
        self.cfg = cfg
        self.token = cfg.read_token()
        if not self.token:
            raise PicoctlError(f"{cfg.token_file}: the operator token is empty, so any request would pass as the "
                               "operator's; put a long random secret in it")
        self.id = secrets.token_hex(4)  # tells this hub's changes from other replicas' on the database
        data, location = cfg.data_dir, store_location(cfg)
        self.shared = is_postgres(location)  # other hubs may write the same database
        try:
            data.mkdir(parents=True, exist_ok=True)
            self._lock = None if self.shared else single_writer_lock(data / LOCK_NAME)
            (data / "tmp").mkdir(exist_ok=True)
            if interrupted := remove_interrupted(data / "tmp", UPLOAD_PREFIX):
                log.warning("removed %d release upload(s) a stopped hub left unfinished in %s", interrupted, data / "tmp")
            self.blobs = BlobStore(data / "blobs", location if self.shared else None)
        except OSError as exc:
            raise PicoctlError(f"{data}: cannot open the hub's data folder: {exc}") from None
        try:
            self.store = Store(location)
            self.reader = Store(location)
            with self.reader.reading() as c:
                self.registry = Registry(store.devices(c))
                unlisted = self.blobs.unreferenced(store.referenced_blobs(c))
            if self.shared:  # as in the folder, in the database: what an upload a killed replica shared left
                with self.store.transaction() as c:
                    store.lock_blobs(c)  # a replica recording a release meanwhile shares its blobs again
                    self.blobs.unshare(c, self.blobs.shared_blobs(c) - store.referenced_blobs(c))
        except ERRORS as exc:
            raise PicoctlError(f"{redact(location)}: cannot open the hub's store: {first_line(exc)}") from None
        if unlisted:  # a removal's on another replica, or an upload a killed hub did not record
            log.warning("removed %d blob(s) no release lists (%d bytes) from %s", len(unlisted),
                        self.blobs.remove(unlisted), self.blobs.root)
        self.blob_lock = asyncio.Lock()  # recording a release and removing one take turns (release_removal)
        self.broadcaster = Broadcaster(fleet=self.shared)
        self.writer = Writer(self.store, self.broadcaster, self.id)
        self.leadership = Leadership(location)
        self.listener = Listener(location, self._heard, self._joined) if self.shared else None
        self._prune = PruneSchedule(PRUNE_EVERY)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._security_window, self._security_count, self._security_skipped = 0.0, 0, 0

    @property
    def tmp_dir(self) -> Path:
        return self.cfg.data_dir / "tmp"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.writer.start()
        if self.listener is not None:
            self.listener.start()
        self._ticker = self._loop.create_task(self._tick())

    async def stop(self) -> None:
        if self._ticker:
            self._ticker.cancel()
        await self.writer.stop()
        if self.listener is not None:
            self.listener.stop()
        self.leadership.close()
        self.blobs.close()
        self.store.close()
        self.reader.close()
        if self._lock is not None:
            os.close(self._lock)

    def _heard(self, message_id: int, event: str, data: str) -> None:
        """A change a hub of the fleet committed, this one or another (listener thread): out on this
        hub's event stream under its fleet-wide id."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.broadcaster.publish, event, json.loads(data), message_id)

    def _joined(self, next_id: int, missed: bool) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.broadcaster.join, next_id, missed)

    async def _tick(self) -> None:
        """Re-evaluate active rollouts now and then, so silence after a switch counts as failure.

        Only the hub holding the leadership does (one of the replicas on a shared database).
        """
        interval = min(5.0, max(0.5, self.cfg.rollout.trial_timeout_s / 4))
        errors = RateLimitedLog(log, TICK_ERROR_LOG_S)
        while True:
            await asyncio.sleep(interval)
            try:
                if await anyio.to_thread.run_sync(self.leadership.held):
                    await self.writer.run(lambda tx: engine.evaluate_active(tx, self.cfg, time.time()))
            except Exception as exc:  # noqa: BLE001 - a failed tick is logged and retried at the next one
                errors.exception("rollout tick failed, retried every %.1f s", interval, exc=exc)

    async def device(self, device_id: str) -> DeviceAuth | None:
        """A registered device's credentials; on a shared database, one another hub registered is looked up."""
        found = self.registry.get(device_id)
        if found is None and self.shared:
            row = await self.read(lambda c: store.device(c, device_id))
            if row is not None:
                self.registry.add(row["id"], row["type"], row["key"], row["last_counter"])
                found = self.registry.get(device_id)
        return found

    async def read(self, fn: Callable[[Db], T]) -> T:
        """Run reads on the reader connection (one consistent view), off the event loop."""
        def call() -> T:
            with self.reader.reading() as c:
                return fn(c)

        return await anyio.to_thread.run_sync(call)

    async def store_ok(self) -> bool:
        try:
            await self.read(store.ping)
        except Exception:  # noqa: BLE001 - any failure means unhealthy
            return False
        return True

    def heartbeat_job(self, beat: dict[str, Any], authenticated: bool) -> Callable[[Tx], tuple[bool, float]]:
        """The writer job that stores one heartbeat (see `store_heartbeats`)."""
        def job(tx: Tx) -> tuple[bool, float]:
            out = self.store_heartbeats([(tx, (beat, authenticated))])[0]
            if isinstance(out, Exception):
                raise out
            return out

        return job

    async def record_heartbeat(self, beat: dict[str, Any], authenticated: bool) -> tuple[bool, float]:
        return await self.writer.run_in(self.store_heartbeats, (beat, authenticated))

    def store_heartbeats(self, items: list[tuple[Tx, tuple[dict[str, Any], bool]]]) -> list[Any]:
        """Store heartbeats together (a writer Group; each item: its Tx, the beat, and whether it came
        from the board itself, not relayed). Such a beat also takes its counter, or is refused alone,
        and what an operator asked of the board (store.take_requests): each answer is (check now,
        log wanted until)."""
        c = items[0][0].c
        beats = [beat for _, (beat, _) in items]
        counters = [beat["counter"] if authenticated else None for _, (beat, authenticated) in items]
        taken, new_errors = store.record_heartbeats(c, beats, counters)
        from_board = [i for i, n in enumerate(counters) if n is not None]
        claims = engine.refusals(c, [beats[i]["device_id"] for i in from_board], [taken[i] for i in from_board])
        answers: list[Any] = [(False, 0.0)] * len(items)  # a relayed beat's
        for i, claim in zip(from_board, claims, strict=True):
            answers[i] = claim
        asked = [(i, answer) for i, answer in enumerate(answers) if isinstance(answer, dict)]
        requests = store.take_requests(c, [(beats[i]["device_id"], claim) for i, claim in asked])
        kept = [i for i, answer in enumerate(answers) if not isinstance(answer, Refused)]
        store.prune_heartbeats(c, self._prune.due(beats[i]["device_id"] for i in kept), self.cfg.hub.heartbeat_history)
        senders: dict[str, Tx] = {}
        for i in kept:
            items[i][0].emit("heartbeat", beats[i])
            senders[beats[i]["device_id"]] = items[i][0]
        for ev in new_errors:
            senders[str(ev.device_id)].emit("history", ev.as_dict())
        for (i, _), request in zip(asked, requests, strict=True):
            answers[i] = request
        return answers

    def security_event(self, exc: Refused, request: Request) -> None:
        """Log a refused device request; the response does not wait for it.

        At most SECURITY_EVENTS_PER_S are written a second, so a flood cannot fill the disk; the next
        one written counts those left out.
        """
        now = time.monotonic()
        if now - self._security_window >= 1.0:
            self._security_window, self._security_count = now, 0
        self._security_count += 1
        if self._security_count > SECURITY_EVENTS_PER_S:
            self._security_skipped += 1
            return
        client = request.client.host if request.client else "?"
        detail = f"{request.url.path} from {client}: {exc.message}"
        if self._security_skipped:
            detail += f" ({self._security_skipped} more refused requests were not logged)"
            self._security_skipped = 0

        def job(tx: Tx) -> None:
            ev = store.add_event(tx.c, "hub", "security", device_id=exc.device_id, result="refused", detail=detail)
            tx.emit("history", ev.as_dict())

        self.writer.submit(job).add_done_callback(lambda f: f.cancelled() or f.exception())


def single_writer_lock(path: Path) -> int:
    """Hold an exclusive lock on `path` for the hub's lifetime: one hub (one writer) per data folder."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PicoctlError(f"{path.parent}: another hub is already serving this data folder") from None
    return fd
