"""The operator API under /api/v1 (bearer token): fleet, releases, rollouts, history, event stream."""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .. import diagnostics, signing
from ..config import FleetConfig
from ..fetch_bounds import allowed_s
from ..errors import BadInput
from ..release import check_target, check_version
from ..protocol import CHANNELS, DEVICE_ID_RULE, META_HEADER, is_device_id, liveness
from ..strict_json import INT64_MAX
from . import engine, logs, release_removal, releases, store
from .auth import check_bearer
from .device_api import heartbeat_fields
from .http import ApiError, field, int64, json_response, parse_object, read_body, stream_body
from .ingest import Tx
from .state import Hub
from .store import Db

MAX_JSON_BODY = 1024 * 1024
RELAY_TYPE = "pico"
MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime can show
Handler = Callable[[Request], Awaitable[Response]]


class RowId(Convertor[int]):
    """A path segment naming a row: ASCII digits of a number SQLite's 64-bit ids can hold."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("rowid", RowId())


def operator(handler: Callable[[Request, Hub], Awaitable[Response]]) -> Handler:
    """Wrap a handler: bearer token first; then a change's whole body (an upload streams its own), so
    one cut short or stalled is refused before anything is done, even by a handler that ignores it."""
    async def wrapped(request: Request) -> Response:
        hub: Hub = request.app.state.hub
        check_bearer(request, hub.token)
        if request.method in ("POST", "DELETE"):
            await _body(request)
        return await handler(request, hub)
    return wrapped


async def _body(request: Request) -> bytes:
    """The request's body, read once (capped and timed)."""
    if not hasattr(request.state, "body"):
        request.state.body = await read_body(request, MAX_JSON_BODY, request.app.state.hub.cfg.hub.body_timeout_s)
    return request.state.body


async def _json(request: Request) -> dict[str, Any]:
    return parse_object(await _body(request))


def _int_param(request: Request, name: str, default: int, low: int = 0, high: int = INT64_MAX) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = int64(raw, f"query parameter {name!r}")
    if not low <= value <= high:
        raise ApiError(400, f"query parameter {name!r} must be between {low} and {high}")
    return value


# --- devices ----------------------------------------------------------------------------------

def device_status(cfg: FleetConfig, row: dict[str, Any], now: float) -> str:
    """new (never heard from), online, stale or offline, from the type's heartbeat interval."""
    t = cfg.device_type(row["type"])
    return liveness(row["last_seen"], now, t.stale_after(), t.offline_after())


def _device_view(cfg: FleetConfig, row: dict[str, Any], offer: dict[str, Any] | None, now: float,
                 rollout_state: str = "") -> dict[str, Any]:
    """A device as the API shows it; `rollout_state`, its offer's rollout's (when offered again)."""
    info = row["info"]
    return {
        "id": row["id"], "type": row["type"], "channel": row["channel"], "version": row["version"],
        "seq": row["seq"], "phase": row["phase"], "status": device_status(cfg, row, now),
        "check_now": bool(row["check_now"]),
        "last_seen": row["last_seen"], "registered_at": row["registered_at"],
        "rssi": info.get("rssi"), "mem_free": info.get("mem_free"), "uptime_s": info.get("uptime_s"),
        "readings": info.get("readings", {}),
        "keys": info.get("keys"),  # the version of the release key set the board trusts (None: not reported)
        "offer": {**{k: offer[k] for k in ("rollout_id", "version", "seq", "phase", "detail")},
                  "transient": bool(offer["transient"]), "retry_at": engine.retry_at(cfg, offer, rollout_state)}
        if offer else None,
    } | _diagnostics_view(row)


def _diagnostics_view(row: dict[str, Any]) -> dict[str, Any]:
    """Why the device failed, if it did, and what it runs: last error, reset cause, boots, firmware."""
    error = row["last_error"] or None
    firmware = dict(row["firmware"])
    if firmware.get("mpy") is not None:
        firmware["mpy_abi"] = diagnostics.mpy_abi(firmware["mpy"])
    return {"last_error": error, "error_summary": diagnostics.error_summary(error), "reset_cause": row["reset_cause"],
            "boots": row["boots"], "firmware": firmware}


