"""Removing a release from the hub, and with it every blob no other release needs.

A release stays while it is in use: a device of its target runs it, a rollout that is not over moves
devices to it or from it, or the target's newest rollout could still be rolled back to it. Removing
one that is free takes its row out (a `release_removed` event in the audit log; its rollouts keep
naming its version), then its blobs that no remaining release lists. Recording a release and removing
one take turns over the blobs (`Hub.blob_lock` on one hub, store.lock_blobs between replicas), so a
blob a new release shares with a removed one is never lost: on a shared database the recording
puts back what another replica's removal took out of it (BlobStore.shared_again). A hub starting
removes from its folder what no release lists (Hub.__init__): another replica's removals, and the
blobs of an upload a killed hub did not record; on a shared database it takes those out of it too.
Removing, starting a rollout and rolling back take turns over a target (store.lock_target), so no
replica starts a rollout of a release another's removal checked was free.
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread

from ..protocol import ACTION_ACCEPTS, LIVE_ROLLOUT_STATES
from ..release import blobs_of
from ..rollout import some
from . import store
from .http import ApiError
from .ingest import Tx
from .state import Hub
from .store import Db

SHOWN = 3  # device ids named in a refusal, the rest counted


def in_use(c: Db, target: str, version: str) -> list[str]:
    """Why the release must stay, one reason each, or [] when it may go."""
    why = []
    running = store.devices_running(c, target, version)
    if running:
        why.append(f"{some(running, SHOWN)} run{'s' if len(running) == 1 else ''} it")
    for r in store.rollouts_of_version(c, target, version):
        if r["state"] in LIVE_ROLLOUT_STATES:
            way = "to" if r["version"] == version else "from"
            why.append(f"rollout {r['id']} ({r['state']}) moves devices {way} it")
    newest = store.latest_rollout(c, target)
    if (newest is not None and newest["previous_version"] == version and newest["state"] not in LIVE_ROLLOUT_STATES
            and newest["state"] in ACTION_ACCEPTS["rollback"]):  # a live one is named above
        why.append(f"rollout {newest['id']} may still be rolled back to it")
    return why


def _remove(tx: Tx, target: str, version: str, actor: str, hub: Hub) -> set[str]:
    """The removal's transaction: the blobs to delete from the folder once it commits."""
    c = tx.c
    store.lock_target(c, target)  # a rollout starting on another replica takes turns with the checks below
    row = store.release(c, target, version)
    if row is None:
        raise ApiError(404, f"no release {target} {version} on the hub")
    why = in_use(c, target, version)
    if why:
        raise ApiError(409, f"release {target} {version} is in use, so it stays: {'; '.join(why)}")
    store.lock_blobs(c)
    ev = store.remove_release(c, actor, target, version, time.time())
    gone = blobs_of(row["meta"]) - store.referenced_blobs(c)
    hub.blobs.unshare(c, gone)
    tx.emit("release_removed", {"target": target, "version": version})
    tx.emit("history", ev.as_dict())
    return gone


async def remove(hub: Hub, target: str, version: str, actor: str) -> dict[str, Any]:
    """Remove a release no device, rollout or rollback needs; what it freed."""
    async with hub.blob_lock:
        gone = await hub.writer.run(lambda tx: _remove(tx, target, version, actor, hub))
        freed = await anyio.to_thread.run_sync(hub.blobs.remove, gone)
    return {"ok": True, "target": target, "version": version, "blobs_removed": len(gone), "bytes_freed": freed}
