"""The device API (docs/protocol.md): check, artifacts, heartbeat, deploy status, health."""

from __future__ import annotations

import re
import time
from typing import Any, Callable, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from . import engine
from .auth import DEVICE_HEADER, DEVICE_ID, DeviceAuth, Refused
from .http import ApiError, field, json_bytes, json_response, read_body
from .ingest import Tx
from .state import Hub

T = TypeVar("T")

NONCE = re.compile(r"[0-9a-f]{32}")
READING_MAX_STR = 64


def _signed(device: DeviceAuth, data: dict[str, Any]) -> Response:
    body = json_bytes(data)
    return Response(body, 200, media_type="application/json", headers={"X-Picoctl-Mac": device.mac(body)})


async def _authenticated(hub: Hub, request: Request) -> tuple[DeviceAuth, dict[str, Any]]:
    body = await read_body(request, hub.cfg.hub.max_device_body, hub.cfg.hub.body_timeout_s)
    header_id = request.headers.get(DEVICE_HEADER, "")
    if DEVICE_ID.fullmatch(header_id):
        await hub.device(header_id)  # one another hub registered becomes known here
    try:
        return hub.registry.authenticate(request, body)
    except Refused as exc:
        hub.security_event(exc, request)
        raise


async def _write(hub: Hub, request: Request, job: Callable[[Tx], T]) -> T:
    """Run a device request's write; a replay refused by the store is logged like any refusal."""
    try:
        return await hub.writer.run(job)
    except Refused as exc:
        hub.security_event(exc, request)
        raise


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
    return {
        "version": field(data, "version", "str", required=False),
        "seq": field(data, "seq", "int", required=False),
        "uptime_s": field(data, "uptime_s", "number", required=False),
        "mem_free": field(data, "mem_free", "int", required=False),
        "rssi": field(data, "rssi", "int", required=False),
        "phase": phase or None,
        "readings": _readings(data),
    }


async def heartbeat(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    device, data = await _authenticated(hub, request)
    beat = heartbeat_fields(data) | {"device_id": device.id, "counter": data["counter"], "at": time.time()}
    try:
        check_now = await hub.record_heartbeat(beat, authenticated=True)
    except Refused as exc:
        hub.security_event(exc, request)
        raise
    return _signed(device, {"ok": True, "counter": data["counter"], "check_now": check_now})


async def check(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    device, data = await _authenticated(hub, request)
    nonce = field(data, "nonce", "str")
    if not NONCE.fullmatch(nonce):
        raise ApiError(400, "field 'nonce' must be 32 lowercase hex digits (16 random bytes)")
    body = {"counter": data["counter"], "version": field(data, "version", "str"), "seq": field(data, "seq", "int")}
    dev_type = field(data, "type", "str")
    if dev_type != device.type:
        raise ApiError(400, f"device {device.id} is registered as {device.type}, not {dev_type}")
    offer = await _write(hub, request, lambda tx: engine.check(tx, hub.cfg, device.id, body, time.time()))
    return _signed(device, {"id": device.id, "nonce": nonce, "offer": offer})


async def deploy_status(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    device, data = await _authenticated(hub, request)
    phase = field(data, "phase", "str")
    if phase not in engine.PHASES:
        raise ApiError(400, f"field 'phase': expected one of {', '.join(engine.PHASES)}, got {phase!r}")
    body = {
        "counter": data["counter"], "phase": phase, "seq": field(data, "seq", "int"),
        "version": field(data, "version", "str"), "from_version": field(data, "from_version", "str", required=False),
        "detail": field(data, "detail", "str", required=False, default="")[:500],
        "transient": field(data, "transient", "bool", required=False, default=False),
    }
    await _write(hub, request, lambda tx: engine.status(tx, hub.cfg, device.id, body, time.time()))
    return json_response({"ok": True})


async def artifact(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    sha = request.path_params["sha256"]
    return hub.blobs.response(sha.lower(), request.headers.get("range"))


async def healthz(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    ok = await hub.store_ok()
    return json_response({"ok": ok, "version": __version__, "store": "ok" if ok else "unreachable"}, 200 if ok else 503)


routes = [
    Route("/check", check, methods=["POST"]),
    Route("/heartbeat", heartbeat, methods=["POST"]),
    Route("/deploy/status", deploy_status, methods=["POST"]),
    Route("/artifacts/{sha256}", artifact, methods=["GET", "HEAD"]),
    Route("/healthz", healthz, methods=["GET"]),
]
