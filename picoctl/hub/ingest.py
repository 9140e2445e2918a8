"""The hub's single writer: group commit.

Request handlers hand a job (a function of an open transaction) to the writer and await it. One
task takes every job waiting, runs them on one thread in a single durable transaction (each in its
own savepoint), and only after COMMIT answers each caller and publishes the changes the jobs
recorded. While one batch commits the next one gathers, so under load one fsync serves hundreds of
heartbeats, and at rest a lone heartbeat waits for nothing. On a shared PostgreSQL database the
changes also go to the other hubs, as notifications sent by the same transaction.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

from .events import Broadcaster
from .db import Store, first_line, notify
from .http import ApiError
from .store import Db

T = TypeVar("T")
MAX_BATCH = 1000


@dataclass
class Tx:
    """What a job sees: the transaction's connection and a list of changes to publish after commit."""

    c: Db
    changes: list[tuple[str, Any]] = field(default_factory=list)

    def emit(self, event: str, data: Any) -> None:
        self.changes.append((event, data))


Job = Callable[[Tx], T]


@dataclass
class _Pending(Generic[T]):
    job: Job[T]
    future: asyncio.Future[T]
    tx: Tx | None = None


class Writer:
    def __init__(self, store: Store, broadcaster: Broadcaster, hub_id: str) -> None:
        self.store = store
        self.broadcaster = broadcaster
        self.hub_id = hub_id
        self.batches = 0
        self._notified = 0
        self._queue: asyncio.Queue[_Pending[Any]] = asyncio.Queue()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="picoctl-writer")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._thread.shutdown(wait=True)

    def submit(self, job: Job[T]) -> asyncio.Future[T]:
        """Queue `job`; the future resolves with its result once its batch is committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(job, future))
        return future

    async def run(self, job: Job[T]) -> T:
        return await self.submit(job)

    def _commit(self, batch: list[_Pending[Any]]) -> list[Any]:
        def wrap(p: _Pending[Any]) -> Callable[[Db], Any]:
            def call(c: Db) -> Any:
                p.tx = Tx(c)
                return p.job(p.tx)
            return call

        def finish(c: Db, results: list[Any]) -> None:
            changes = [(event, json.dumps(data, separators=(",", ":"), default=str))
                       for p, result in zip(batch, results, strict=True) if p.tx and not isinstance(result, BaseException)
                       for event, data in p.tx.changes]
            notify(c, self.hub_id, self._notified, changes)
            self._notified += len(changes)

        return self.store.batch([wrap(p) for p in batch], finish)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await loop.run_in_executor(self._thread, self._commit, batch)
            except Exception as exc:  # noqa: BLE001 - the transaction failed as a whole (e.g. a full disk)
                failure = ApiError(503, f"store write failed, nothing was saved: {first_line(exc)}")
                results = [failure] * len(batch)
            self.batches += 1
            for p, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    if not p.future.done():
                        p.future.set_exception(result)
                else:
                    for event, data in p.tx.changes if p.tx else ():
                        self.broadcaster.publish(event, data)
                    if not p.future.done():
                        p.future.set_result(result)
                self._queue.task_done()
