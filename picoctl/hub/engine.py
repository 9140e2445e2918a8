"""The rollout engine: the hub's side of picoctl.rollout, run inside the writer's transactions.

It turns rows into the policy's dataclasses, asks the policy, and writes what it decided: offers
(with a fresh seq each), device progress, halts, promotions, completions and rollbacks, each with
an audit event and a change for the event stream.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

from .. import diagnostics
from .. import release as release_mod
from .. import rollout as policy
from ..config import FleetConfig
from ..errors import BadInput
from ..protocol import ACTION_ACCEPTS
from . import store
from .auth import Refused, UnknownDevice
from .http import ApiError
from .ingest import Tx
from .store import Db

PHASES = policy.PHASES[1:]  # what a device may report: everything after "offered"
ACTIONS = ("promote", "halt", "resume", "rollback")
FINISHED = frozenset(("completed", "rolled_back"))  # a rollout's end (a halt is not one: it may resume)
DECISIVE = frozenset(("committed", "failed", "rolled_back"))  # phases that can change a rollout's decision


def device_info(row: dict[str, Any]) -> policy.DeviceInfo:
    return policy.DeviceInfo(row["id"], row["type"], row["channel"], row["version"], row["seq"], row["last_seen"])


def rollout_info(row: dict[str, Any]) -> policy.RolloutInfo:
    return policy.RolloutInfo(
        id=row["id"], target=row["target"], version=row["version"], previous_version=row["previous_version"],
        state=row["state"], kind=row["kind"], stage_index=row["stage_index"],
        stages=policy.stages_from_dicts(row["stages"]), halt_after_failures=row["halt_after_failures"],
        promote_after_successes=row["promote_after_successes"], created_at=row["created_at"], reason=row["reason"],
    )


def offer_record(row: dict[str, Any]) -> policy.OfferRecord:
    return policy.OfferRecord(row["device_id"], row["rollout_id"], row["version"], row["seq"], row["phase"],
                              row["attempts"], bool(row["transient"]), row["updated_at"])


# --- device side ------------------------------------------------------------------------------

def claim(c: Db, device_id: str, counter: int) -> dict[str, Any]:
    """Take the counter of an authenticated device request (what an operator asked of the device), or
    refuse it (see `claim_all`)."""
    asked = claim_all(c, [(device_id, counter)])[0]
    if isinstance(asked, Refused):
        raise asked
    return asked


def claim_all(c: Db, claims: Sequence[tuple[str, int]]) -> list[dict[str, Any] | Refused]:
    """Take the counters of authenticated device requests (device id, counter): for each, what an
    operator asked of the device, or why it is refused.

    The hub's registry refused the replays it saw; this refuses those another hub on the same
    database accepted first, and devices removed meanwhile (perhaps through another hub).
    """
    return refusals(c, [device_id for device_id, _ in claims], store.claim_counters(c, claims))


def refusals(c: Db, device_ids: Sequence[str], asked: Sequence[dict[str, Any] | None]
             ) -> list[dict[str, Any] | Refused]:
    """Each of `asked` (what the store's claim of a counter of the device returned), or for None why
    the claim was refused: the device is gone, or its counter was a replay."""
    refused = {device_id for device_id, a in zip(device_ids, asked, strict=True) if a is None}
    gone = store.missing_devices(c, refused) if refused else set()
    return [a if a is not None else UnknownDevice(device_id) if device_id in gone
            else Refused(403, "replayed counter", device_id)
            for device_id, a in zip(device_ids, asked, strict=True)]


def check(tx: Tx, cfg: FleetConfig, device_id: str, body: dict[str, Any], now: float) -> dict[str, Any]:
    """Record a device's check; what its answer tells it (docs/protocol.md): `offer`, the offer it should
    get now (None: nothing to do), and without one, `retry_s` while its transient failure waits out
    the backoff."""
    c = tx.c
    claim(c, device_id, body["counter"])
    store.record_check(c, device_id, now, body["version"], body["seq"])
    dev = store.device(c, device_id)
    assert dev is not None
    info = device_info(dev)
    _join_rollback(tx, cfg, info, now)
    candidates = [rollout_info(r) for r in store.rollouts_for_device(c, dev["type"], device_id)]
    records = {r["rollout_id"]: offer_record(r) for r in store.offers_of_device(c, device_id)}
    chosen = policy.choose_offer(info, candidates, records, now, cfg.rollout.retry_backoff_s)
    if chosen is None:
        at = policy.retry_pending(info, candidates, records, now, cfg.rollout.retry_backoff_s)
        return {"offer": None} if at is None else {"offer": None, "retry_s": max(1, math.ceil(at - now))}
    rel = store.release(c, chosen.target, chosen.version)
    if rel is None:
        return {"offer": None}
    mismatch = diagnostics.abi_mismatch(rel["meta"].get("mpy_version"), dev["firmware"].get("mpy"))
    if mismatch:
        _not_offered(tx, cfg, device_id, chosen, f"not offered: {mismatch}", now)
        return {"offer": None}
    seq = store.make_offer(c, device_id, chosen.id, chosen.version, now)
    ev = store.add_event(c, "hub", "offer", device_id=device_id, version=chosen.version, result="offered",
                         detail=f"rollout {chosen.id} seq {seq}", at=now)
    tx.emit("status", {"device_id": device_id, "rollout_id": chosen.id, "version": chosen.version, "seq": seq,
                       "phase": "offered", "at": now})
    tx.emit("history", ev.as_dict())
    meta = rel["meta"]
    offer = {
        "seq": seq, "rollout_id": chosen.id, "type": chosen.target, "version": chosen.version,
        "files": [{"name": f["name"], "size": f["size"], "sha256": f["sha256"], "url": artifact_url(cfg, f["sha256"])}
                  for f in meta.get("files", [])],
    }  # no meta: a board verifies `release` and reads nothing else of it, in a small heap
    if "_type" in meta:  # releases built before boards verified signatures carry none a board can check
        offer["release"] = release_mod.board_envelope(meta)
    if meta.get("mpy_version") is not None:
        offer["mpy_version"] = meta["mpy_version"]
    return {"offer": offer}


def _not_offered(tx: Tx, cfg: FleetConfig, device_id: str, rollout: policy.RolloutInfo, reason: str,
                 now: float) -> None:
    """A release the device cannot run: recorded as its failure in the rollout, never offered."""
    store.record_not_offered(tx.c, device_id, rollout.id, rollout.version, reason, now)
    ev = store.add_event(tx.c, "hub", "offer", device_id=device_id, version=rollout.version, result="refused",
                         detail=f"rollout {rollout.id}: {reason}", at=now)
    tx.emit("status", {"device_id": device_id, "rollout_id": rollout.id, "version": rollout.version, "seq": 0,
                       "phase": "failed", "transient": False, "detail": reason, "at": now})
    tx.emit("history", ev.as_dict())
    evaluate(tx, cfg, rollout.id, now)


def artifact_url(cfg: FleetConfig, sha256: str) -> str:
    """Where a board fetches a blob: the hub's /artifacts, or the static host of hub.artifact_base_url."""
    base = cfg.hub.artifact_base_url.rstrip("/")
    return f"{base}/{sha256[:2]}/{sha256}" if base else f"/artifacts/{sha256}"


def _join_rollback(tx: Tx, cfg: FleetConfig, device: policy.DeviceInfo, now: float) -> None:
    """Add a device running the release the newest rollout rolls back to that rollback (reopened if done)."""
    row = store.latest_rollout(tx.c, device.type)
    if row is None:
        return
    r = rollout_info(row)
    stages = policy.rollback_joined(r, device)
    if stages is None:
        return
    reopen = {"state": "active"} if r.state == "completed" else {}
    _set_state(tx, cfg, r.id, now, "rollout_extended", f"{device.id} runs {r.previous_version} too: rolled back",
               "hub", stages=[s.to_dict() for s in stages], **reopen)


def status(tx: Tx, cfg: FleetConfig, device_id: str, body: dict[str, Any], now: float) -> None:
    """Record a device's deploy phase; move its offer on; let the rollout react."""
    c, phase = tx.c, body["phase"]
    claim(c, device_id, body["counter"])
    if phase == "committed":
        store.record_deploy_phase(c, device_id, now, phase, body["version"], body["seq"])
    elif phase == "rolled_back" and body.get("from_version"):
        store.record_deploy_phase(c, device_id, now, phase, body["from_version"])
    else:
        store.record_deploy_phase(c, device_id, now, phase)
    rec = store.offer_by_seq(c, device_id, body["seq"])
    if rec is not None and phase == "failed" and policy.ended(offer_record(rec)):
        rec = None  # a later offer refused, told with the seq of the last one the device ended (docs/protocol.md)
    transient = phase == "failed" and bool(body.get("transient"))
    error = body.get("error") or {}
    if error:
        store.set_last_error(c, device_id, error)
    if rec is not None:
        store.record_offer_phase(c, device_id, rec["rollout_id"], phase, transient, body.get("detail", ""), now,
                                 error)
    result = f"{phase} (transient)" if transient else phase
    detail = "; ".join(p for p in (body.get("detail", ""), diagnostics.error_summary(error)) if p)
    ev = store.add_event(c, "device", "deploy_status", device_id=device_id, version=body["version"], result=result,
                         detail=detail, at=now)
    tx.emit("status", {"device_id": device_id, "rollout_id": rec["rollout_id"] if rec else None,
                       "version": body["version"], "seq": body["seq"], "phase": phase, "transient": transient,
                       "detail": body.get("detail", ""), "at": now})
    tx.emit("history", ev.as_dict())
    if rec is not None and phase in DECISIVE:
        evaluate(tx, cfg, rec["rollout_id"], now)


# --- rollouts ---------------------------------------------------------------------------------

def _counts(c: Db, cfg: FleetConfig, r: policy.RolloutInfo, now: float) -> policy.Counts:
    devices = [device_info(d) for d in store.devices(c, r.target)]
    records = [offer_record(o) for o in store.offers_of_rollout(c, r.id)]
    return policy.count(r, devices, records, now, cfg.rollout.trial_timeout_s)


def failures(c: Db, cfg: FleetConfig, rollout_id: int, now: float) -> list[dict[str, Any]]:
    """The devices that failed a rollout, each with its reason (`rolled_back: AttributeError: …`)."""
    devices = {d["id"]: d for d in store.devices_of_rollout(c, rollout_id)}
    out = []
    for o in sorted(store.offers_of_rollout(c, rollout_id), key=lambda o: o["device_id"]):
        if not policy.is_failure(offer_record(o), device_info(devices[o["device_id"]]), now,
                                 cfg.rollout.trial_timeout_s):
            continue
        if o["phase"] in ("failed", "rolled_back"):
            reason = diagnostics.failure_reason(o["phase"], o["detail"], o["error"])
        else:
            reason = f"{o['phase']}: silent for over {cfg.rollout.trial_timeout_s:g} s after switching"
        out.append({"device_id": o["device_id"], "phase": o["phase"], "detail": o["detail"],
                    "error": o["error"] or None, "reason": reason})
    return out


def retrying(c: Db, cfg: FleetConfig, row: dict[str, Any]) -> list[dict[str, Any]]:
    """The devices of the rollout `row` whose last failure was transient, each with its reason and when
    the hub offers the release again (`retry_at`, the policy's backoff; None while the rollout is not active)."""
    return [{"device_id": o["device_id"], "detail": o["detail"], "retry_at": retry_at(cfg, o, row["state"])}
            for o in sorted(store.offers_of_rollout(c, row["id"]), key=lambda o: o["device_id"])
            if policy.retrying(offer_record(o))]


def retry_at(cfg: FleetConfig, offer: dict[str, Any], rollout_state: str) -> float | None:
    """When the offer (a row) that failed transiently is made again, its rollout being active; else None."""
    record = offer_record(offer)
    if rollout_state != "active" or not policy.retrying(record):
        return None
    return policy.retry_at(record, cfg.rollout.retry_backoff_s)


def failure_line(failed: list[dict[str, Any]], limit: int = 3) -> str:
    """`gh-03 rolled_back: AttributeError: … (main.py:12)`, the first `limit` failed devices."""
    shown = [f"{f['device_id']} {f['reason']}" for f in failed[:limit]]
    more = f" (+{len(failed) - limit} more)" if len(failed) > limit else ""
    return "; ".join(shown) + more


def _figures(c: Db, cfg: FleetConfig, row: dict[str, Any], now: float) -> dict[str, Any]:
    return {"counts": _counts(c, cfg, rollout_info(row), now).as_dict(), "failures": failures(c, cfg, row["id"], now),
            "retrying": retrying(c, cfg, row)}


def view(c: Db, cfg: FleetConfig, row: dict[str, Any], now: float) -> dict[str, Any]:
    """A rollout as the API shows it: its row, its stages, the counts of its current stage and the
    devices that failed it and those retrying, with their reasons; a finished rollout's as they were
    when it ended."""
    out = dict(row)
    out["stage"] = row["stages"][row["stage_index"]]["name"]
    out.update(out.pop("figures", None) or _figures(c, cfg, row, now))
    return out


def _set_state(tx: Tx, cfg: FleetConfig, rollout_id: int, now: float, kind: str, reason: str, actor: str,
               **values: Any) -> dict[str, Any]:
    store.update_rollout(tx.c, rollout_id, reason, now, **values)
    row = store.rollout(tx.c, rollout_id)
    assert row is not None
    if "state" in values:  # a rollout that ends keeps its figures; one reopened counts again
        row["figures"] = _figures(tx.c, cfg, row, now) if row["state"] in FINISHED else {}
        store.update_rollout(tx.c, rollout_id, reason, now, figures=row["figures"])
    ev = store.add_event(tx.c, actor, kind, version=row["version"], result=row["state"],
                   detail=f"rollout {rollout_id} stage {row['stages'][row['stage_index']]['name']}: {reason}", at=now)
    shown = view(tx.c, cfg, row, now)
    tx.emit("rollout", shown)
    tx.emit("history", ev.as_dict())
    return shown


def evaluate(tx: Tx, cfg: FleetConfig, rollout_id: int, now: float) -> None:
    """Apply the policy's decision (halt, promote, complete) to an active rollout."""
    row = store.rollout(tx.c, rollout_id, lock=True)
    if row is None or row["state"] != "active":
        return
    r = rollout_info(row)
    decision = policy.evaluate(r, _counts(tx.c, cfg, r, now))
    if decision.action == "halt":
        why = failure_line(failures(tx.c, cfg, r.id, now))
        _set_state(tx, cfg, r.id, now, "rollout_halted", f"{decision.reason}: {why}" if why else decision.reason,
                   "hub", state="halted")
    elif decision.action == "promote":
        _set_state(tx, cfg, r.id, now, "rollout_promoted", decision.reason, "hub", stage_index=r.stage_index + 1)
    elif decision.action == "complete":
        _set_state(tx, cfg, r.id, now, "rollout_completed", decision.reason, "hub", state="completed")


def evaluate_active(tx: Tx, cfg: FleetConfig, now: float) -> None:
    """Re-evaluate every active rollout (devices that went silent after switching count as failures)."""
    for rollout_id in store.active_rollout_ids(tx.c):
        evaluate(tx, cfg, rollout_id, now)


def _previous_version(c: Db, target: str, version: str) -> str | None:
    """What the fleet runs before this rollout: the last completed rollout's version, else the commonest one."""
    done = store.last_completed_version(c, target, version)
    if done:
        return done
    versions = Counter(store.versions_running(c, target, version))
    return versions.most_common(1)[0][0] if versions else None


def start(tx: Tx, cfg: FleetConfig, body: dict[str, Any], now: float) -> dict[str, Any]:
    """Start a rollout of a published release; one active rollout per target."""
    c = tx.c
    target, version = body["target"], body["version"]
    try:
        stages = policy.stages_from_dicts(body["stages"])
        release_mod.check_version(version)
    except BadInput as exc:
        raise ApiError(400, str(exc)) from None
    halt, promote = body["halt_after_failures"], body["promote_after_successes"]
    if halt < 0 or promote < 0:
        raise ApiError(400, "halt_after_failures and promote_after_successes must be 0 or more")
    store.lock_target(c, target)  # before the release is read: a removal on another replica takes turns
    rel = store.release(c, target, version)
    if rel is None:
        raise ApiError(404, f"release {target} {version} is not published on the hub")
    refusal = release_mod.smoke_refusal(rel["meta"]) if cfg.rollout.require_smoke and target == "picow" else None
    if refusal:
        raise ApiError(409, f"release {target} {version} cannot be rolled out: {refusal}, "
                            "and [rollout] require_smoke is on")
    active = store.active_rollout_ids(c, target)
    if active:
        raise ApiError(409, f"rollout {active[0]} of {target} is still active; halt or finish it first")
    previous = _previous_version(c, target, version)
    rollout_id = store.insert_rollout(c, target, version, previous, "update", [s.to_dict() for s in stages], halt,
                                      promote, now)
    return _set_state(tx, cfg, rollout_id, now, "rollout_started",
                      f"{previous or '-'} -> {version}, stages {','.join(s.name for s in stages)}",
                      "operator", state="active")


def act(tx: Tx, cfg: FleetConfig, rollout_id: int, action: str, reason: str, now: float) -> dict[str, Any]:
    """An operator's promote, halt, resume or rollback."""
    row = store.rollout(tx.c, rollout_id, lock=True)
    if row is None:
        raise ApiError(404, f"no rollout {rollout_id}")
    r = rollout_info(row)
    allowed = ACTION_ACCEPTS[action]
    if r.state not in allowed:
        raise ApiError(409, f"rollout {rollout_id} is {r.state}; {action} needs it {' or '.join(allowed)}")
    if action == "promote":
        if r.last_stage:
            raise ApiError(409, f"rollout {rollout_id} is at its last stage {r.stage.name}")
        return _set_state(tx, cfg, r.id, now, "rollout_promoted", reason or "by hand", "operator",
                          stage_index=r.stage_index + 1)
    if action == "halt":
        return _set_state(tx, cfg, r.id, now, "rollout_halted", reason or "by hand", "operator", state="halted")
    if action == "resume":
        # the failures so far are accepted: the rollout halts again after as many new ones
        failed = _counts(tx.c, cfg, r, now).failed
        raised = {"halt_after_failures": failed + r.halt_after_failures} if r.halt_after_failures and failed else {}
        shown = _set_state(tx, cfg, r.id, now, "rollout_resumed", reason or "by hand", "operator", state="active",
                           **raised)
        evaluate(tx, cfg, r.id, now)
        return shown
    return _rollback(tx, cfg, r, reason, now)


def _rollback(tx: Tx, cfg: FleetConfig, r: policy.RolloutInfo, reason: str, now: float) -> dict[str, Any]:
    c = tx.c
    if r.previous_version is None:
        raise ApiError(409, f"rollout {r.id} has no previous version to roll back to")
    store.lock_target(c, r.target)  # as start: no removal takes the release out meanwhile
    if store.release(c, r.target, r.previous_version) is None:
        raise ApiError(409, f"release {r.target} {r.previous_version} is not on the hub; publish it to roll back")
    records = [offer_record(o) for o in store.offers_of_rollout(c, r.id)]
    try:
        stages = policy.rollback_stages(records)
    except BadInput as exc:
        raise ApiError(409, str(exc)) from None
    _set_state(tx, cfg, r.id, now, "rollout_rolled_back", reason or "by hand", "operator", state="rolled_back")
    rollout_id = store.insert_rollout(c, r.target, r.previous_version, r.version, "rollback",
                                      [s.to_dict() for s in stages], 0, 0, now)
    return _set_state(tx, cfg, rollout_id, now, "rollout_started",
                      f"rollback of rollout {r.id}: {r.version} -> {r.previous_version} on "
                      f"{len(stages[0].cohort.ids)} device(s)", "operator", state="active")
