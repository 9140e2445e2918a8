"""The operator API's client (httpx), used by the CLI and the TUI.

Each route is described once, as a `Call`, by `_Routes`; `HubClient` (sync) and `AsyncHubClient`
(async) only send calls and parse answers the same way, each held to its route's shape (picoctl.answers).
Errors are PicoctlError with one clear line: "hub not reachable at URL", the hub's own `{"error": …}`,
or "hub answered GET /api/v1/devices with an unexpected shape: …" (UnexpectedAnswer).
"""

from __future__ import annotations

import base64
import json
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Generic, TypeVar

import httpx

from . import answers, release
from .answers import Shape
from .config import FetchConfig, FleetConfig
from .errors import PicoctlError, UnexpectedAnswer, Unreachable
from .fetch_bounds import MAX_ANSWER_BYTES, acapped, capped, release_fetch_s
from .protocol import META_HEADER, SSE_PING_S, SSE_SILENT_S

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
MAX_EVENT_CHARS = 1 << 20  # an event stream's event (its lines together) longer than this is not the hub's
_LINE_END = re.compile("\r\n|\r|\n")  # what ends a line of an event stream, and nothing else
T = TypeVar("T")


class HubError(PicoctlError):
    """The hub answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"hub refused (HTTP {status}): {message}")
        self.status = status
        self.message = message
        if status in (400, 413, 422):
            self.exit_code = 2  # the hub refused the operator's input: bad input, as the CLI's own checks say


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    answer: Shape = dict  # the shape its answer must have (picoctl.answers); most routes answer an object
    read_s: float | None = None  # how long the hub may work before it answers, when longer than TIMEOUT's read


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    event: str
    data: Any


def _too_long() -> PicoctlError:
    return PicoctlError(f"the hub's event stream sent an event over {MAX_EVENT_CHARS} characters")


async def sse_lines(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """The lines of a text/event-stream read as `chunks` of text, each ended by CR, LF or CRLF; a
    PicoctlError once a line grows past MAX_EVENT_CHARS, before it is held whole. Each chunk is
    split once, so a line dripped a character at a time costs no more than one sent whole."""
    parts: list[str] = []  # the line so far
    size = 0
    after_cr = False  # the last chunk ended in CR: an LF opening this one is the rest of a CRLF
    async for text in chunks:
        if not text:
            continue
        if after_cr and text.startswith("\n"):
            text = text[1:]
        after_cr = text.endswith("\r")
        *ended, rest = _LINE_END.split(text)
        for piece in ended:
            parts.append(piece)
            yield "".join(parts)
            parts, size = [], 0
        parts.append(rest)
        size += len(rest)
        if size > MAX_EVENT_CHARS:
            raise _too_long()
    if size:
        yield "".join(parts)


class SseParser:
    """Turns the lines of a text/event-stream into events (comments and pings are skipped); a
    PicoctlError for an event whose data lines together pass MAX_EVENT_CHARS."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []
        self._size = 0
        self.last_id: str | None = None

    def feed(self, line: str) -> SseEvent | None:
        if line == "":
            if not self._data:
                self._event = "message"
                return None
            text = "\n".join(self._data)
            try:
                data = json.loads(text)
            except ValueError:
                data = text
            out = SseEvent(self._id, self._event, data)
            if self._id is not None:
                self.last_id = self._id
            self._id, self._event, self._data, self._size = None, "message", [], 0
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        elif name == "data":
            self._size += len(value) + 1
            if self._size > MAX_EVENT_CHARS:
                raise _too_long()
            self._data.append(value)
        return None


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class _Routes(Generic[T]):
    """Every operator route as one method; `_do` sends it (returning a value or an awaitable)."""

    fetch_rule = FetchConfig()  # [fetch] of the hub's site, which bounds an import; from_config takes fleet.toml's

    def _do(self, call: Call) -> T:
        raise NotImplementedError

    def health(self) -> T:
        return self._do(Call("GET", "/healthz"))

    def devices(self) -> T:
        return self._do(Call("GET", "/api/v1/devices", answer=[answers.DEVICE]))

    def device(self, device_id: str) -> T:
        return self._do(Call("GET", f"/api/v1/devices/{device_id}", answer=answers.DEVICE_DETAIL))

    def readings(self, device_id: str, limit: int | None = None) -> T:
        return self._do(Call("GET", f"/api/v1/devices/{device_id}/readings", params=_params(limit=limit),
                                     answer=answers.READINGS))

    def register_device(self, device_id: str, type_: str = "picow", channel: str = "stable") -> T:
        return self._do(Call("POST", "/api/v1/devices", json={"id": device_id, "type": type_, "channel": channel},
                             answer=answers.REGISTERED))

    def remove_device(self, device_id: str) -> T:
        return self._do(Call("DELETE", f"/api/v1/devices/{device_id}", answer=answers.REMOVED))

    def set_channel(self, device_id: str, channel: str) -> T:
        return self._do(Call("POST", f"/api/v1/devices/{device_id}/channel", json={"channel": channel}))

    def check_now(self, device_id: str) -> T:
        return self._do(Call("POST", f"/api/v1/devices/{device_id}/check-now", json={}))

    def relay_heartbeat(self, device_id: str, body: dict[str, Any]) -> T:
        return self._do(Call("POST", f"/api/v1/devices/{device_id}/heartbeat", json=body))

    def request_log(self, device_id: str, seconds: int | None = None) -> T:
        return self._do(Call("POST", f"/api/v1/devices/{device_id}/logs/request", json=_params(seconds=seconds),
                             answer=answers.LOG_ASKED))

    def device_logs(self, device_id: str, after: int | None = None) -> T:
        return self._do(Call("GET", f"/api/v1/devices/{device_id}/logs", params=_params(after=after),
                             answer=answers.LOG_LINES))

    def releases(self, target: str | None = None) -> T:
        return self._do(Call("GET", "/api/v1/releases", params=_params(target=target), answer=[answers.RELEASE]))

    def publish(self, release_dir: Path) -> T:
        """Upload a release folder (meta.json and its artifact); the hub verifies it before keeping it."""
        meta = release.load_meta(Path(release_dir))
        artifact = Path(release_dir) / meta["artifact"]
        try:
            content = artifact.read_bytes()
        except OSError as exc:
            raise PicoctlError(f"{artifact}: cannot read the artifact: {exc.strerror}") from None
        header = base64.b64encode(json.dumps(meta).encode()).decode()
        return self._do(Call("PUT", f"/api/v1/releases/{meta['target']}/{meta['version']}", content=content,
                             headers={META_HEADER: header, "Content-Type": "application/octet-stream"},
                             answer=answers.PUBLISHED))

    def remove_release(self, target: str, version: str) -> T:
        """Remove a release no device runs and no rollout needs; the hub refuses (409) one in use."""
        return self._do(Call("DELETE", f"/api/v1/releases/{target}/{version}", answer=answers.RELEASE_REMOVED))

    def import_release(self, meta_url: str) -> T:
        return self._do(Call("POST", "/api/v1/releases/import", json={"url": meta_url}, answer=answers.PUBLISHED,
                             read_s=release_fetch_s(self.fetch_rule)))

    def rollouts(self) -> T:
        return self._do(Call("GET", "/api/v1/rollouts", answer=[answers.ROLLOUT]))

    def rollout(self, rollout_id: int) -> T:
        return self._do(Call("GET", f"/api/v1/rollouts/{rollout_id}", answer=answers.ROLLOUT))

    def start_rollout(self, target: str, version: str, stages: list[dict[str, Any]], halt_after_failures: int,
                      promote_after_successes: int) -> T:
        return self._do(Call("POST", "/api/v1/rollouts", json={
            "target": target, "version": version, "stages": stages, "halt_after_failures": halt_after_failures,
            "promote_after_successes": promote_after_successes}, answer=answers.ROLLOUT))

    def rollout_action(self, rollout_id: int, action: str, reason: str = "") -> T:
        return self._do(Call("POST", f"/api/v1/rollouts/{rollout_id}/{action}", json={"reason": reason}))

    def history(self, device: str | None = None, version: str | None = None, kind: str | None = None,
                after: int | None = None, limit: int | None = None) -> T:
        return self._do(Call("GET", "/api/v1/history",
                             params=_params(device=device, version=version, kind=kind, after=after, limit=limit),
                             answer=[answers.EVENT]))

    def add_history(self, event: dict[str, Any]) -> T:
        return self._do(Call("POST", "/api/v1/history", json=event))


