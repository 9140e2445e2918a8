"""HTTP plumbing shared by the hub's routes: JSON errors, capped bodies, strict JSON, typed field checks.

Every value a request brings in passes here first, held to picoctl.strict_json: integers must fit
SQLite's 64 bits, numbers must be finite, strings must be text (no NUL, no lone surrogates).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from .. import strict_json
from ..errors import BadInput


class ApiError(Exception):
    """A refusal answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(data), status_code=status, media_type="application/json", headers=headers)


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


async def read_body(request: Request, cap: int, timeout_s: float) -> bytes:
    """The request body: 413 as soon as it is known to exceed `cap` bytes, 408 if it takes over `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_capped(request, cap)
    except TimeoutError:  # the rest of the body may still come: the connection cannot be used again
        raise ApiError(408, f"request body not received within {timeout_s:g} s", {"Connection": "close"}) from None


async def stream_body(request: Request, idle_s: float, total_s: float) -> AsyncIterator[bytes]:
    """The request body as it arrives (an upload); a 408, closing the connection, once no part of it
    has come for `idle_s`, or once it is not all there `total_s` after it began."""
    loop = asyncio.get_running_loop()
    end = loop.time() + total_s
    chunks = aiter(request.stream())
    while True:
        left = end - loop.time()
        try:
            async with asyncio.timeout(min(idle_s, left)):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            why = (f"no part of the request body arrived for {idle_s:g} s" if idle_s < left else
                   f"request body not received within {total_s:.1f} s")
            raise ApiError(408, why, {"Connection": "close"}) from None
        yield chunk


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and int64(declared, "Content-Length") > cap:
        raise ApiError(413, f"body of {declared} bytes is over the limit of {cap}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise ApiError(413, f"body is over the limit of {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def int64(text: str, what: str) -> int:
    """`text` as an integer of at most 64 bits (ASCII digits only), else a 400 naming `what`."""
    try:
        return strict_json.int64(text, what)
    except BadInput as exc:
        raise ApiError(400, str(exc)) from None


def parse_json(raw: bytes, what: str = "body") -> Any:
    """JSON the hub can store (picoctl.strict_json); else a 400."""
    try:
        return strict_json.loads(raw, what)
    except BadInput as exc:
        raise ApiError(400, str(exc)) from None


def parse_object(body: bytes) -> dict[str, Any]:
    """A JSON object from `body` (checked as parse_json does), else a 400."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise ApiError(400, f"body must be a JSON object, got {type(data).__name__}")
    return data


_KINDS: dict[str, tuple[type, ...]] = {"int": (int,), "number": (int, float), "str": (str,), "bool": (bool,),
                                      "object": (dict,), "list": (list,)}


def field(data: dict[str, Any], name: str, kind: str, *, required: bool = True, default: Any = None) -> Any:
    """`data[name]` checked against `kind` (int, number, str, bool, object, list); 400 naming the field."""
    if name not in data or data[name] is None:
        if required:
            raise ApiError(400, f"missing field {name!r}")
        return default
    value = data[name]
    ok = isinstance(value, _KINDS[kind]) and (kind == "bool" or not isinstance(value, bool))
    if not ok:
        raise ApiError(400, f"field {name!r} must be {'an' if kind in ('int', 'object') else 'a'} {kind}, "
                            f"got {type(value).__name__}")
    return value
