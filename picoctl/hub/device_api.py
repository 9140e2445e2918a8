"""The device API (docs/protocol.md): check, artifacts, heartbeat, deploy status, health."""

from __future__ import annotations

import re
import time
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__, keyset
from ..protocol import DEVICE_HEADER, MAC_HEADER, READING_MAX_STR, UPTIME_MAX_S, is_device_id
from . import engine, logs
from .auth import DeviceAuth, Refused, UnknownDevice
from .http import ApiError, field, json_bytes, json_response, read_body
from .state import Hub

NONCE = re.compile(r"[0-9a-f]{32}")


def _signed(device: DeviceAuth, data: dict[str, Any]) -> Response:
    body = json_bytes(data)
    return Response(body, 200, media_type="application/json", headers={MAC_HEADER: device.mac(body)})


DeviceHandler = Callable[[Hub, DeviceAuth, dict[str, Any]], Awaitable[Response]]


def device_route(handler: DeviceHandler, cap: int | None = None) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: authenticate the device, then hand it the hub, the device and the parsed body.

    The request's counter is taken only when the handler returns (what it asked is stored); any
    refusal or error gives it back, so the board's next request is not taken for a replay.
    """
    async def wrapped(request: Request) -> Response:
        hub: Hub = request.app.state.hub
        body = await read_body(request, cap or hub.cfg.hub.max_device_body, hub.cfg.hub.body_timeout_s)
        header_id = request.headers.get(DEVICE_HEADER, "")
        if is_device_id(header_id):
            await hub.device(header_id)  # one another hub on the same database registered becomes known
        stored = False
        try:
            device, data = hub.registry.authenticate(request, body)
            try:
                response = await handler(hub, device, data)
                stored = True
                return response
            finally:
                device.settle(data["counter"], stored)
        except Refused as exc:  # by the registry, or by the store (a replay another hub accepted)
            if isinstance(exc, UnknownDevice):  # removed through another hub: its key stops working here too
                hub.registry.remove(exc.unknown_id)
            hub.security_event(exc, request)
            raise
    return wrapped


def _readings(data: dict[str, Any]) -> dict[str, Any]:
    readings = field(data, "readings", "object", required=False, default={})
    for k, v in readings.items():
        if isinstance(v, str) and len(v) <= READING_MAX_STR:
            continue
        if isinstance(v, (bool, int, float)):
            continue
        raise ApiError(400, f"readings.{k}: expected a number, a boolean or a string of at most {READING_MAX_STR}")
    return readings


def heartbeat_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of a heartbeat body, type-checked."""
    phase = field(data, "phase", "str", required=False)  # the board's own state, shown as it is
    if phase is not None and len(phase) > READING_MAX_STR:
        raise ApiError(400, f"field 'phase': at most {READING_MAX_STR} characters")
    uptime = field(data, "uptime_s", "number", required=False)
    if uptime is not None and not 0 <= uptime <= UPTIME_MAX_S:
        raise ApiError(400, f"field 'uptime_s' must be between 0 and {UPTIME_MAX_S}")
    return {
        "version": field(data, "version", "str", required=False),
        "seq": field(data, "seq", "int", required=False),
        "uptime_s": uptime,
        "mem_free": field(data, "mem_free", "int", required=False),
        "rssi": field(data, "rssi", "int", required=False),
        "phase": phase or None,
        "readings": _readings(data),
        "keys": field(data, "keys", "int", required=False),  # the version of the key set the board trusts
    } | logs.beat_diagnostics(data)


async def heartbeat(hub: Hub, device: DeviceAuth, data: dict[str, Any]) -> Response:
    beat = heartbeat_fields(data) | {"device_id": device.id, "counter": data["counter"], "at": time.time()}
    check_now, device.log_until = await hub.record_heartbeat(beat, authenticated=True)
    answer = {"ok": True, "counter": data["counter"], "check_now": check_now}
    log_s = logs.log_seconds(device.log_until, beat["at"])
    if log_s:
        answer["log_s"] = log_s
    return _signed(device, answer)


async def check(hub: Hub, device: DeviceAuth, data: dict[str, Any]) -> Response:
    nonce = field(data, "nonce", "str")
    if not NONCE.fullmatch(nonce):
        raise ApiError(400, "field 'nonce' must be 32 lowercase hex digits (16 random bytes)")
    body = {"counter": data["counter"], "version": field(data, "version", "str"), "seq": field(data, "seq", "int")}
    dev_type = field(data, "type", "str")
    if dev_type != device.type:
        raise ApiError(400, f"device {device.id} is registered as {device.type}, not {dev_type}")
    keys = field(data, "keys", "int", required=False)  # every field checked before anything is stored
    told = await hub.writer.run(lambda tx: engine.check(tx, hub.cfg, device.id, body, time.time()))
    answer = {"id": device.id, "nonce": nonce, **told}
    newer = keyset.newer_for(hub.cfg, keys)
    if newer is not None:
        answer["keys"] = newer
    return _signed(device, answer)


async def deploy_status(hub: Hub, device: DeviceAuth, data: dict[str, Any]) -> Response:
    phase = field(data, "phase", "str")
    if phase not in engine.PHASES:
        raise ApiError(400, f"field 'phase': expected one of {', '.join(engine.PHASES)}, got {phase!r}")
    body = {
        "counter": data["counter"], "phase": phase, "seq": field(data, "seq", "int"),
        "version": field(data, "version", "str"), "from_version": field(data, "from_version", "str", required=False),
        "detail": field(data, "detail", "str", required=False, default="")[:500],
        "transient": field(data, "transient", "bool", required=False, default=False),
        "error": logs.status_error(data) if phase in ("failed", "rolled_back") else None,
    }
    await hub.writer.run(lambda tx: engine.status(tx, hub.cfg, device.id, body, time.time()))
    return json_response({"ok": True})


async def post_logs(hub: Hub, device: DeviceAuth, data: dict[str, Any]) -> Response:
    now = time.time()
    await hub.writer.run(logs.log_post_job(device.id, data, now))
    return _signed(device, {"ok": True, "counter": data["counter"], "log_s": logs.log_seconds(device.log_until, now)})


async def artifact(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    sha = request.path_params["sha256"]
    return hub.blobs.response(sha.lower())


async def healthz(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    ok = await hub.store_ok()
    return json_response({"ok": ok, "version": __version__, "store": "ok" if ok else "unreachable"}, 200 if ok else 503)


routes = [
    Route("/check", device_route(check), methods=["POST"]),
    Route("/heartbeat", device_route(heartbeat), methods=["POST"]),
    Route("/deploy/status", device_route(deploy_status), methods=["POST"]),
    Route("/logs", device_route(post_logs, logs.LOG_BODY_MAX), methods=["POST"]),
    Route("/artifacts/{sha256}", artifact, methods=["GET", "HEAD"]),
    Route("/healthz", healthz, methods=["GET"]),
]
