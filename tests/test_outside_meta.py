"""meta.json written by hand or by other tools, and URLs a release is fetched from, from outside.

Each meta.json is either accepted and then verifies (a BOM, CRLF line ends, extra fields, any key
order) or refused with a BadInput naming it (a key given twice, a version that is not semver, a
field of the wrong type or shape): the same through `load_meta`, the hub's publish route and a Pi
deploy. Each URL an operator, a webhook or a meta.json gives is either fetched or refused in words:
never a 500 from the hub, never a traceback from the CLI.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from picoctl import config, release, signing
from picoctl.errors import BadInput
from picoctl.sim.local_hub import LocalHub
from loopback import Peer, files, serving

BAD_URLS = ["http://127.0.0.1:9/a\rb", "http://127.0.0.1:9/a b", "http://[::1", "http://127.0.0.1:99999/x",
            "http://127.0.0.1:0/x", "http:///meta.json", "http://a\x01b/", "ftp://127.0.0.1/meta.json",
            "http://127.0.0.1:-1/", "https://"]


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A signed picow release folder, its private key and public key."""
    d = tmp_path_factory.mktemp("meta")
    private, public = signing.generate_keypair()
    (d / "src").mkdir()
    (d / "src" / "main.py").write_text("print('hi')\n")
    release.build("picow", "1.2.0", d / "src", d / "rel", key_hex=private)
    return d / "rel", private, public


def _fields(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "meta.json").read_text())


def _copy(signed_dir: Path, dest: Path, text: bytes) -> Path:
    dest.mkdir()
    meta = _fields(signed_dir)
    (dest / meta["artifact"]).write_bytes((signed_dir / meta["artifact"]).read_bytes())
    (dest / "meta.json").write_bytes(text)
    return dest


def _accepted_forms(meta: dict[str, Any]) -> dict[str, bytes]:
    text = json.dumps(meta, indent=2)
    return {"bom": b"\xef\xbb\xbf" + text.encode(), "crlf": text.replace("\n", "\r\n").encode(),
            "one-line": json.dumps(meta, separators=(",", ":")).encode(),
            "reversed-keys": json.dumps(dict(reversed(list(meta.items())))).encode(),
            "tabs-and-trailing-space": text.replace("  ", "\t").encode() + b"\n\n  \n"}


def test_meta_json_written_by_other_tools_is_accepted_and_verifies(tmp_path: Path, signed) -> None:
    folder, _private, public = signed
    for name, text in _accepted_forms(_fields(folder)).items():
        copy = _copy(folder, tmp_path / name, text)
        assert release.verify(copy, public)["version"] == "1.2.0", name


def test_an_extra_field_is_kept_under_the_signature(tmp_path: Path, signed) -> None:
    folder, private, public = signed
    meta = _fields(folder) | {"notes": "built by hand", "x-vendor": {"ci": 17}}
    meta["signature"] = signing.sign_document(meta, private)
    copy = _copy(folder, tmp_path / "extra", json.dumps(meta).encode())
    assert release.verify(copy, public)["notes"] == "built by hand"
    meta["notes"] = "changed after signing"
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="signature does not verify"):
        release.verify(copy, public)


