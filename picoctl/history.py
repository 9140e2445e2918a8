"""Report events from this machine (Pi deploys, USB flashes) into the hub's history.

When the hub cannot be reached the event is appended to a local queue (JSON lines in the data
folder) and sent, in order, before the next event that gets through.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from .config import FleetConfig
from .errors import PicoctlError

QUEUE_NAME = "pending-events.jsonl"
TIMEOUT_S = 3.0


def queue_path(cfg: FleetConfig) -> Path:
    return cfg.data_dir / QUEUE_NAME


def _post(cfg: FleetConfig, client: httpx.Client, event: dict[str, Any]) -> None:
    r = client.post(
        f"{cfg.hub_url}/api/v1/history",
        json=event,
        headers={"Authorization": f"Bearer {cfg.read_token()}"},
    )
    r.raise_for_status()


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
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
    os.replace(tmp, path)


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
    backlog = _pending(path) + [event]
    sent = 0
    try:
        with httpx.Client(timeout=TIMEOUT_S) as client:
            for e in backlog:
                _post(cfg, client, e)
                sent += 1
    except (httpx.HTTPError, OSError, ValueError, PicoctlError):
        pass
    if sent == len(backlog):
        if path.exists():
            path.unlink()
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    _rewrite(path, backlog[sent:])
    return False
