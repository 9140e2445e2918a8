"""Peers on loopback for tests that need one other than the hub (a hung hub, a hub of another shape,
an event stream cut anywhere, a fake hub that records what it is sent, a plain file host): a handler
served in a thread for the length of a block."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Handler = Callable[..., BaseHTTPRequestHandler]


@contextmanager
def serving(handler: Handler, port: int = 0) -> Iterator[str]:
    """Serve `handler` on loopback (on `port`, or a free one); its base URL (`http://127.0.0.1:PORT`)
    meanwhile."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


class Peer(BaseHTTPRequestHandler):
    """A handler that logs nothing and answers in one call."""

    def answer(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def json_body(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def log_message(self, *args: object) -> None:
        pass


class _Files(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def files(root: Path) -> Handler:
    """A handler that serves the files under `root`, as a plain file host (CI's release storage) does."""
    return partial(_Files, directory=str(root))


def site_for(url: str, folder: Path, **hub: Any) -> tuple[Path, Path]:
    """A site under `folder` whose fleet.toml points the CLI at the peer serving `url` (with these [hub]
    settings too), and a signed picow 1.0.0 release to send it: (fleet.toml, the release folder)."""
    from picoctl import config, release, signing
    from picoctl.site import init_site

    path = init_site(folder / "site", int(url.rsplit(":", 1)[1]))
    cfg = config.load(path)
    cfg.hub.public_url = url
    for key, value in hub.items():
        setattr(cfg.hub, key, value)
    config.save(cfg, path)
    private, _ = signing.generate_keypair()
    (folder / "src").mkdir()
    (folder / "src" / "main.py").write_text("print('hi')\n")
    release.build("picow", "1.0.0", folder / "src", folder / "rel", key_hex=private)
    return path, folder / "rel"

