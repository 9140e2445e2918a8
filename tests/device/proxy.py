"""A man in the middle between a board and the hub: a real HTTP server on 127.0.0.1 that forwards
every request and lets a test alter the answers (flip a byte, break a MAC, replay, cut a download)."""

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


Tamper = Callable[[str, bytes, Reply], Reply]


class Proxy:
    def __init__(self, upstream: str, tamper: Tamper) -> None:
        self.upstream = urlsplit(upstream)
        self.tamper = tamper
        self.requests: list[str] = []
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
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(reply.body if reply.cut_after is None else reply.body[: reply.cut_after])
                self.close_connection = True

            do_GET = do_POST = _forward  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
