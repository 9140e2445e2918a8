"""Where a fetch may be led (urls.check_hop): real local servers that redirect the hub's import and
webhook and the Pi's `pi deploy <url>`, and the rule for addresses no local server can stand for (a
public host)."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conftest import self_signed
from picoctl import config, release, signing, urls
from picoctl.errors import BadInput, PicoctlError
from picoctl.pideploy import fetch
from picoctl.progress import Progress
from picoctl.sim.local_hub import LocalHub


class Redirector(BaseHTTPRequestHandler):
    """`.../to?u=URL` and `.../to.json?u=URL` answer 302 to URL; `/loop...` redirects to itself;
    `/hops/N/PATH` to `/hops/N-1/PATH`, and `/hops/0/PATH` is PATH; anything else is a file of `root`;
    every path asked is kept in `asked`."""

    root: Path
    asked: list[str]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.asked.append(self.path)
        parts = urlsplit(self.path)
        hops = parts.path.split("/", 3)[2:] if parts.path.startswith("/hops/") else []
        if hops and hops[0] == "0":
            parts = urlsplit("/" + hops[1])
        elif hops:
            return self._redirect(f"/hops/{int(hops[0]) - 1}/{hops[1]}")
        if parts.path.endswith(("/to", "/to.json")):
            return self._redirect(parse_qs(parts.query)["u"][0])
        if parts.path.startswith("/loop"):
            return self._redirect(parts.path)
        path = self.root / parts.path.lstrip("/")
        body = path.read_bytes() if path.is_file() else b""
        self.send_response(200 if path.is_file() else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _serve(root: Path, host: str, family: socket.AddressFamily = socket.AF_INET,
           tls: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, list[str]]:
    asked: list[str] = []
    handler = type("Handler", (Redirector,), {"root": root, "asked": asked})
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
    server = server_class((host, 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
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
    assert r.status_code == 502 and f"more than {urls.MAX_REDIRECTS} redirects (the next to '{world['local']}/loop'" \
        in r.json()["error"], r.text[:300]
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


# --- the Pi's `pi deploy <url>` (pideploy/fetch.py): the same rule from the URL the operator named ---

@pytest.fixture(scope="module")
def pi_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A pi release (1.0.0, and 1.1.0 whose signed artifact_url names 0.0.0.0) served by a loopback
    server over http and one over https, and by a server on every address (reached as 0.0.0.0)."""
    tmp = tmp_path_factory.mktemp("pi-redirects")
    private, public = signing.generate_keypair()
    (tmp / "src").mkdir()
    (tmp / "src" / "main.py").write_text("print('hi')\n")
    for version in ("1.0.0", "1.1.0"):
        release.build("pi", version, tmp / "src", tmp / "files" / "pi" / version, key_hex=private)
    cert, key = self_signed(tmp)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    local, asked = _serve(tmp / "files", "127.0.0.1")
    secure, secure_asked = _serve(tmp / "files", "127.0.0.1", tls=tls)
    anywhere, anywhere_asked = _serve(tmp / "files", "0.0.0.0")
    anywhere_port = anywhere.server_address[1]
    meta_file = tmp / "files" / "pi" / "1.1.0" / "meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["signature"]
    meta["artifact_url"] = f"http://0.0.0.0:{anywhere_port}/pi/1.1.0/{meta['artifact']}"
    meta["signature"] = signing.sign_document(meta, private)
    meta_file.write_text(json.dumps(meta))
    cfg = config.FleetConfig(path=tmp / "fleet.toml")
    cfg.release.public_key = public
    cfg.pi.root = str(tmp / "pi-root")
    config.save(cfg, cfg.path)
    try:
        yield {"cfg": cfg, "tmp": tmp, "cert": cert, "local": f"http://127.0.0.1:{local.server_address[1]}",
               "asked": asked, "secure": f"https://127.0.0.1:{secure.server_address[1]}", "secure_asked": secure_asked,
               "anywhere_port": anywhere_port, "anywhere_asked": anywhere_asked}
    finally:
        for server in (local, secure, anywhere):
            server.shutdown()
            server.server_close()


def _pi_fetch(pi_world: dict, source: str, incoming: Path) -> fetch.Fetched:
    incoming.mkdir()
    return fetch.fetch(pi_world["cfg"], source, incoming, Progress("pi deploy"))


def _pi_redirect(pi_world: dict, target: str, base: str = "local") -> str:
    """A URL of a loopback server, ending in .json as a meta URL does, that redirects to `target`."""
    return f"{pi_world[base]}/pi/1.0.0/to.json?u={httpx.URL(target)}"


