"""Who may talk to the hub: devices by id + counter + HMAC, operators by bearer token.

The registry keeps each device's key and last accepted counter in memory. A counter is claimed the
moment a request passes, so a replay racing the original is refused too, and taken only once what
the request asked is stored: a request refused after authentication (bad field, full disk, any
error) gives its counter back. The store takes it again in the request's transaction
(picoctl.hub.engine.claim), which refuses a replay that another hub on the same database accepted.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from .. import signing
from ..protocol import DEVICE_HEADER, MAC_HEADER, is_device_id
from .http import ApiError, parse_object


@dataclass
class DeviceAuth:
    id: str
    type: str
    key: bytes
    last_counter: int  # the highest counter of a stored request
    log_until: float = 0.0  # the hub wants the board's log until then (seconds since the epoch)
    claimed: set[int] = field(default_factory=set)  # counters of requests in flight

    def mac(self, body: bytes) -> str:
        return signing.device_mac(self.key.hex(), body)

    def claim(self, counter: int) -> bool:
        """Hold `counter` for a request in flight; False when it is not above every counter seen."""
        if counter <= max(self.last_counter, *self.claimed, 0):
            return False
        self.claimed.add(counter)
        return True

    def settle(self, counter: int, stored: bool) -> None:
        """The request holding `counter` ended: its counter is taken only if it was stored."""
        self.claimed.discard(counter)
        if stored:
            self.last_counter = max(self.last_counter, counter)


def same_secret(expected: str, given: str) -> bool:
    """Constant-time comparison of a secret with what a request sent, whatever characters it holds."""
    return hmac.compare_digest(expected.encode(), given.encode())


class Refused(ApiError):
    """A device request refused for a security reason; logged as a `security` event, nothing else kept."""

    def __init__(self, status: int, message: str, device_id: str | None) -> None:
        super().__init__(status, message)
        self.device_id = device_id


class UnknownDevice(Refused):
    """A request from a device the hub does not know (never registered, or removed)."""

    def __init__(self, device_id: str) -> None:
        super().__init__(403, f"unknown device {device_id!r}", None)
        self.unknown_id = device_id


class Registry:
    def __init__(self, devices: list[dict[str, Any]]) -> None:
        self._devices = {d["id"]: DeviceAuth(d["id"], d["type"], bytes.fromhex(d["key"]), d["last_counter"],
                                             log_until=d.get("log_until") or 0.0) for d in devices}

    def add(self, device_id: str, type_: str, key_hex: str, last_counter: int = 0) -> None:
        self._devices[device_id] = DeviceAuth(device_id, type_, bytes.fromhex(key_hex), last_counter)

    def remove(self, device_id: str) -> None:
        """The device's key stops working at once."""
        self._devices.pop(device_id, None)

    def get(self, device_id: str) -> DeviceAuth | None:
        return self._devices.get(device_id)

    def authenticate(self, request: Request, body: bytes) -> tuple[DeviceAuth, dict[str, Any]]:
        """The device and its parsed body, its counter claimed (settle it), or a Refused/ApiError."""
        header_id = request.headers.get(DEVICE_HEADER, "")
        if not is_device_id(header_id):
            raise Refused(401, f"missing or malformed {DEVICE_HEADER} header", None)
        device = self._devices.get(header_id)
        if device is None:
            raise UnknownDevice(header_id)
        mac = request.headers.get(MAC_HEADER, "")
        if not mac or not same_secret(device.mac(body), mac.lower()):
            raise Refused(401, "MAC missing or wrong", header_id)
        data = parse_object(body)
        if data.get("id") != header_id:
            raise Refused(403, "body id does not match the device header", header_id)
        counter = data.get("counter")
        if not isinstance(counter, int) or isinstance(counter, bool) or counter < 0:
            raise ApiError(400, "field 'counter' must be a non-negative integer")
        if not device.claim(counter):
            raise Refused(403, "replayed counter", header_id)
        return device, data


def check_bearer(request: Request, token: str) -> None:
    """401 unless the request carries `Authorization: Bearer <token>`."""
    got = request.headers.get("authorization", "")
    scheme, _, value = got.partition(" ")
    if not token or scheme.lower() != "bearer" or not same_secret(token, value.strip()):
        raise ApiError(401, "missing or wrong operator token (Authorization: Bearer <token>)")
