"""A man in the middle between a board and the hub: a real HTTP server on 127.0.0.1 that forwards
every request and lets a test alter the answers (flip a byte, break a MAC, replay, cut a download,
answer garbage, drip the answer a byte at a time, or hang after the head)."""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    cut_after: int | None = None  # send the full Content-Length header but only this many body bytes
    raw: bytes | None = None  # send exactly this instead of the response
    drip_s: float | None = None  # send the response one byte every drip_s seconds
    hang: bool = False  # send the head, then nothing until the proxy closes


Tamper = Callable[[str, bytes, Reply], Reply]


class Proxy:
    def __init__(self, upstream: str, tamper: Tamper) -> None:
        self.upstream = urlsplit(upstream)
        self.tamper = tamper
        self.requests: list[str] = []
        self.closing = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.requests.append(f"{self.command} {self.path} {self.headers.get('Range') or ''}".strip())
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                reply = Reply(resp.status, {k: v for k, v in resp.getheaders()
                                            if k.lower() in ("content-type", "x-picoctl-mac", "content-range")},
                              resp.read())
                conn.close()
                reply = proxy.tamper(self.path, body, reply)
                self.close_connection = True
                head = f"HTTP/1.0 {reply.status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                head += f"Content-Length: {len(reply.body)}\r\nConnection: close\r\n\r\n"
                data = reply.raw if reply.raw is not None else head.encode() + (
                    reply.body if reply.cut_after is None else reply.body[: reply.cut_after])
                try:
                    if reply.hang:
                        self.wfile.write(head.encode())
                        self.wfile.flush()
                        proxy.closing.wait()
                    elif reply.drip_s:
                        for i in range(len(data)):
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                            if proxy.closing.wait(reply.drip_s):
                                return
                    else:
                        self.wfile.write(data)
                except OSError:
                    pass  # the board hung up: what a hostile answer is for

            do_GET = do_POST = _forward  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