def _list_devices(cfg: FleetConfig, c: Db) -> list[dict[str, Any]]:
    now = time.time()
    offers = store.latest_offers(c)
    states = {r["id"]: r["state"] for r in store.rollouts(c)}
    out = []
    for d in store.devices(c):
        offer = offers.get(d["id"])
        out.append(_device_view(cfg, d, offer, now, states.get(offer["rollout_id"], "") if offer else ""))
    return out


async def list_devices(request: Request, hub: Hub) -> Response:
    return json_response(await hub.read(lambda s: _list_devices(hub.cfg, s)))


def _device_detail(cfg: FleetConfig, c: Db, device_id: str) -> dict[str, Any]:
    row = store.device(c, device_id)
    if row is None:
        raise ApiError(404, f"no device {device_id!r}")
    offer = store.latest_offer(c, device_id)
    rollout = store.rollout(c, offer["rollout_id"]) if offer else None
    out = _device_view(cfg, row, offer, time.time(), rollout["state"] if rollout else "")
    out["heartbeats"] = store.heartbeats(c, device_id, limit=cfg.hub.heartbeat_history)
    out["events"] = [e.as_dict() for e in store.events(c, device_id=device_id, limit=200)]
    return out


async def device_detail(request: Request, hub: Hub) -> Response:
    device_id = request.path_params["id"]
    return json_response(await hub.read(lambda s: _device_detail(hub.cfg, s, device_id)))


def _readings(c: Db, device_id: str, limit: int) -> list[dict[str, Any]]:
    if store.device(c, device_id) is None:
        raise ApiError(404, f"no device {device_id!r}")
    return [{"at": h["at"], "readings": h["readings"]} for h in store.heartbeats(c, device_id, limit=limit)]


async def device_readings(request: Request, hub: Hub) -> Response:
    """A device's heartbeat readings, oldest first: the trace `picoctl release smoke --readings` replays."""
    device_id = request.path_params["id"]
    limit = _int_param(request, "limit", hub.cfg.hub.heartbeat_history, 1, 100000)
    return json_response(await hub.read(lambda c: _readings(c, device_id, limit)))


def _announce_registered(tx: Tx, ev: store.Event, device_id: str, type_: str, channel: str) -> None:
    tx.emit("device", {"id": device_id, "type": type_, "channel": channel, "status": "new"})
    tx.emit("history", ev.as_dict())


def _register_job(device_id: str, type_: str, channel: str, key: str) -> Callable[[Tx], None]:
    def job(tx: Tx) -> None:
        ev = store.register_device(tx.c, "operator", device_id, type_, channel, key, time.time())
        if ev is None:
            raise ApiError(409, f"device {device_id!r} is already registered")
        _announce_registered(tx, ev, device_id, type_, channel)
    return job


