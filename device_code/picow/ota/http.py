"""A small HTTP/1.0 client on raw sockets: one request per connection, bodies read into
caller-supplied buffers, so a download never holds more than one chunk in RAM.

https:// URLs go through the TLS context the caller passes (ota/tls.py: the hub's pinned certificate).
"""

import socket

TIMEOUT_S = 5  # below the watchdog's longest timeout (8.4 s), which stays armed after a trial
MAX_HEADER_LINE = 512


class HTTPError(Exception):
    """The server answered, but not as expected (status, framing)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


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


class Response:
    """Status line and the headers the agent uses; the body is read from `sock`."""

    def __init__(self, sock):
        self.sock = sock
        self.status = 0
        self.length = -1
        self.mac = None
        self.content_range = None
        self.remaining = -1

    def _read_head(self):
        line = self.sock.readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise HTTPError(0, "bad status line")
        self.status = int(parts[1])
        while True:
            line = self.sock.readline()
            if not line:
                raise HTTPError(self.status, "connection closed in headers")
            if line in (b"\r\n", b"\n"):
                break
            if len(line) > MAX_HEADER_LINE:
                raise HTTPError(self.status, "header line too long")
            colon = line.find(b":")
            if colon < 0:
                continue
            name = line[:colon].strip().lower()
            value = line[colon + 1 :].strip()
            if name == b"content-length":
                self.length = int(value)
            elif name == b"x-picoctl-mac":
                self.mac = value.decode().lower()
            elif name == b"content-range":
                self.content_range = value.decode()
            elif name == b"transfer-encoding" and value.lower() != b"identity":
                raise HTTPError(self.status, "unsupported transfer encoding")
        self.remaining = self.length

    def readinto(self, mv):
        """Read up to len(mv) body bytes; 0 at the end of the body."""
        if self.remaining == 0:
            return 0
        if 0 < self.remaining < len(mv):
            mv = mv[: self.remaining]
        n = self.sock.readinto(mv)
        if n is None:
            n = 0
        if self.remaining > 0:
            self.remaining -= n
            if n == 0:
                raise OSError(104)  # ECONNRESET: closed before Content-Length bytes arrived
        return n

    def read_all(self, cap, into=None):
        """The whole body, refused above `cap` bytes (bodies here are small JSON). With `into` (a
        memoryview) a body that fits is read into it and a slice of it is returned: no allocation."""
        if self.length > cap:
            raise HTTPError(self.status, "response body too large")
        if self.length >= 0:
            mv = into[: self.length] if into is not None and self.length <= len(into) else memoryview(bytearray(self.length))
            got = 0
            while got < self.length:
                got += self.readinto(mv[got:])
            return mv
        data = self.sock.read(cap + 1)
        if len(data) > cap:
            raise HTTPError(self.status, "response body too large")
        return data

    def close(self):
        self.sock.close()


def request(method, url, body=None, headers=None, tls=None):
    """Send a request and return the Response with its head read; the caller closes it. An https://
    URL needs `tls` (ota.tls.pinned_context): a certificate other than the pinned one is refused."""
    host, port, path, secure = split_url(url)
    if secure and tls is None:
        raise ValueError("https:// needs the hub's pinned certificate (hub_cert in config.json)")
    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
    sock = socket.socket()
    try:
        sock.settimeout(TIMEOUT_S)
        sock.connect(addr)
        if secure:
            sock = tls.wrap_socket(sock, server_hostname=host)
        head = method + " " + path + " HTTP/1.0\r\nHost: " + host + "\r\n"
        if headers:
            for k in headers:
                head += k + ": " + headers[k] + "\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: " + str(len(body)) + "\r\n"
        sock.write(head.encode() + b"\r\n")
        if body is not None:
            sock.write(body)
        resp = Response(sock)
        resp._read_head()
        return resp
    except BaseException:
        sock.close()
        raise
