"""The hub's single writer: group commit.

Request handlers hand a job (a function of an open transaction) to the writer and await it. One
task takes every job waiting, runs them on one thread in a single durable transaction (each in its
own savepoint), and only after COMMIT answers each caller and publishes the changes the jobs
recorded. While one batch commits the next one gathers, so under load one fsync serves hundreds of
heartbeats, and at rest a lone heartbeat waits for nothing. On a shared PostgreSQL database the
changes also go to the other hubs, as notifications sent by the same transaction.

Work that many requests need (storing heartbeats) is a `Group`: the requests of one group queued
in a row run together, in a few statements for all (each statement is a round trip to a
PostgreSQL server). Should that fail, the transaction is rolled back and the batch runs again with
each request alone in its own savepoint, so one bad request costs no other its write.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
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
Group = Callable[[list[tuple[Tx, Any]]], list[Any]]
"""Runs the items of several requests (each with its own Tx, on one connection) together: for each,
its result or the exception that refuses it alone (its item wrote nothing)."""


@dataclass
class _Pending(Generic[T]):
    job: Job[T] | None
    future: asyncio.Future[T]
    group: Group | None = None
    item: Any = None
    tx: Tx | None = None


class Writer:
    def __init__(self, store: Store, broadcaster: Broadcaster, hub_id: str) -> None:
        self.store = store
        self.broadcaster = broadcaster
        self.hub_id = hub_id
        self.batches = 0
        self.fleet_ids = store.dialect == "postgresql"  # the store numbers the changes; hubs publish them as heard
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

    async def run_in(self, group: Group, item: Any) -> Any:
        """Have `item` run by `group` with the other items of it queued beside it; its result once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(None, future, group, item))
        return await future

    def _commit(self, batch: list[_Pending[Any]]) -> list[Any]:
        """Run the batch in one durable transaction: one entry per job, its result or its exception.

        A group runs without a savepoint of its own (two round trips fewer); should one fail, the
        transaction is rolled back and the batch runs again with every item in its own savepoint.
        """
        try:
            return self._transaction(batch, alone=False)
        except _GroupFailed:
            return self._transaction(batch, alone=True)

    def _transaction(self, batch: list[_Pending[Any]], alone: bool) -> list[Any]:
        with self.store.transaction() as c:
            results: list[Any] = []
            for run in _runs(batch):
                if alone or run[0].group is None:
                    for p in run:
                        out = self.store.attempt(c, self._work([p]))
                        results += [out] if isinstance(out, Exception) else out
                else:
                    try:
                        results += self._work(run)(c)
                    except Exception as exc:
                        raise exc if self.store.lost(exc, c) else _GroupFailed() from exc
            changes = [(event, json.dumps(data, separators=(",", ":"), default=str))
                       for p, result in zip(batch, results, strict=True) if p.tx and not isinstance(result, BaseException)
                       for event, data in p.tx.changes]
            notify(c, self.hub_id, changes)
        return results

    @staticmethod
    def _work(run: list[_Pending[Any]]) -> Callable[[Db], list[Any]]:
        """What a lone job, or the items of one group, do in the transaction: one result per item."""
        def work(c: Db) -> list[Any]:
            for p in run:
                p.tx = Tx(c)
            if run[0].group is None:
                assert run[0].job is not None and run[0].tx is not None
                return [run[0].job(run[0].tx)]
            return run[0].group([(p.tx, p.item) for p in run if p.tx is not None])
        return work

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
                    for event, data in p.tx.changes if p.tx and not self.fleet_ids else ():
                        self.broadcaster.publish(event, data)
                    if not p.future.done():
                        p.future.set_result(result)
                self._queue.task_done()


class _GroupFailed(Exception):
    """A group raised: its transaction is rolled back, to run its items again one by one."""


def _runs(batch: list[_Pending[Any]]) -> list[list[_Pending[Any]]]:
    """The batch in order, as lone jobs and runs of items of one group."""
    runs: list[list[_Pending[Any]]] = []
    for group, pending in groupby(batch, key=lambda p: p.group):
        together = list(pending)
        runs += [together] if group is not None else [[p] for p in together]
    return runs