def _refused_metas(meta: dict[str, Any]) -> Iterator[tuple[str, bytes, str]]:
    """(case, meta.json bytes, what the refusal says)."""
    text = json.dumps(meta)
    yield "duplicate-version", text.replace('"version": "1.2.0"', '"version": "9.9.9", "version": "1.2.0"').encode(), \
        "appears twice"
    yield "utf16", text.encode("utf-16"), "not UTF-8"
    yield "latin1-garbage", text.replace('"1.2.0"', '"1.2.0\xe9"').encode("latin-1"), "not UTF-8"
    yield "nan-size", text.replace(f'"size": {meta["size"]}', '"size": NaN').encode(), "NaN"
    yield "deep", b"[" * 100000 + b"]" * 100000, "readable meta.json"
    yield "truncated", text[: len(text) // 2].encode(), "readable meta.json"
    yield "empty", b"", "readable meta.json"
    yield "list", b"[]", "expected a JSON object"
    for version in ("v1.2.0", "1.2", "01.2.0", "1.2.0.0", "1.2.0-", "1.2.0+", " 1.2.0", "1.2.0\n", "１.2.0", ""):
        yield f"version-{version!r}", json.dumps(meta | {"version": version}).encode(), "not a semantic version"
    wrong = {"files": [1, None, "abc", {"a": 1}, True], "size": ["1", 1.5, -1, True, None, [], 10 ** 30],
             "format": [5, "zip", [], {}], "rollout": ["beta", ""], "root": [1, "/etc", "..", "a/../b", ""],
             "artifact": ["a\\b", "a\x00b", "a b", "", "..", "x/y"], "artifact_url": ["a\rb", "", "a b"],
             "smoke": [1, {"passed": 1}, {"passed": True, "seconds": "x"}, {"passed": True, "peak_heap": 1.5},
                       {"passed": False, "reason": 3}],
             "min_version": [1, "x"], "signed_by": ["ab", 1], "mpy_version": [0, 256, "6", True]}
    for key, values in wrong.items():
        for value in values:
            yield f"{key}-{value!r:.30}", json.dumps(meta | {key: value}).encode(), ""
    for value in (1, "x", {"name": "main.py"}, [{"name": "main.py", "size": True, "sha256": "0" * 64}],
                  [{"name": "../x", "size": 1, "sha256": "0" * 64}], [{"name": "a\x00", "size": 1, "sha256": "0" * 64}]):
        yield f"files-{value!r:.30}", json.dumps(meta | {"files": value}).encode(), ""


def _refusal_cases() -> list[tuple[str, bytes, str]]:
    """Built from a plausible meta (the cases need its shape, not a signature)."""
    meta = {"_type": "release", "target": "picow", "version": "1.2.0", "rollout": "canary", "format": "tar",
            "artifact": "picow-1.2.0.tar", "artifact_url": "picow-1.2.0.tar", "size": 10240, "sha256": "0" * 64,
            "created_at": "2026-01-01T00:00:00Z", "signature": "", "files": []}
    return list(_refused_metas(meta))


REFUSED = _refusal_cases()


@pytest.mark.parametrize("text,message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_malformed_meta_json_is_refused_in_words(tmp_path: Path, text: bytes, message: str) -> None:
    (tmp_path / "meta.json").write_bytes(text)
    with pytest.raises(BadInput, match=message or None) as refused:
        release.load_meta(tmp_path)
    assert str(tmp_path / "meta.json") in str(refused.value)


# --- the hub -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    h = LocalHub.create(tmp_path_factory.mktemp("meta-hub") / "site")
    h.set_webhook_secret("s3cret")
    try:
        h.start()
        yield h
    finally:
        h.close()


def _bearer(hub: LocalHub) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.token}"}


def test_the_hub_refuses_each_malformed_meta_with_a_4xx(hub: LocalHub) -> None:
    with httpx.Client(base_url=hub.url, headers=_bearer(hub), timeout=30) as c:
        for case, text, _message in REFUSED:
            header = base64.b64encode(text).decode()
            if len(header) > 12000:
                continue  # over the head limit: a 431, covered by the hostile tests
            r = c.put("/api/v1/releases/picow/1.2.0", content=b"x", headers={"X-Picoctl-Meta": header})
            assert 400 <= r.status_code < 500 and r.json()["error"], (case, r.status_code, r.text[:300])
        assert c.get("/api/v1/releases").json() == []
    assert "Traceback" not in hub.log_path.read_text()


@pytest.mark.parametrize("url", BAD_URLS)
def test_the_hub_refuses_a_url_it_cannot_fetch_with_a_400(hub: LocalHub, url: str) -> None:
    r = httpx.post(hub.url + "/api/v1/releases/import", json={"url": url}, headers=_bearer(hub), timeout=30)
    assert r.status_code == 400 and "meta url" in r.json()["error"], (r.status_code, r.text[:300])
    assert "Traceback" not in hub.log_path.read_text()


def test_a_meta_whose_artifact_url_cannot_be_fetched_is_a_422(hub: LocalHub, tmp_path: Path) -> None:
    meta = {"_type": "release", "target": "picow", "version": "1.3.0", "rollout": "canary", "artifact": "a.tar",
            "artifact_url": "http://127.0.0.1:99999/a.tar", "size": 1, "sha256": "0" * 64, "created_at": "x",
            "signature": ""}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with serving(files(tmp_path)) as url:
        r = httpx.post(hub.url + "/api/v1/releases/import", headers=_bearer(hub), timeout=30,
                       json={"url": f"{url}/meta.json"})
    assert r.status_code == 422 and "artifact_url" in r.json()["error"], (r.status_code, r.text[:300])
    assert "Traceback" not in hub.log_path.read_text()


# --- a Pi deploy from a URL ------------------------------------------------------------------------

@pytest.mark.parametrize("url", BAD_URLS[:5])
def test_pi_deploy_of_a_bad_url_is_one_line_and_exit_2(tmp_path: Path, url: str) -> None:
    cfg = config.FleetConfig(path=tmp_path / "fleet.toml")
    cfg.pi.root = str(tmp_path / "pi")
    cfg.release.public_key = "0" * 64
    config.save(cfg, cfg.path)
    run = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(cfg.path), "pi", "deploy", url],
                         capture_output=True, text=True, timeout=60, env={"PICOCTL_HUB_URL": "", "PATH": "/usr/bin"})
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert "URL" in run.stderr and "Traceback" not in run.stderr and "defect" not in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def _endless_host(meta: dict[str, Any]) -> type[Peer]:
    """A file host serving `meta` as /meta.json and, as its artifact, bytes that never end."""
    class Endless(Peer):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            if self.path == "/meta.json":
                body = json.dumps(meta).encode()
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.end_headers()
            try:
                for _ in range(4096):  # 256 MiB at most, should the hub never stop reading
                    self.wfile.write(b"\0" * (64 << 10))
            except OSError:
                pass

    return Endless