def _expect_refused(pi_world: dict, source: str, tmp_path: Path, words: str, error: type = BadInput) -> str:
    with pytest.raises(error) as caught:
        _pi_fetch(pi_world, source, tmp_path / "refused")
    message = str(caught.value)
    assert words in message and "\n" not in message, message
    assert list((tmp_path / "refused").iterdir()) == []
    return message


def test_pi_deploy_follows_a_redirect_that_stays_on_loopback(pi_world: dict, tmp_path: Path) -> None:
    port = urlsplit(pi_world["local"]).port
    fetched = _pi_fetch(pi_world, _pi_redirect(pi_world, f"http://localhost:{port}/pi/1.0.0/meta.json"), tmp_path / "in")
    assert fetched.meta["version"] == "1.0.0"
    assert signing.sha256_file(fetched.artifact) == fetched.meta["sha256"]


@pytest.mark.parametrize("target,kind", [("http://169.254.169.254/latest/meta-data/", "link-local"),
                                         ("http://0.0.0.0:{port}/pi/1.0.0/meta.json", "reserved"),
                                         ("http://[::]:{port}/pi/1.0.0/meta.json", "reserved")])
def test_pi_deploy_refuses_a_redirect_to_another_kind_of_address_before_asking_it(pi_world: dict, tmp_path: Path,
                                                                                 target: str, kind: str) -> None:
    target = target.format(port=pi_world["anywhere_port"])
    before = len(pi_world["anywhere_asked"])
    message = _expect_refused(pi_world, _pi_redirect(pi_world, target), tmp_path, f"leads to a {kind} address")
    assert repr(target)[:60] in message  # the hop is named
    assert len(pi_world["anywhere_asked"]) == before


def test_pi_deploy_refuses_a_signed_artifact_url_of_another_kind_before_asking_it(pi_world: dict, tmp_path: Path) -> None:
    before = len(pi_world["anywhere_asked"])
    _expect_refused(pi_world, f"{pi_world['local']}/pi/1.1.0/meta.json", tmp_path, "leads to a reserved address")
    assert len(pi_world["anywhere_asked"]) == before


def test_pi_deploy_stops_a_redirect_loop_after_a_few_hops(pi_world: dict, tmp_path: Path) -> None:
    before = len(pi_world["asked"])
    message = _expect_refused(pi_world, f"{pi_world['local']}/loop/meta.json", tmp_path,
                              f"more than {urls.MAX_REDIRECTS} redirects", PicoctlError)
    assert "/loop/meta.json" in message.split("the next to", 1)[1]
    assert len(pi_world["asked"]) - before == urls.MAX_REDIRECTS + 1


def test_pi_deploy_follows_max_redirects_hops_and_no_more(pi_world: dict, tmp_path: Path) -> None:
    most = f"{pi_world['local']}/hops/{urls.MAX_REDIRECTS}/pi/1.0.0/meta.json"
    assert _pi_fetch(pi_world, most, tmp_path / "in").meta["version"] == "1.0.0"  # the artifact took as many hops
    one_more = f"{pi_world['local']}/hops/{urls.MAX_REDIRECTS + 1}/pi/1.0.0/meta.json"
    _expect_refused(pi_world, one_more, tmp_path, "the next to '" + pi_world["local"] + "/hops/0/", PicoctlError)


def test_pi_deploy_never_follows_https_to_plain_http(pi_world: dict, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pi_world["cert"]))
    secure = pi_world["secure"]
    assert _pi_fetch(pi_world, f"{secure}/hops/1/pi/1.0.0/meta.json", tmp_path / "in").meta["version"] == "1.0.0"
    before = len(pi_world["asked"])
    plain = f"{pi_world['local']}/pi/1.0.0/meta.json"
    _expect_refused(pi_world, _pi_redirect(pi_world, plain, "secure"), tmp_path, "leads from https to plain http")
    assert len(pi_world["asked"]) == before and pi_world["secure_asked"]


def test_the_pi_deploy_command_names_the_refused_hop_in_one_line(pi_world: dict) -> None:
    source = _pi_redirect(pi_world, "http://169.254.169.254/latest/meta-data/")
    run = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(pi_world["cfg"].path), "pi", "deploy", source],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "'http://169.254.169.254/latest/meta-data/': leads to a link-local" in run.stderr
    assert not (Path(pi_world["cfg"].pi.root) / "current").exists()
