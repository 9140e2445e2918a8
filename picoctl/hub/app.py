"""The hub's Starlette app and how uvicorn serves it."""

from __future__ import annotations

import contextlib
import logging
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..config import FleetConfig
from ..errors import BadInput, PicoctlError
from . import device_api, operator_api
from .db import ERRORS, first_line, redact
from .http import ApiError, error_response
from .state import Hub
from .tls import fingerprint

log = logging.getLogger("picoctl.hub")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no route {request.method} {request.url.path}",
               405: f"method {request.method} not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message)


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
        lifespan=lifespan,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error,
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
        h11_max_incomplete_event_size=16 * 1024,
    )