def test_an_artifact_longer_than_its_meta_says_is_cut_off_at_once(hub: LocalHub, signed) -> None:
    folder, _private, _public = signed
    meta = _fields(folder) | {"artifact_url": "artifact.tar", "version": "1.2.1"}
    with serving(_endless_host(meta)) as url:
        started = time.monotonic()
        r = httpx.post(hub.url + "/api/v1/releases/import", headers=_bearer(hub), timeout=60,
                       json={"url": f"{url}/meta.json"})
        took = time.monotonic() - started
    assert r.status_code == 422 and f"longer than the {meta['size']} bytes" in r.json()["error"], r.text[:300]
    assert took < 10, f"the hub read {took:.0f} s of an artifact it should have cut off at {meta['size']} bytes"
    assert not list((hub.cfg.data_dir / "tmp").iterdir())
    body = (folder / meta["artifact"]).read_bytes() + b"more"
    header = base64.b64encode(json.dumps(_fields(folder)).encode()).decode()
    r = httpx.put(hub.url + "/api/v1/releases/picow/1.2.0", content=body, headers=_bearer(hub) | {"X-Picoctl-Meta": header})
    assert r.status_code == 422 and "longer than" in r.json()["error"], r.text[:300]


def test_an_empty_webhook_secret_trusts_no_one(hub: LocalHub) -> None:
    import hashlib
    import hmac

    secret = hub.site / "webhook.secret"
    kept = secret.read_text()
    secret.write_text("\n")  # emptied by mistake: a signature under the empty key is anyone's to make
    try:
        body = json.dumps({"meta_url": "http://127.0.0.1:9/meta.json"}).encode()
        signature = "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest()
        r = httpx.post(hub.url + "/api/v1/webhook", content=body, headers={"X-Hub-Signature-256": signature})
    finally:
        secret.write_text(kept)
    assert r.status_code == 503 and "empty" in r.json()["error"], r.text[:300]


def test_a_hub_with_an_empty_operator_token_does_not_start(tmp_path: Path) -> None:
    site = LocalHub.create(tmp_path / "site")
    site.cfg.token_file.write_text("\n")  # emptied by mistake: "Authorization: Bearer" would be the operator
    try:
        with pytest.raises(RuntimeError, match="the operator token is empty"):
            site.start()
    finally:
        site.close()
