"""Where the hub's fetches may be led (urls.check_hop): real local servers that redirect the hub's
import and webhook, and the rule for addresses no local server can stand for (a public host)."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from picoctl import release, urls
from picoctl.errors import BadInput
from picoctl.sim.local_hub import LocalHub


class Redirector(BaseHTTPRequestHandler):
    """`.../to?u=URL` answers 302 to URL; `/loop` redirects to itself; anything else is a file of `root`;
    every path asked is kept in `asked`."""

    root: Path
    asked: list[str]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.asked.append(self.path)
        parts = urlsplit(self.path)
        if parts.path.endswith("/to") or parts.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop" if parts.path == "/loop" else parse_qs(parts.query)["u"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = self.root / parts.path.lstrip("/")
        body = path.read_bytes() if path.is_file() else b""
        self.send_response(200 if path.is_file() else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(root: Path, host: str, family: socket.AddressFamily = socket.AF_INET) -> tuple[ThreadingHTTPServer, list[str]]:
    asked: list[str] = []
    handler = type("Handler", (Redirector,), {"root": root, "asked": asked})
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
    server = server_class((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, asked


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A hub with a webhook secret, a loopback server holding a release signed for it, and a server
    listening on every address (reached as 0.0.0.0) holding the same."""
    tmp = tmp_path_factory.mktemp("redirects")
    hub = LocalHub.create(tmp / "site")
    hub.set_webhook_secret("s3cret")
    (tmp / "src").mkdir()
    (tmp / "src" / "main.py").write_text("print('hi')\n")
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        release.build("picow", version, tmp / "src", tmp / "files" / version, key_hex=hub.signing_key)
    local, asked = _serve(tmp / "files", "127.0.0.1")
    anywhere, anywhere_asked = _serve(tmp / "files", "0.0.0.0")
    try:
        hub.start()
        yield {"hub": hub, "local": f"http://127.0.0.1:{local.server_address[1]}", "asked": asked,
               "anywhere": f"http://0.0.0.0:{anywhere.server_address[1]}", "anywhere_asked": anywhere_asked}
    finally:
        hub.close()
        for server in (local, anywhere):
            server.shutdown()
            server.server_close()


def _import(world: dict, url: str) -> httpx.Response:
    hub = world["hub"]
    return httpx.post(hub.url + "/api/v1/releases/import", json={"url": url}, timeout=60,
                      headers={"Authorization": f"Bearer {hub.token}"})


def _redirect(world: dict, target: str, folder: str = "") -> str:
    """A URL of the loopback server (in `folder`, which a relative artifact_url is taken from) that
    redirects to `target`."""
    return f"{world['local']}{folder}/to?u={httpx.URL(target)}"


def test_a_redirect_that_stays_on_loopback_is_followed(world: dict) -> None:
    """An admin who names a loopback server may be redirected on loopback (by name or number)."""
    port = urlsplit(world["local"]).port
    r = _import(world, _redirect(world, f"http://localhost:{port}/1.0.0/meta.json", "/1.0.0"))
    assert r.status_code == 201 and r.json()["meta"]["version"] == "1.0.0", r.text[:300]


@pytest.mark.parametrize("target,kind", [("http://169.254.169.254/latest/meta-data/", "link-local"),
                                         ("http://0.0.0.0:{port}/1.1.0/meta.json", "reserved"),
                                         ("http://[::]:{port}/1.1.0/meta.json", "reserved")])
def test_a_redirect_to_another_kind_of_address_is_refused_before_any_request(world: dict, target: str,
                                                                             kind: str) -> None:
    port = urlsplit(world["anywhere"]).port
    before = len(world["anywhere_asked"])
    r = _import(world, _redirect(world, target.format(port=port)))
    assert r.status_code == 422 and f"leads to a {kind} address" in r.json()["error"], (r.status_code, r.text[:300])
    assert len(world["anywhere_asked"]) == before  # 0.0.0.0 reaches this host's servers: never asked


def test_a_meta_whose_artifact_url_names_another_kind_of_address_is_refused(world: dict, tmp_path: Path) -> None:
    port = urlsplit(world["anywhere"]).port
    folder = Path(world["hub"].site).parent / "files" / "1.2.0"
    meta = json.loads((folder / "meta.json").read_text())
    meta["artifact_url"] = f"http://0.0.0.0:{port}/1.2.0/{meta['artifact']}"
    (folder / "other.json").write_text(json.dumps(meta))
    before = len(world["anywhere_asked"])
    r = _import(world, f"{world['local']}/1.2.0/other.json")
    assert r.status_code == 422 and "artifact_url" in r.json()["error"], (r.status_code, r.text[:300])
    assert len(world["anywhere_asked"]) == before


def test_a_redirect_loop_ends_after_a_few_hops(world: dict) -> None:
    before = len(world["asked"])
    r = _import(world, f"{world['local']}/loop")
    assert r.status_code == 502 and "redirect" in r.json()["error"].lower(), r.text[:300]
    assert len(world["asked"]) - before == urls.MAX_REDIRECTS + 1


def test_the_webhook_is_held_to_the_same_rule(world: dict) -> None:
    hub = world["hub"]
    body = json.dumps({"meta_url": _redirect(world, "http://169.254.169.254/meta.json")}).encode()
    signature = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    r = httpx.post(hub.url + "/api/v1/webhook", content=body, timeout=60,
                   headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"})
    assert r.status_code == 422 and "link-local" in r.json()["error"], (r.status_code, r.text[:300])
    assert "Traceback" not in hub.log_path.read_text()


PUBLIC = "http://93.184.215.14/meta.json"  # a global address: no local server can stand for one


@pytest.mark.parametrize("target,kind", [("http://127.0.0.1:8080/admin", "loopback"), ("http://[::1]/", "loopback"),
                                         ("http://[::ffff:127.0.0.1]/", "loopback"), ("http://10.0.0.5/", "private"),
                                         ("http://192.168.1.1/", "private"), ("http://[fd00::1]/", "private"),
                                         ("http://100.64.0.1/", "private"), ("http://169.254.169.254/", "link-local"),
                                         ("http://[fe80::1]/", "link-local"), ("http://0.0.0.0/", "reserved"),
                                         ("http://localhost:5000/", "loopback")])
def test_a_public_host_cannot_lead_a_fetch_inside(target: str, kind: str) -> None:
    with pytest.raises(BadInput, match=f"leads to a {kind} address"):
        urls.check_hop(PUBLIC, target, "redirect")
    urls.check_hop(PUBLIC, "http://93.184.216.34/other", "redirect")


def test_https_never_leads_to_plain_http() -> None:
    with pytest.raises(BadInput, match="from https to plain http"):
        urls.check_hop("https://93.184.215.14/meta.json", "http://93.184.215.14/meta.json", "redirect")
    urls.check_hop("http://93.184.215.14/meta.json", "https://93.184.215.14/meta.json", "redirect")
