"""The hub's Starlette app and how uvicorn serves it."""

from __future__ import annotations

import contextlib
import logging
from typing import AsyncIterator

import h11
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from .. import __version__
from ..config import FleetConfig
from ..errors import BadInput, PicoctlError
from . import device_api, operator_api
from .db import ERRORS, first_line, redact
from .http import ApiError, error_response, json_bytes
from .state import Hub
from .tls import fingerprint

log = logging.getLogger("picoctl.hub")
MAX_HEAD_BYTES = 16 * 1024  # request line and headers together


class HeadCheck:
    """431 for a request whose line and headers pass MAX_HEAD_BYTES, however the bytes arrived; 400,
    closing the connection, for one framed by both Content-Length and Transfer-Encoding (RFC 9112
    6.3: a proxy in front may read its body otherwise, smuggling a request past it); 400 for a NUL
    in the path or the query (PostgreSQL cannot store or even compare it).

    (uvicorn's h11 limit only bounds a head still incomplete in its buffer: one that arrives whole
    passes it.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(k) + len(v) + 4 for k, v in scope["headers"])
            names = {k.lower() for k, _ in scope["headers"]}
            response = None
            if size > MAX_HEAD_BYTES:
                response = error_response(431, f"request headers of {size} bytes are over the limit of {MAX_HEAD_BYTES}")
            elif {b"content-length", b"transfer-encoding"} <= names:
                response = error_response(400, "a request framed by both Content-Length and Transfer-Encoding",
                                          {"Connection": "close"})
            elif "\x00" in scope["path"] or b"%00" in scope["query_string"]:  # no store's text holds a NUL
                response = error_response(400, "a NUL in the request's path or query")
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class HubProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, answering a request it cannot parse in the hub's JSON error shape."""

    def send_400_response(self, msg: str) -> None:
        body = json_bytes({"error": "malformed HTTP request (request line, a header or Content-Length)"})
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no route {request.method} {request.url.path}",
               405: f"method {request.method} not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message)


async def _client_gone(request: Request, exc: Exception) -> Response:
    """A client that went away before its body ended: nothing to do, and nobody (perhaps) to tell."""
    return error_response(400, "the request's body ended before its Content-Length or last chunk")


async def _store_error(request: Request, exc: Exception) -> Response:
    return error_response(503, f"store unavailable, nothing was saved: {first_line(exc)}")


async def _bad_input(request: Request, exc: Exception) -> Response:
    return error_response(400, str(exc))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal error: {type(exc).__name__}")


def create_app(cfg: FleetConfig) -> Starlette:
    """The hub as an ASGI app. The store opens here, so a bad setup fails before serving anything."""
    hub = Hub(cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.hub = hub
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    return Starlette(
        routes=[*device_api.routes, *operator_api.routes],
        middleware=[Middleware(HeadCheck)],
        lifespan=lifespan,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, ClientDisconnect: _client_gone,
                            **{error: _store_error for error in ERRORS}, PicoctlError: _bad_input,
                            Exception: _server_error},
    )


def serve(cfg: FleetConfig, host: str | None = None, port: int | None = None) -> None:
    """Run the hub on uvicorn until it is stopped (flags override fleet.toml)."""
    import uvicorn

    cert, key = cfg.hub.tls_cert, cfg.hub.tls_key
    if bool(cert) != bool(key):
        raise BadInput("hub.tls_cert and hub.tls_key must be given together")
    if cert:
        print(f"picoctl hub: TLS certificate sha256 fingerprint {fingerprint(cfg.resolve(cert))}", flush=True)
    app = create_app(cfg)
    host, port = host or cfg.hub.listen, port or cfg.hub.port
    where = f"store {redact(cfg.hub.database_url)}" if cfg.hub.database_url else f"data in {cfg.data_dir}"
    print(f"picoctl hub {__version__}: serving on {'https' if cert else 'http'}://{host}:{port}, {where}",
          flush=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        ssl_certfile=str(cfg.resolve(cert)) if cert else None,
        ssl_keyfile=str(cfg.resolve(key)) if key else None,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=3,  # event streams never end by themselves
        http=HubProtocol,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )
