"""How long and how large an answer picoctl fetches may be: one rule for every outgoing fetch.

A fetch of a body of at most `size` bytes (the size a signed meta.json gives its artifact, or the
cap of an answer read into memory) must be done, connection and headers included, within

    allowed_s(rule, size) = rule.floor_s + size / rule.min_rate

([fetch] floor_s and min_rate in fleet.toml). The bound grows with the size, so a big artifact over a
slow but steady link still arrives, while a server that drips its answer (each byte inside any read
timeout) is given up on at a time known from the start. A total fixed up front, rather than a rate
measured as the fetch goes, is one number the error can name and no burst of bytes can stretch.
No answer is read into memory past its cap: MAX_ANSWER_BYTES unless the caller knows a smaller one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager

import httpx

from .config import FetchConfig
from .errors import OutOfBounds
from .release import MAX_META_BYTES, MAX_RELEASE_BYTES

MAX_ANSWER_BYTES = 1 << 20  # a hub's or a release server's JSON answer; none is near this


def capped(chunks: Iterable[bytes], cap: int, what: str) -> bytes:
    """The chunks joined, refused (OutOfBounds, naming `what`) as soon as they pass `cap` bytes."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > cap:
            raise _too_large(what, cap)
    return bytes(body)


async def acapped(chunks: AsyncIterable[bytes], cap: int, what: str) -> bytes:
    """`capped` for an async stream."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > cap:
            raise _too_large(what, cap)
    return bytes(body)


def _too_large(what: str, cap: int) -> OutOfBounds:
    return OutOfBounds(f"{what[:160]}: the answer is over {cap} bytes")


def allowed_s(rule: FetchConfig, size: int) -> float:
    """The seconds a fetch of `size` bytes may take in all."""
    return rule.floor_s + size / rule.min_rate


def release_fetch_s(rule: FetchConfig) -> float:
    """The longest a fetch of a release by URL may take: its meta.json at the cap, then the largest
    artifact the hub takes (what a client asking the hub to import must be ready to wait)."""
    return allowed_s(rule, MAX_META_BYTES) + allowed_s(rule, MAX_RELEASE_BYTES)


class Deadline:
    """`limit_s` from now, for a fetch of `what` (named in the errors, with `hint`)."""

    def __init__(self, limit_s: float, what: str, hint: str = "") -> None:
        self.limit_s = limit_s
        self.what = what
        self.hint = hint
        self._at = asyncio.get_running_loop().time() + limit_s

    @classmethod
    def of(cls, rule: FetchConfig, size: int, what: str) -> Deadline:
        """allowed_s(rule, size) from now."""
        return cls(allowed_s(rule, size), what, " ([fetch] floor_s plus the size at min_rate)")

    def _too_slow(self) -> OutOfBounds:
        return OutOfBounds(f"{self.what[:160]}: not received within {self.limit_s:.1f} s{self.hint}")

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """A block that must end by the deadline (opening a stream: connection, redirects, headers)."""
        try:
            async with asyncio.timeout_at(self._at):
                yield
        except TimeoutError:
            raise self._too_slow() from None

    async def chunks(self, response: httpx.Response, cap: int | None) -> AsyncIterator[bytes]:
        """The body of `response`, each chunk by the deadline, refused past `cap` bytes (None: the
        caller caps it)."""
        got = 0
        it = response.aiter_bytes()
        while True:
            try:
                async with asyncio.timeout_at(self._at):
                    chunk = await anext(it)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise self._too_slow() from None
            got += len(chunk)
            if cap is not None and got > cap:
                raise _too_large(self.what, cap)
            yield chunk

    async def body(self, response: httpx.Response, cap: int = MAX_ANSWER_BYTES) -> bytes:
        """The whole body of `response`, by the deadline and at most `cap` bytes."""
        return await acapped(self.chunks(response, None), cap, self.what)
