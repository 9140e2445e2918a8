"""Report events from this machine (Pi deploys, USB flashes and pushes, provisioning) into the hub's history.

Events go to `POST /api/v1/history` through picoctl.client's HubClient. When the hub cannot be
reached the event is appended to a local queue (JSON lines in the data folder) and sent, in order,
before the next event that gets through. Several processes record at once (the CLI, the TUI, a Pi
deploy, the follower service), so the queue is read, sent and rewritten under an exclusive flock of
its lock file: no event is lost, none is sent twice.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from . import atomic
from .config import FleetConfig
from .errors import PicoctlError

QUEUE_NAME = "pending-events.jsonl"
LOCK_NAME = "pending-events.lock"
TIMEOUT_S = 3.0


def local_actor() -> str:
    """Who acts from this machine: `user@host`, whichever face (CLI or TUI) is used."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def queue_path(cfg: FleetConfig) -> Path:
    return cfg.data_dir / QUEUE_NAME


@contextmanager
def _locked(cfg: FleetConfig) -> Iterator[None]:
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cfg.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held at most one send's timeouts; the kernel drops it if killed
        yield
    finally:
        os.close(fd)


def _pending(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a crash mid-append; everything before it is intact
    return out


def _rewrite(path: Path, events: list[dict[str, Any]]) -> None:
    atomic.write_text(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in events), prefix=f".{path.name}.")


def _send(cfg: FleetConfig, events: list[dict[str, Any]]) -> int:
    """How many of `events` the hub took, in order, stopping at the first it did not."""
    from .client import HubClient  # imported on use: httpx stays out of `picoctl --help`

    sent = 0
    try:
        with HubClient.from_config(cfg, timeout=TIMEOUT_S) as hub:
            for e in events:
                hub.add_history(e)
                sent += 1
    except PicoctlError:
        pass
    return sent


def record(
    cfg: FleetConfig,
    kind: str,
    *,
    actor: str,
    device_id: str | None = None,
    version: str | None = None,
    result: str = "",
    detail: str = "",
) -> bool:
    """Send an event (after any queued ones); queue it if the hub is unreachable. True when delivered."""
    event = {"at": time.time(), "actor": actor, "kind": kind, "device_id": device_id,
             "version": version, "result": result, "detail": detail}
    path = queue_path(cfg)
    with _locked(cfg):
        backlog = _pending(path) + [event]
        sent = _send(cfg, backlog)
        if sent == len(backlog):
            path.unlink(missing_ok=True)
            return True
        _rewrite(path, backlog[sent:])
        return False
