"""The outcome of a deploy or rollback, and its event in the hub's history."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable

from .. import history
from ..config import FleetConfig
from ..history import local_actor

Log = Callable[[str], None]
__all__ = ["DeployResult", "Log", "local_actor", "quiet", "record"]
KINDS = {"deploy": "pi_deploy", "rollback": "pi_rollback"}
log = logging.getLogger("picoctl.pi")


def quiet(_: str) -> None:
    """A log for callers that do not show step messages."""


@dataclass(frozen=True)
class DeployResult:
    ok: bool
    op: str  # deploy, rollback or update
    from_version: str | None
    to_version: str | None
    current: str | None  # what `current` names afterwards
    duration_s: float
    reason: str
    changed: bool = True  # False when there was nothing to do


def record(cfg: FleetConfig, op: str, actor: str, result: str, from_version: str | None, to_version: str | None,
           duration_s: float, reason: str) -> None:
    """One history event (`pi_deploy` / `pi_rollback`); queued locally while the hub is unreachable.

    result: ok, failed (switched back), refused (nothing was changed), aborted (interrupted, undone).
    """
    detail = json.dumps({"from": from_version, "to": to_version, "duration_s": round(duration_s, 3), "reason": reason},
                        sort_keys=True)
    try:
        history.record(cfg, KINDS[op], actor=actor, version=to_version, result=result, detail=detail)
    except OSError as exc:  # the hub unreachable and no room to queue: the outcome itself still reaches the caller
        log.warning("the %s event could not be sent or queued (%s): %s %s", KINDS[op], exc.strerror, result, reason)