async def register_device(request: Request, hub: Hub) -> Response:
    data = await _json(request)
    device_id, type_ = field(data, "id", "str"), field(data, "type", "str")
    channel = field(data, "channel", "str", required=False, default="stable")
    if not is_device_id(device_id):
        raise ApiError(400, f"device id {device_id!r}: expected {DEVICE_ID_RULE}")
    if type_ not in hub.cfg.device_types:
        raise ApiError(400, f"unknown device type {type_!r} (fleet.toml knows {', '.join(sorted(hub.cfg.device_types))})")
    if channel not in CHANNELS:
        raise ApiError(400, f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    key = signing.new_device_key()
    await hub.writer.run(_register_job(device_id, type_, channel, key))
    hub.registry.add(device_id, type_, key)
    return json_response({"id": device_id, "type": type_, "channel": channel, "key": key}, 201)


async def set_channel(request: Request, hub: Hub) -> Response:
    device_id = request.path_params["id"]
    channel = field(await _json(request), "channel", "str")
    if channel not in CHANNELS:
        raise ApiError(400, f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")

    def job(tx: Tx) -> None:
        if not store.set_channel(tx.c, device_id, channel):
            raise ApiError(404, f"no device {device_id!r}")
        ev = store.add_event(tx.c, "operator", "device_channel", device_id=device_id, result=channel)
        tx.emit("device", {"id": device_id, "channel": channel})
        tx.emit("history", ev.as_dict())

    await hub.writer.run(job)
    return json_response({"ok": True, "id": device_id, "channel": channel})


async def remove_device(request: Request, hub: Hub) -> Response:
    """Decommission a device: its key is refused from now on, it leaves the fleet and every rollout; its
    history stays (the event log is append-only), with a device_removed event at its end."""
    device_id = request.path_params["id"]
    if await hub.device(device_id) is None:
        raise ApiError(404, f"no device {device_id!r}")
    hub.registry.remove(device_id)  # before the write: no request of its is taken meanwhile

    def job(tx: Tx) -> dict[str, Any]:
        was = store.remove_device(tx.c, device_id)
        if was is None:
            raise ApiError(404, f"no device {device_id!r}")
        ev = store.add_event(tx.c, "operator", "device_removed", device_id=device_id, version=was["version"],
                             detail=f"type={was['type']} channel={was['channel']}")
        tx.emit("device_removed", {"id": device_id})
        tx.emit("history", ev.as_dict())
        return was

    was = await hub.writer.run(job)
    return json_response({"ok": True, "id": device_id, "removed": True, **was})


async def check_now(request: Request, hub: Hub) -> Response:
    device_id = request.path_params["id"]

    def job(tx: Tx) -> None:
        if not store.set_check_now(tx.c, device_id):
            raise ApiError(404, f"no device {device_id!r}")
        ev = store.add_event(tx.c, "operator", "check_now", device_id=device_id)
        tx.emit("device", {"id": device_id, "check_now": True})
        tx.emit("history", ev.as_dict())

    await hub.writer.run(job)
    return json_response({"ok": True, "id": device_id, "check_now": True})


async def relay_heartbeat(request: Request, hub: Hub) -> Response:
    """A heartbeat picoctl read from a USB-attached board; the board is registered on first sight."""
    device_id = request.path_params["id"]
    if not is_device_id(device_id):
        raise ApiError(400, f"device id {device_id!r}: expected {DEVICE_ID_RULE}")
    beat = heartbeat_fields(await _json(request)) | {"device_id": device_id, "counter": 0, "at": time.time()}
    key = signing.new_device_key()
    record = hub.heartbeat_job(beat, authenticated=False)

    def job(tx: Tx) -> bool:
        """Register the board on first sight and store its heartbeat: both, or neither."""
        ev = store.register_device(tx.c, "operator", device_id, RELAY_TYPE, "stable", key, beat["at"])
        if ev is not None:
            _announce_registered(tx, ev, device_id, RELAY_TYPE, "stable")
        record(tx)
        return ev is not None

    if await hub.writer.run(job):
        hub.registry.add(device_id, RELAY_TYPE, key)
    return json_response({"ok": True})


async def request_log(request: Request, hub: Hub) -> Response:
    """Ask a board for its log: its next heartbeat answer says so; it streams for `seconds`."""
    device_id = request.path_params["id"]
    device = await hub.device(device_id)
    if device is None:
        raise ApiError(404, f"no device {device_id!r}")
    body = await _body(request)
    seconds = logs.log_window(parse_object(body) if body.strip() else {})
    until = await hub.writer.run(logs.request_job(device_id, seconds))
    device.log_until = until
    return json_response({"ok": True, "id": device_id, "log_until": until})


async def device_logs(request: Request, hub: Hub) -> Response:
    device_id = request.path_params["id"]
    after = _int_param(request, "after", 0)
    limit = _int_param(request, "limit", logs.LOG_KEEP, 1, logs.LOG_KEEP)
    return json_response(await hub.read(lambda c: logs.read_logs(c, device_id, after, limit)))


# --- releases ---------------------------------------------------------------------------------

async def list_releases(request: Request, hub: Hub) -> Response:
    target = request.query_params.get("target") or None
    return json_response(await hub.read(lambda c: store.releases(c, target)))


async def publish_release(request: Request, hub: Hub) -> Response:
    target, version = request.path_params["target"], request.path_params["version"]
    meta = releases.decode_meta(request.headers.get(META_HEADER))
    if not isinstance(meta, dict) or meta.get("target") != target or meta.get("version") != version:
        raise ApiError(400, f"meta.json is not for {target} {version}")
    total_s = allowed_s(hub.cfg.fetch, releases.signed_size(meta))  # the fetch rule at the artifact's size
    meta, added = await releases.accept(hub, meta, stream_body(request, hub.cfg.hub.body_timeout_s, total_s),
                                        "operator")
    return json_response({"ok": True, "added": added, "meta": meta}, 201 if added else 200)


async def remove_release(request: Request, hub: Hub) -> Response:
    """Remove a release no device runs and no rollout needs, with the blobs only it used."""
    target, version = request.path_params["target"], request.path_params["version"]
    try:
        check_target(target)
        check_version(version)
    except BadInput as exc:
        raise ApiError(400, str(exc)) from None
    return json_response(await release_removal.remove(hub, target, version, "operator"))


async def import_release(request: Request, hub: Hub) -> Response:
    url = field(await _json(request), "url", "str")
    meta, added = await releases.fetch(hub, url, "operator")
    return json_response({"ok": True, "added": added, "meta": meta}, 201 if added else 200)


async def webhook(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    secret_file = hub.cfg.hub.webhook_secret_file
    if not secret_file:
        raise ApiError(404, "no webhook configured (hub.webhook_secret_file in fleet.toml)")
    try:
        secret = hub.cfg.resolve(secret_file).read_bytes().strip()
    except OSError as exc:
        raise ApiError(503, f"webhook secret unreadable: {exc.strerror}") from None
    if not secret:  # anyone could sign with an empty key
        raise ApiError(503, "webhook secret file is empty: no request can be trusted")
    body = await _body(request)
    releases.check_webhook_signature(secret, body, request.headers.get("x-hub-signature-256"))
    meta_url = field(parse_object(body), "meta_url", "str")
    meta, added = await releases.fetch(hub, meta_url, "webhook")
    return json_response({"ok": True, "added": added, "meta": meta}, 201 if added else 200)


# --- rollouts ---------------------------------------------------------------------------------

def _rollouts(cfg: FleetConfig, c: Db, rollout_id: int | None) -> Any:
    now = time.time()
    if rollout_id is None:
        return [engine.view(c, cfg, r, now) for r in store.rollouts(c)]
    found = store.rollout(c, rollout_id)
    if found is None:
        raise ApiError(404, f"no rollout {rollout_id}")
    return engine.view(c, cfg, found, now)


async def list_rollouts(request: Request, hub: Hub) -> Response:
    return json_response(await hub.read(lambda s: _rollouts(hub.cfg, s, None)))


async def get_rollout(request: Request, hub: Hub) -> Response:
    rollout_id = request.path_params["id"]
    return json_response(await hub.read(lambda s: _rollouts(hub.cfg, s, rollout_id)))


async def start_rollout(request: Request, hub: Hub) -> Response:
    data = await _json(request)
    body = {"target": field(data, "target", "str"), "version": field(data, "version", "str"),
            "stages": field(data, "stages", "list"),
            "halt_after_failures": field(data, "halt_after_failures", "int", required=False,
                                         default=hub.cfg.rollout.halt_after_failures),
            "promote_after_successes": field(data, "promote_after_successes", "int", required=False,
                                             default=hub.cfg.rollout.promote_after_successes)}
    shown = await hub.writer.run(lambda tx: engine.start(tx, hub.cfg, body, time.time()))
    return json_response(shown, 201)


async def rollout_action(request: Request, hub: Hub) -> Response:
    rollout_id, action = request.path_params["id"], request.path_params["action"]
    if action not in engine.ACTIONS:
        raise ApiError(404, f"unknown rollout action {action!r} (expected {', '.join(engine.ACTIONS)})")
    body = await _body(request)
    reason = field(parse_object(body), "reason", "str", required=False, default="") if body.strip() else ""
    shown = await hub.writer.run(lambda tx: engine.act(tx, hub.cfg, rollout_id, action, reason[:500], time.time()))
    return json_response(shown)


# --- history and events -----------------------------------------------------------------------

async def get_history(request: Request, hub: Hub) -> Response:
    q = request.query_params
    after = _int_param(request, "after", 0)
    limit = _int_param(request, "limit", 500, 1, 10000)
    events = await hub.read(lambda c: store.events(c, device_id=q.get("device") or None,
                                                   version=q.get("version") or None, kind=q.get("kind") or None,
                                                   after_id=after, limit=limit))
    return json_response([e.as_dict() for e in events])


async def post_history(request: Request, hub: Hub) -> Response:
    data = await _json(request)
    fields = {
        "actor": field(data, "actor", "str"), "kind": field(data, "kind", "str"),
        "device_id": field(data, "device_id", "str", required=False),
        "version": field(data, "version", "str", required=False),
        "result": field(data, "result", "str", required=False, default=""),
        "detail": field(data, "detail", "str", required=False, default=""),
        "at": field(data, "at", "number", required=False, default=None),
    }
    if fields["at"] is not None and not 0 <= fields["at"] <= MAX_TIMESTAMP:
        raise ApiError(400, f"field 'at': expected seconds since 1970 up to the year 9999, got {fields['at']}")

    def job(tx: Tx) -> dict[str, Any]:
        ev = store.add_event(tx.c, **fields).as_dict()
        tx.emit("history", ev)
        return ev

    return json_response(await hub.writer.run(job), 201)


async def events(request: Request, hub: Hub) -> Response:
    stream = hub.broadcaster.stream(request.headers.get("last-event-id"))
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


routes = [
    Route("/api/v1/devices", operator(list_devices), methods=["GET"]),
    Route("/api/v1/devices", operator(register_device), methods=["POST"]),
    Route("/api/v1/devices/{id}", operator(device_detail), methods=["GET"]),
    Route("/api/v1/devices/{id}", operator(remove_device), methods=["DELETE"]),
    Route("/api/v1/devices/{id}/readings", operator(device_readings), methods=["GET"]),
    Route("/api/v1/devices/{id}/channel", operator(set_channel), methods=["POST"]),
    Route("/api/v1/devices/{id}/check-now", operator(check_now), methods=["POST"]),
    Route("/api/v1/devices/{id}/heartbeat", operator(relay_heartbeat), methods=["POST"]),
    Route("/api/v1/devices/{id}/logs", operator(device_logs), methods=["GET"]),
    Route("/api/v1/devices/{id}/logs/request", operator(request_log), methods=["POST"]),
    Route("/api/v1/releases", operator(list_releases), methods=["GET"]),
    Route("/api/v1/releases/import", operator(import_release), methods=["POST"]),
    Route("/api/v1/releases/{target}/{version}", operator(publish_release), methods=["PUT"]),
    Route("/api/v1/releases/{target}/{version}", operator(remove_release), methods=["DELETE"]),
    Route("/api/v1/webhook", webhook, methods=["POST"]),
    Route("/api/v1/rollouts", operator(list_rollouts), methods=["GET"]),
    Route("/api/v1/rollouts", operator(start_rollout), methods=["POST"]),
    Route("/api/v1/rollouts/{id:rowid}", operator(get_rollout), methods=["GET"]),
    Route("/api/v1/rollouts/{id:rowid}/{action}", operator(rollout_action), methods=["POST"]),
    Route("/api/v1/history", operator(get_history), methods=["GET"]),
    Route("/api/v1/history", operator(post_history), methods=["POST"]),
    Route("/api/v1/events", operator(events), methods=["GET"]),
]
