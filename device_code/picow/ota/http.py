"""A small HTTP/1.0 client on non-blocking sockets, run cooperatively: one request per connection.

Every operation is a generator. It yields when the socket is not ready (a `(socket, poll mask)` pair
to wait on, see wait()) or just to let the caller look at the clock (None), and raises
OSError(ETIMEDOUT) once the caller's deadline (a time.ticks_ms value) has passed, so a peer that
answers one byte per second holds neither the app nor the watchdog. The response is read through the
caller's buffer: the head line by line within MAX_HEADER_LINE, bodies chunk by chunk, so no answer,
however long, is held in RAM beyond the caller's buffer (small JSON bodies that do not fit in it are
allocated only up to their cap, and only when free memory allows).

https:// URLs go through the TLS context the caller passes (ota/tls.py: the hub's pinned certificate).
"""

import gc
import select
import socket
import time

import ota
from ota import HTTPError  # noqa: F401  raised here, named http.HTTPError by callers
from ota.protocol import MAX_HEADER_LINE, MAX_HEADERS

ota.unload("protocol")  # the constants are bound

EAGAIN = 11
ECONNRESET = 104
ETIMEDOUT = 110
EINPROGRESS = 115
MEM_RESERVE = 8192  # free heap a body allocation must leave behind
IN = select.POLLIN
OUT = select.POLLOUT
_poller = select.poll()


def split_url(url):
    """`http[s]://host[:port]/path` -> (host, port, path, secure)."""
    if url.startswith("http://"):
        rest, port, secure = url[7:], 80, False
    elif url.startswith("https://"):
        rest, port, secure = url[8:], 443, True
    else:
        raise ValueError("only http:// and https:// URLs are supported: " + url)
    slash = rest.find("/")
    hostport, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    colon = hostport.rfind(":")
    if colon >= 0:
        return hostport[:colon], int(hostport[colon + 1 :]), path, secure
    return hostport, port, path, secure


def wait(what, ms):
    """Sleep until `what` (a `(socket, mask)` yielded by an operation) is ready, for at most `ms`."""
    sock, mask = what
    _poller.register(sock, mask)
    try:
        _poller.poll(ms)
    finally:
        _poller.unregister(sock)


def _ready(sock, mask):
    _poller.register(sock, mask)
    try:
        return bool(_poller.poll(0))
    finally:
        _poller.unregister(sock)


def _late(until):
    if time.ticks_diff(time.ticks_ms(), until) >= 0:
        raise OSError(ETIMEDOUT)


def _recv(sock, mv, until):
    """Read what is there into `mv` (at least one byte; 0 at the end of the stream)."""
    while True:
        try:
            n = sock.readinto(mv)
        except OSError as exc:
            if exc.errno != EAGAIN:
                raise
            n = None
        if n is not None:
            return n
        _late(until)
        yield sock, IN


def _send(sock, data, until):
    mv = memoryview(data)
    while mv:
        try:
            n = sock.write(mv)
        except OSError as exc:
            if exc.errno != EAGAIN:
                raise
            n = None
        if n:
            mv = mv[n:]
            continue
        _late(until)
        yield sock, OUT | IN  # a TLS handshake may be waiting for either