def _parse(response: httpx.Response, body: bytes, call: Call | None = None) -> Any:
    """The answer's JSON (`body`, read at most MAX_ANSWER_BYTES), of `call`'s shape; a PicoctlError of
    one line for an error, not JSON or another shape."""
    if response.status_code >= 400:
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body[:200].decode(errors="replace") or response.reason_phrase
        raise HubError(response.status_code, message)
    if not body:
        return None  # taken, with nothing to say (a 204, or a 201 with an empty body)
    try:
        value = json.loads(body)
    except ValueError:
        raise PicoctlError(f"hub answered {response.request.url} with something that is not JSON") from None
    if call is not None and (detail := answers.mismatch(value, call.answer)):
        raise UnexpectedAnswer(call.method, call.path, detail)
    return value


def _timeout(call: Call) -> Any:
    """The timeout of `call`: the client's, or its read_s for a route the hub may work on longer."""
    return httpx.USE_CLIENT_DEFAULT if call.read_s is None else httpx.Timeout(TIMEOUT.read, connect=TIMEOUT.connect, read=call.read_s)


def _unreachable(url: str, exc: Exception) -> Unreachable:
    return Unreachable(url, str(exc) or type(exc).__name__)


class HubClient(_Routes[Any]):
    """Synchronous client; use as a context manager or call close()."""

    def __init__(self, url: str, token: str, timeout: httpx.Timeout | float = TIMEOUT, verify: bool | ssl.SSLContext = True) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, verify=verify,
                                  headers={"Authorization": f"Bearer {token}"})

    @classmethod
    def from_config(cls, cfg: FleetConfig, timeout: httpx.Timeout | float = TIMEOUT) -> HubClient:
        client = cls(cfg.hub_url, cfg.read_token(), timeout=timeout)
        client.fetch_rule = cfg.fetch
        return client

    def _do(self, call: Call) -> Any:
        try:
            with self._http.stream(call.method, call.path, params=call.params, json=call.json,
                                   content=call.content, headers=call.headers, timeout=_timeout(call)) as r:
                body = capped(r.iter_bytes(), MAX_ANSWER_BYTES, f"hub's answer to {call.method} {call.path}")
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from None
        return _parse(r, body, call)

    def download_artifact(self, sha256: str, dest: Path) -> None:
        """Stream a release artifact the hub stores (GET /artifacts/{sha256}) into `dest`."""
        try:
            with self._http.stream("GET", f"/artifacts/{sha256}") as r:
                if r.status_code != 200:
                    _parse(r, capped(r.iter_bytes(), MAX_ANSWER_BYTES, f"hub's answer to GET /artifacts/{sha256}"))
                with open(dest, "wb") as f:
                    for chunk in r.iter_bytes():
                        f.write(chunk)
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncHubClient(_Routes[Any]):
    """Asynchronous client (every route method returns an awaitable), with the event stream."""

    silent_s = SSE_SILENT_S  # a stream that says nothing, not even its ping, this long is lost

    def __init__(self, url: str, token: str, timeout: httpx.Timeout | float = TIMEOUT, verify: bool | ssl.SSLContext = True) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, verify=verify,
                                       headers={"Authorization": f"Bearer {token}"})

    @classmethod
    def from_config(cls, cfg: FleetConfig) -> AsyncHubClient:
        client = cls(cfg.hub_url, cfg.read_token())
        client.fetch_rule = cfg.fetch
        return client

    async def _send(self, call: Call) -> Any:
        try:
            async with self._http.stream(call.method, call.path, params=call.params, json=call.json,
                                         content=call.content, headers=call.headers, timeout=_timeout(call)) as r:
                body = await acapped(r.aiter_bytes(), MAX_ANSWER_BYTES, f"hub's answer to {call.method} {call.path}")
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from None
        return _parse(r, body, call)

    def _do(self, call: Call) -> Any:
        return self._send(call)

    async def events(self, last_event_id: str | None = None) -> AsyncIterator[SseEvent]:
        """Follow /api/v1/events until the stream ends; `resync` events mean: reload the lists."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        parser = SseParser()
        try:
            async with self._http.stream("GET", "/api/v1/events", headers=headers,
                                         timeout=httpx.Timeout(10.0, read=self.silent_s)) as r:
                if r.status_code >= 400:
                    _parse(r, await acapped(r.aiter_bytes(), MAX_ANSWER_BYTES, "hub's answer to GET /api/v1/events"))
                async for line in sse_lines(r.aiter_text()):
                    event = parser.feed(line)
                    if event is not None:
                        yield event
        except httpx.ReadTimeout:
            raise PicoctlError(f"the hub's event stream at {self.url} said nothing for {self.silent_s:g} s "
                               f"(it pings every {SSE_PING_S:g} s)") from None
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncHubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
