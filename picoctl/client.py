"""The operator API's client (httpx), used by the CLI and the TUI.

Each route is described once, as a `Call`, by `_Routes`. `AsyncHubClient` sends calls and parses
answers, each held to its route's shape (picoctl.answers); `HubClient` (sync) runs AsyncHubClient's
calls on one event loop on a thread of its own, shared by every HubClient of the process.

Every call is done within a bound in all, connection, headers and body: a hub that drips its answer
is given up on, not waited for. An answer within the client's `timeout` (hub.answer_timeout_s); an
upload or a download of an artifact within picoctl.fetch_bounds' rule at its size; an import within
what the rule lets the hub's fetch take. The event stream is bounded by its silence only.
Asyncio's timeout bounds it all at once; sync httpx can bound only each read, not the headers.

Errors are PicoctlError with one clear line: "hub not reachable at URL", the hub's own `{"error": …}`,
"hub URL: GET /api/v1/devices: not received within 10.0 s (hub.answer_timeout_s)"
(OutOfBounds; a call that may have changed something adds how to see whether it did), or
"hub answered GET /api/v1/devices with an unexpected shape: …" (UnexpectedAnswer).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import ssl
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Generic, TypeVar

import httpx

from . import answers, release, strict_json
from .answers import Shape
from .config import FetchConfig, FleetConfig, HubConfig
from .errors import BadInput, PicoctlError, UnexpectedAnswer, Unreachable
from .fetch_bounds import MAX_ANSWER_BYTES, Deadline, acapped, allowed_s, release_fetch_s
from .protocol import DEVICE_ID_RULE, META_HEADER, SSE_PING_S, SSE_SILENT_S, is_device_id

ANSWER_S = HubConfig.answer_timeout_s  # the longest one answer may take in all, unless the client is told otherwise
CONNECT_S = 3.0
RULE_HINT = " ([fetch] floor_s plus the size at min_rate)"
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
    limit_s: float | None = None  # its bound in all when it moves more than an answer; None: the client's timeout
    limit_hint: str = ""  # where limit_s comes from, for its error
    check: str = ""  # the command that shows whether the hub made the change, should the answer be lost


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


def _device(device_id: str, rest: str = "") -> str:
    """The path of a device's route; refused for what is not a device id, which could name another
    route or ask another question (`../releases/picow/1.0.0`, `gh-01?x`)."""
    if not is_device_id(device_id):
        raise BadInput(f"{str(device_id)[:80]!r} is not a device id ({DEVICE_ID_RULE})")
    return f"/api/v1/devices/{device_id}{rest}"


def _release(target: str, version: str) -> str:
    """The path of a release's route, refused as _device is for what is not a target and a version."""
    return f"/api/v1/releases/{release.check_target(target)}/{release.check_version(version)}"


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class _Routes(Generic[T]):
    """Every operator route as one method; `_do` sends it (returning a value or an awaitable)."""

    fetch_rule: FetchConfig  # [fetch] of fleet.toml: it bounds an upload, a download and an import

    def _do(self, call: Call) -> T:
        raise NotImplementedError

    def health(self) -> T:
        return self._do(Call("GET", "/healthz"))

    def devices(self) -> T:
        return self._do(Call("GET", "/api/v1/devices", answer=[answers.DEVICE]))

    def device(self, device_id: str) -> T:
        return self._do(Call("GET", _device(device_id), answer=answers.DEVICE_DETAIL))

    def readings(self, device_id: str, limit: int | None = None) -> T:
        return self._do(Call("GET", _device(device_id, "/readings"), params=_params(limit=limit),
                                     answer=answers.READINGS))

    def register_device(self, device_id: str, type_: str = "picow", channel: str = "stable") -> T:
        return self._do(Call("POST", "/api/v1/devices", json={"id": device_id, "type": type_, "channel": channel},
                             answer=answers.REGISTERED, check="picoctl devices"))

    def remove_device(self, device_id: str) -> T:
        return self._do(Call("DELETE", _device(device_id), answer=answers.REMOVED, check="picoctl devices"))

    def set_channel(self, device_id: str, channel: str) -> T:
        return self._do(Call("POST", _device(device_id, "/channel"), json={"channel": channel},
                             check="picoctl devices"))

    def check_now(self, device_id: str) -> T:
        return self._do(Call("POST", _device(device_id, "/check-now"), json={}))

    def relay_heartbeat(self, device_id: str, body: dict[str, Any]) -> T:
        return self._do(Call("POST", _device(device_id, "/heartbeat"), json=body))

    def request_log(self, device_id: str, seconds: int | None = None) -> T:
        return self._do(Call("POST", _device(device_id, "/logs/request"), json=_params(seconds=seconds),
                             answer=answers.LOG_ASKED))

    def device_logs(self, device_id: str, after: int | None = None) -> T:
        return self._do(Call("GET", _device(device_id, "/logs"), params=_params(after=after),
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
        return self._do(Call("PUT", _release(meta["target"], meta["version"]), content=content,
                             headers={META_HEADER: header, "Content-Type": "application/octet-stream"},
                             answer=answers.PUBLISHED, limit_s=allowed_s(self.fetch_rule, len(content) + len(header)),
                             limit_hint=RULE_HINT, check="picoctl release list"))

    def remove_release(self, target: str, version: str) -> T:
        """Remove a release no device runs and no rollout needs; the hub refuses (409) one in use."""
        return self._do(Call("DELETE", _release(target, version), answer=answers.RELEASE_REMOVED,
                             check="picoctl release list"))

    def import_release(self, meta_url: str) -> T:
        return self._do(Call("POST", "/api/v1/releases/import", json={"url": meta_url}, answer=answers.PUBLISHED,
                             limit_s=release_fetch_s(self.fetch_rule),
                             limit_hint=" ([fetch]: the meta.json at its cap and the largest artifact)",
                             check="picoctl release list"))

    def rollouts(self) -> T:
        return self._do(Call("GET", "/api/v1/rollouts", answer=[answers.ROLLOUT]))

    def rollout(self, rollout_id: int) -> T:
        return self._do(Call("GET", f"/api/v1/rollouts/{rollout_id}", answer=answers.ROLLOUT))

    def start_rollout(self, target: str, version: str, stages: list[dict[str, Any]], halt_after_failures: int,
                      promote_after_successes: int) -> T:
        return self._do(Call("POST", "/api/v1/rollouts", json={
            "target": target, "version": version, "stages": stages, "halt_after_failures": halt_after_failures,
            "promote_after_successes": promote_after_successes}, answer=answers.ROLLOUT,
            check=f"picoctl rollout status --target {target}"))

    def rollout_action(self, rollout_id: int, action: str, reason: str = "") -> T:
        return self._do(Call("POST", f"/api/v1/rollouts/{rollout_id}/{action}", json={"reason": reason},
                             check=f"picoctl rollout status {rollout_id}"))

    def history(self, device: str | None = None, version: str | None = None, kind: str | None = None,
                after: int | None = None, limit: int | None = None) -> T:
        return self._do(Call("GET", "/api/v1/history",
                             params=_params(device=device, version=version, kind=kind, after=after, limit=limit),
                             answer=[answers.EVENT]))

    def add_history(self, event: dict[str, Any]) -> T:
        return self._do(Call("POST", "/api/v1/history", json=event, answer=answers.Null(dict)))


def _parse(response: httpx.Response, body: bytes, call: Call | None = None) -> Any:
    """The answer's JSON (`body`, read at most MAX_ANSWER_BYTES), of `call`'s shape; a PicoctlError of
    one line for an error, a redirect (never followed: the token goes only to the hub), not JSON or
    another shape."""
    if 300 <= response.status_code < 400:
        to = response.headers.get("location", "")
        raise HubError(response.status_code, f"a redirect{' to ' + to[:200] if to else ''}, not an answer: set "
                                             "$PICOCTL_HUB_URL or hub.public_url in fleet.toml to where the hub answers")
    if response.status_code >= 400:
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body[:200].decode(errors="replace") or response.reason_phrase
        raise HubError(response.status_code, message)
    if not body:
        if call is not None and answers.mismatch(None, call.answer):
            raise UnexpectedAnswer(call.method, call.path, f"the answer: expected {answers.describe(call.answer)}, got nothing")
        return None  # taken, with nothing to say (a 204, or a 201 with an empty body)
    try:
        value = strict_json.loads(body, "the answer")  # as the hub keeps JSON: no 1e400 to overflow a reader
    except BadInput as exc:
        raise PicoctlError(f"hub answered {response.request.url} with something that is not JSON ({exc})") from None
    if call is not None and (detail := answers.mismatch(value, call.answer)):
        raise UnexpectedAnswer(call.method, call.path, detail)
    return value


def trust(cfg: FleetConfig) -> bool | ssl.SSLContext:
    """What an https:// hub's certificate is checked against: the system's CAs, and the hub's own
    certificate (hub.tls_cert) where fleet.toml names one this machine has, so a self-signed hub is
    trusted as the boards that pin it trust it."""
    cert = cfg.resolve(cfg.hub.tls_cert) if cfg.hub.tls_cert else None
    if cert is None or not cert.is_file():
        return True
    ctx = ssl.create_default_context()
    try:
        ctx.load_verify_locations(cafile=str(cert))
    except (OSError, ssl.SSLError) as exc:
        raise BadInput(f"{cert}: hub.tls_cert is not a certificate to trust: {exc}") from None
    return ctx


def _unreachable(url: str, exc: Exception) -> Unreachable:
    return Unreachable(url, str(exc) or type(exc).__name__)


def _maybe_done(check: str) -> str:
    return f"; the hub may or may not have done it: `{check}` shows whether it did" if check else ""


class AsyncHubClient(_Routes[Any]):
    """Asynchronous client (every route method returns an awaitable), with the event stream.

    `timeout`: the seconds one answer may take in all; `fetch_rule` bounds uploads, downloads, imports."""

    silent_s = SSE_SILENT_S  # a stream that says nothing, not even its ping, this long is lost

    def __init__(self, url: str, token: str, timeout: float = ANSWER_S, verify: bool | ssl.SSLContext = True,
                 fetch_rule: FetchConfig | None = None) -> None:
        self.url = url.rstrip("/")
        self.answer_s = timeout
        self.fetch_rule = fetch_rule or FetchConfig()
        # each call's Deadline bounds it in all; httpx's own timeouts only say a dead host sooner, and an
        # upload's or a download's silent link (floor_s, as every fetch's: picoctl.fetch_bounds). An import
        # is silent while the hub fetches: only its Deadline bounds it.
        self._http = httpx.AsyncClient(base_url=self.url, verify=verify, headers={"Authorization": f"Bearer {token}"},
                                       timeout=httpx.Timeout(None, connect=CONNECT_S))
        self._transfer = httpx.Timeout(self.fetch_rule.floor_s, connect=CONNECT_S)

    @classmethod
    def from_config(cls, cfg: FleetConfig) -> AsyncHubClient:
        return cls(cfg.hub_url, cfg.read_token(), cfg.hub.answer_timeout_s, trust(cfg), cfg.fetch)

    def _deadline(self, call: Call) -> Deadline:
        """`call`'s bound from now: its limit_s, else the client's timeout."""
        limit_s, hint = (self.answer_s, " (hub.answer_timeout_s)") if call.limit_s is None else (call.limit_s, call.limit_hint)
        return Deadline(limit_s, f"hub {self.url}: {call.method} {call.path}", hint + _maybe_done(call.check))

    def _broken(self, call: Call, exc: httpx.TransportError) -> PicoctlError:
        """The error of a call the transport failed: unreachable, or cut off after the hub may have acted."""
        if call.check and not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return PicoctlError(f"hub {self.url}: {call.method} {call.path} was cut off ({str(exc) or type(exc).__name__})"
                                f"{_maybe_done(call.check)}")
        return _unreachable(self.url, exc)

    async def _send(self, call: Call) -> Any:
        deadline = self._deadline(call)
        try:
            async with deadline.held(), self._http.stream(call.method, call.path, params=call.params, json=call.json,
                                                          content=call.content, headers=call.headers,
                                                          timeout=self._transfer if call.content else httpx.USE_CLIENT_DEFAULT) as r:
                body = await acapped(r.aiter_bytes(), MAX_ANSWER_BYTES, deadline.what)
        except httpx.TransportError as exc:
            raise self._broken(call, exc) from None
        return _parse(r, body, call)

    def _do(self, call: Call) -> Any:
        return self._send(call)

    async def download_artifact(self, sha256: str, dest: Path, size: int) -> None:
        """The release artifact of `size` bytes the hub stores (GET /artifacts/{sha256}) into `dest`, within
        the fetch rule at that size; `dest` is removed if it does not arrive whole."""
        path = f"/artifacts/{sha256}"
        deadline = Deadline(allowed_s(self.fetch_rule, size), f"hub {self.url}: GET {path}", RULE_HINT)
        try:
            async with deadline.held(), self._http.stream("GET", path, timeout=self._transfer) as r:
                if r.status_code != 200:
                    _parse(r, await acapped(r.aiter_bytes(), MAX_ANSWER_BYTES, deadline.what))
                with open(dest, "wb") as f:
                    async for chunk in deadline.chunks(r, size):
                        f.write(chunk)
        except BaseException as exc:
            dest.unlink(missing_ok=True)
            if isinstance(exc, httpx.TransportError):
                raise _unreachable(self.url, exc) from None
            raise

    async def events(self, last_event_id: str | None = None) -> AsyncIterator[SseEvent]:
        """Follow /api/v1/events until the stream ends; `resync` events mean: reload the lists. Its headers
        come within the client's timeout, as an answer's; then only its silence bounds it."""
        parser = SseParser()
        opening = Deadline(self.answer_s, f"hub {self.url}: GET /api/v1/events", " (hub.answer_timeout_s)")
        request = self._http.build_request("GET", "/api/v1/events", timeout=httpx.Timeout(10.0, read=self.silent_s),
                                           headers={"Last-Event-ID": last_event_id} if last_event_id else {})
        try:
            async with opening.held():
                r = await self._http.send(request, stream=True)
            try:
                if not 200 <= r.status_code < 300:
                    _parse(r, await acapped(r.aiter_bytes(), MAX_ANSWER_BYTES, opening.what))
                async for line in sse_lines(r.aiter_text()):
                    event = parser.feed(line)
                    if event is not None:
                        yield event
            finally:
                await r.aclose()
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


_loops: dict[int, asyncio.AbstractEventLoop] = {}  # by process: a forked child starts its own
_loops_lock = threading.Lock()


def _client_loop() -> asyncio.AbstractEventLoop:
    """The event loop every HubClient of this process runs its calls on, on a daemon thread started on first use."""
    with _loops_lock:
        loop = _loops.get(os.getpid())
        if loop is None:
            loop = _loops[os.getpid()] = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="picoctl hub client", daemon=True).start()
        return loop


def _run(work: Coroutine[Any, Any, T]) -> T:
    """`work` run to its end on the client loop, from any thread (one running a loop of its own too)."""
    future = asyncio.run_coroutine_threadsafe(work, _client_loop())
    try:
        return future.result()
    finally:
        future.cancel()  # waiting here was interrupted (Ctrl-C, SIGTERM): the call stops too


class HubClient(_Routes[Any]):
    """Synchronous client: AsyncHubClient's calls, bounds and errors, each waited for here. Use as a context
    manager or call close()."""

    def __init__(self, url: str, token: str, timeout: float = ANSWER_S, verify: bool | ssl.SSLContext = True,
                 fetch_rule: FetchConfig | None = None) -> None:
        self._async = AsyncHubClient(url, token, timeout, verify, fetch_rule)
        self.url = self._async.url
        self.fetch_rule = self._async.fetch_rule

    @classmethod
    def from_config(cls, cfg: FleetConfig, timeout: float | None = None) -> HubClient:
        return cls(cfg.hub_url, cfg.read_token(), timeout or cfg.hub.answer_timeout_s, trust(cfg), cfg.fetch)

    def _do(self, call: Call) -> Any:
        return _run(self._async._send(call))

    def download_artifact(self, sha256: str, dest: Path, size: int) -> None:
        """AsyncHubClient.download_artifact."""
        _run(self._async.download_artifact(sha256, dest, size))

    def close(self) -> None:
        _run(self._async.aclose())

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
