"""The client's reading of the hub's event stream (AsyncHubClient.events) from a real HTTP server: lines
ended by CR, LF or CRLF however the bytes are cut, and a stream that sends an event too long to be the
hub's is refused before it is held whole."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from loopback import Peer, serving
from picoctl.client import MAX_EVENT_CHARS, AsyncHubClient, SseEvent, sse_lines
from picoctl.errors import PicoctlError


class _Stream(Peer):
    """Sends `pieces` as the event stream, one write and a short pause each, then ends it."""

    pieces: list[bytes] = []
    url = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in self.pieces:
            self.wfile.write(piece)
            self.wfile.flush()
            time.sleep(0.02)


@pytest.fixture
def stream() -> Iterator[type[_Stream]]:
    class Handler(_Stream):
        pieces: list[bytes] = []

    with serving(Handler) as url:
        Handler.url = url
        yield Handler


def events(url: str) -> list[SseEvent]:
    async def run() -> list[SseEvent]:
        async with AsyncHubClient(url, "t") as client:
            return [ev async for ev in client.events()]
    return asyncio.run(run())


def test_lines_end_at_cr_lf_or_crlf_wherever_the_bytes_are_cut(stream: type[_Stream]) -> None:
    stream.pieces = [b"id: 1\r", b"\nevent: release\r\ndata: {\"a\": 1}\r", b"\r", b"\n",
                     b"id: 2\revent: heartbeat\rdata: [1,\rdata: 2]\r\r", b": ping\n\n",
                     b"id: 3\ndata: \"last\"\n\n"]
    got = [(ev.id, ev.event, ev.data) for ev in events(stream.url)]
    assert got == [("1", "release", {"a": 1}), ("2", "heartbeat", [1, 2]), ("3", "message", "last")]


def test_an_event_just_under_the_cap_is_read(stream: type[_Stream]) -> None:
    body = "x" * (MAX_EVENT_CHARS - 100)
    stream.pieces = [b"id: 1\ndata: \"", body.encode(), b"\"\n\n"]
    assert [len(ev.data) for ev in events(stream.url)] == [len(body)]


@pytest.mark.parametrize("shape", ["one line", "many lines"])
def test_an_event_over_the_cap_is_refused_before_it_is_held(stream: type[_Stream], shape: str) -> None:
    """A line with no end, or data lines with no blank line between them: either would hold the whole
    of what a hostile stream sends."""
    piece = b"x" * 65536 if shape == "one line" else b"data: " + b"x" * 65530 + b"\n"
    stream.pieces = [b"id: 1\n" + (b"data: " if shape == "one line" else b"")] + [piece] * 40  # 2.5 MiB
    with pytest.raises(PicoctlError, match=f"sent an event over {MAX_EVENT_CHARS} characters"):
        events(stream.url)


def test_every_cut_of_a_stream_gives_the_same_lines() -> None:
    """The splitter alone, at every pair of cut points, empty chunks among them."""
    text = "id: 1\r\nevent: a\rdata: x\n\r\ndata: y\r\r\n: ping\n\nlast"
    want = ["id: 1", "event: a", "data: x", "", "data: y", "", ": ping", "", "last"]

    async def lines(pieces: list[str]) -> list[str]:
        async def chunks() -> AsyncIterator[str]:
            for piece in pieces:
                yield piece
        return [line async for line in sse_lines(chunks())]

    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            pieces = [text[:i], "", text[i:j], text[j:]]
            assert asyncio.run(lines(pieces)) == want, pieces