class Response:
    """Status line and the headers the agent uses; the body is read through `buf` (a bytearray)."""

    def __init__(self, sock, buf):
        self.sock = sock
        self.buf = buf
        self.mv = memoryview(buf)
        self.start = 0  # buffered bytes not consumed yet: buf[start:end]
        self.end = 0
        self.status = 0
        self.length = -1
        self.mac = None
        self.content_range = None
        self.remaining = -1

    def _line(self, until):
        """The next head line without its line end, refused beyond MAX_HEADER_LINE as it arrives."""
        while True:
            nl = self.buf.find(b"\n", self.start, self.end)
            if nl >= 0:
                line = bytes(self.mv[self.start : nl])
                self.start = nl + 1
                return line[:-1] if line.endswith(b"\r") else line
            if self.end - self.start >= MAX_HEADER_LINE:
                raise HTTPError(self.status, "header line too long")
            if self.end == len(self.buf):  # room for one more line at the front
                n = self.end - self.start
                self.mv[:n] = bytes(self.mv[self.start : self.end])
                self.start, self.end = 0, n
            got = yield from _recv(self.sock, self.mv[self.end :], until)
            if not got:
                raise HTTPError(self.status, "connection closed in the head")
            self.end += got

    def read_head(self, until):
        parts = (yield from self._line(until)).split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise HTTPError(0, "bad status line")
        self.status = int(parts[1])
        for _ in range(MAX_HEADERS):
            line = yield from self._line(until)
            if not line:
                self.remaining = self.length
                return
            colon = line.find(b":")
            if colon < 0:
                continue
            name = line[:colon].strip().lower()
            value = line[colon + 1 :].strip()
            if name == b"content-length":
                if not value.isdigit():
                    raise HTTPError(self.status, "bad Content-Length")
                self.length = int(value)
            elif name == b"x-picoctl-mac":
                self.mac = value.decode().lower()
            elif name == b"content-range":
                self.content_range = value.decode()
            elif name == b"transfer-encoding" and value.lower() != b"identity":
                raise HTTPError(self.status, "unsupported transfer encoding")
        raise HTTPError(self.status, "too many header lines")

    def chunk(self, until):
        """The next body bytes, as a memoryview into the buffer valid until the next call; an empty
        one at the end of the body. A body cut short of its Content-Length raises ECONNRESET."""
        while True:
            out = self.ready_chunk()
            if out is not None:
                return out
            _late(until)
            yield self.sock, IN

    def ready_chunk(self):
        """chunk() without waiting: None when no byte is there yet."""
        if self.remaining == 0:
            return self.mv[:0]
        if self.start == self.end:
            limit = len(self.buf) if self.remaining < 0 or self.remaining > len(self.buf) else self.remaining
            try:
                n = self.sock.readinto(self.mv[:limit])
            except OSError as exc:
                if exc.errno != EAGAIN:
                    raise
                n = None
            if n is None:
                return None
            self.start, self.end = 0, n
            if n == 0:
                if self.remaining > 0:
                    raise OSError(ECONNRESET)  # closed before Content-Length bytes arrived
                return self.mv[:0]
        n = self.end - self.start
        if 0 <= self.remaining < n:
            n = self.remaining
        out = self.mv[self.start : self.start + n]
        self.start += n
        if self.remaining > 0:
            self.remaining -= n
        return out

    def read_all(self, cap, until):
        """The whole body (a memoryview), refused above `cap` bytes. A body that fits in the buffer
        stays there; a larger one gets one allocation of its size (or, without Content-Length, of
        twice the room so far), made only when the heap can spare it."""
        if self.length > cap:
            raise HTTPError(self.status, "response body too large")
        dst, at, got = self.mv, self.start, self.end - self.start
        if self.length >= 0:
            got = min(got, self.length)
        self.start = self.end
        while self.length < 0 or got < self.length:
            if self.length >= 0 and at + self.length > len(dst) or at + got == len(dst):
                size = self.length if self.length >= 0 else min(cap + 1, 2 * len(dst))
                new = memoryview(_allocate(size))
                new[:got] = dst[at : at + got]
                dst, at = new, 0
            limit = at + self.length if self.length >= 0 else len(dst)
            n = yield from _recv(self.sock, dst[at + got : limit], until)
            if not n:
                if self.length >= 0:
                    raise OSError(ECONNRESET)
                break
            got += n
            if got > cap:
                raise HTTPError(self.status, "response body too large")
        self.remaining = 0
        return dst[at : at + got]

    def close(self):
        self.sock.close()


def _allocate(n):
    gc.collect()
    if gc.mem_free() >= n + MEM_RESERVE:
        try:
            return bytearray(n)
        except MemoryError:  # enough in all, not in one piece
            pass
    raise HTTPError(0, "a %d-byte body does not fit in free memory" % n)


def request(method, url, body, headers, tls, buf, until):
    """Send a request and read the response's head by `until`; returns the Response, which the caller
    closes. An https:// URL needs `tls` (ota.tls.pinned_context): another certificate is refused."""
    host, port, path, secure = split_url(url)
    if secure and tls is None:
        raise ValueError("https:// needs the hub's pinned certificate (hub_cert in config.json)")
    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
    sock = socket.socket()
    try:
        sock.setblocking(False)
        try:
            sock.connect(addr)
        except OSError as exc:
            if exc.errno != EINPROGRESS:
                raise
        while not _ready(sock, OUT):
            _late(until)
            yield sock, OUT
        if secure:
            sock = tls.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
        head = method + " " + path + " HTTP/1.0\r\nHost: " + host + "\r\n"
        if headers:
            for k in headers:
                head += k + ": " + headers[k] + "\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: " + str(len(body)) + "\r\n"
        yield from _send(sock, head.encode() + b"\r\n", until)
        if body is not None:
            yield from _send(sock, body, until)
        resp = Response(sock, buf)
        yield from resp.read_head(until)
        return resp
    except BaseException:
        sock.close()
        raise
