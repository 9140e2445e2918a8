"""Pi self-deploy, for real: the example app runs as a process serving HTTP from `<root>/current`,
restarted by picoctl.sim.pi_app_control, health-checked on 127.0.0.1; crashes are real SIGKILLs."""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from picoctl import config, pideploy, release, signing
from picoctl.errors import BadInput, PicoctlError
from picoctl.progress import Progress
from picoctl.pideploy.journal import CRASH_ENV
from picoctl.sim import pi_app_control
from conftest import free_port
from loopback import Peer, files, serving
from waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "examples" / "pi-app"
FAILING_TIMEOUT_S = 2.5  # health deadline in tests of releases that never get healthy

EXITS_AT_START = "import sys\nsys.exit(3)\n"
ANSWERS_500 = '''import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
p = argparse.ArgumentParser(); p.add_argument("--host"); p.add_argument("--port", type=int)
a = p.parse_args()
ThreadingHTTPServer((a.host, a.port), H).serve_forever()
'''


class Recorder(Peer):
    """The hub's history endpoint, as far as these tests need it: what it is sent goes to `events`."""

    events: list[dict]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.events.append(self.json_body())
        self.answer(201)


# --- releases -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Keys:
    private: str
    public: str


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(*signing.generate_keypair())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> dict[str, Path]:
    """Signed release folders: healthy 1.0.0 (stable), 2.0.0, 2.1.0; 3.0.0 that exits, 3.0.1 that answers 500."""
    d = tmp_path_factory.mktemp("built")
    out = {}
    for version, rollout in (("1.0.0", "stable"), ("2.0.0", "canary"), ("2.1.0", "canary")):
        out[version] = d / version
        release.build("pi", version, APP, out[version], key_hex=keys.private, rollout=rollout)
    for version, code in (("3.0.0", EXITS_AT_START), ("3.0.1", ANSWERS_500)):
        src = d / f"src-{version}"
        src.mkdir()
        (src / "main.py").write_text(code)
        out[version] = d / version
        release.build("pi", version, src, out[version], key_hex=keys.private)
    return out


def craft(folder: Path, keys: Keys, members: list[tuple[tarfile.TarInfo, bytes | None]], version: str = "9.0.0") -> Path:
    """A release folder whose signed meta matches an archive holding exactly `members`."""
    folder.mkdir()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    artifact = f"pi-sensors-{version}.tar.gz"
    (folder / artifact).write_bytes(gzip.compress(raw.getvalue()))
    meta = {"target": "pi", "version": version, "rollout": "canary", "format": "tar.gz", "root": f"pi-sensors-{version}",
            "artifact": artifact, "artifact_url": artifact, "size": (folder / artifact).stat().st_size,
            "sha256": signing.sha256_file(folder / artifact), "created_at": "2026-01-01T00:00:00Z"}
    meta["signature"] = signing.sign_document(meta, keys.private)
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def entry(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


# --- the rig: a Pi root, the app's process, a hub that records events ---------------------------

@dataclass
class Rig:
    tmp: Path
    cfg: config.FleetConfig
    config_file: Path
    port: int
    events: list[dict]  # what the hub was sent

    @property
    def root(self) -> Path:
        return Path(self.cfg.pi.root)

    def serving(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/version", timeout=2).json()["version"]

    def save(self) -> None:
        config.save(self.cfg, self.config_file)

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60,
            file_size_limit: int | None = None) -> subprocess.CompletedProcess:
        """`picoctl pi ARGS`; with `file_size_limit`, every write past that many bytes of a file fails
        (RLIMIT_FSIZE: EFBIG), as on a full disk."""
        def limit() -> None:
            if file_size_limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

        return subprocess.run([sys.executable, "-m", "picoctl", "--config", str(self.config_file), "pi", *args],
                              capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
                              preexec_fn=limit)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "picoctl", "--config", str(self.config_file), "pi", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def assert_consistent(self, current: str) -> None:
        """`current` is linked and served, no journal, no leftovers, and the lock is free."""
        st = pideploy.status(self.cfg)
        assert (st.current, st.healthy, st.busy) == (current, True, "")
        assert self.serving() == current
        assert not (self.root / ".deploy-journal.json").exists()
        assert list((self.root / ".incoming").iterdir()) == []


def kill_processes_under(marker: str) -> None:
    """SIGKILL every process whose command line mentions `marker` (this test's temporary folder)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def rig(tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> Rig:
    monkeypatch.delenv("PICOCTL_HUB_URL", raising=False)
    monkeypatch.delenv(CRASH_ENV, raising=False)
    port = free_port()
    events: list[dict] = []
    with serving(type("Hub", (Recorder,), {"events": events})) as hub_url:
        (tmp_path / "operator.token").write_text("token\n")
        cfg = config.FleetConfig(path=tmp_path / "fleet.toml")
        cfg.hub.public_url = hub_url
        cfg.hub.data_dir = str(tmp_path / "data")
        cfg.hub.token_file = str(tmp_path / "operator.token")
        cfg.release.public_key = keys.public
        cfg.pi.root = str(tmp_path / "pi")
        cfg.pi.restart_command = shlex.join(pi_app_control.command(cfg.pi.root, port, tmp_path / "app.pid", tmp_path / "app.log"))
        cfg.pi.health_url = f"http://127.0.0.1:{port}/healthz"
        cfg.pi.health_timeout_s = 5.0  # a healthy start takes a fraction of it; failing releases use FAILING_TIMEOUT_S
        cfg.pi.health_interval_s = 0.05
        cfg.pi.command_timeout_s = 20.0
        r = Rig(tmp_path, cfg, tmp_path / "fleet.toml", port, events)
        r.save()
        yield r
        kill_processes_under(str(tmp_path))


def details(rig: Rig, kind: str) -> list[tuple[str, dict]]:
    return [(e["result"], json.loads(e["detail"])) for e in rig.events if e["kind"] == kind]


# --- deploy and roll back -----------------------------------------------------------------------

def test_deploy_v1_then_v2_then_rollback_brings_v1_back(rig: Rig, built: dict[str, Path]) -> None:
    phases: list[str] = []
    lines: list[str] = []
    progress = Progress("pi deploy", lambda ev: phases.append(ev.phase))
    r1 = pideploy.deploy(rig.cfg, str(built["1.0.0"]), progress, lines.append)
    assert (r1.ok, r1.current, rig.serving()) == (True, "1.0.0", "1.0.0")
    assert {"copy", "unpack", "restart", "health check", "done"} <= set(phases)
    assert any("health check" in line for line in lines)

    r2 = pideploy.deploy(rig.cfg, str(built["2.0.0"]))
    assert (r2.ok, r2.from_version, r2.current, rig.serving()) == (True, "1.0.0", "2.0.0", "2.0.0")
    assert os.readlink(rig.root / "current") == "releases/2.0.0"
    st = pideploy.status(rig.cfg)
    assert (st.current, st.previous, st.healthy, sorted(st.releases)) == ("2.0.0", "1.0.0", True, ["1.0.0", "2.0.0"])

    back = rig.cli("rollback")  # how fast: bench/pi_deploy.py
    assert back.returncode == 0, back.stderr
    assert rig.serving() == "1.0.0"
    st = pideploy.status(rig.cfg)
    assert (st.current, st.previous) == ("1.0.0", "2.0.0")  # a second rollback goes forward again

    assert [(res, d["from"], d["to"]) for res, d in details(rig, "pi_deploy")] == [("ok", None, "1.0.0"), ("ok", "1.0.0", "2.0.0")]
    [(res, d)] = details(rig, "pi_rollback")
    assert (res, d["from"], d["to"]) == ("ok", "2.0.0", "1.0.0") and d["duration_s"] > 0 and "healthy" in d["reason"]
    assert all(e["actor"] for e in rig.events)


def test_v3_that_exits_at_start_is_rolled_back_by_the_cli(rig: Rig, built: dict[str, Path]) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    pideploy.deploy(rig.cfg, str(built["2.0.0"]))
    rig.cfg.pi.health_timeout_s = FAILING_TIMEOUT_S
    rig.save()
    run = rig.cli("deploy", str(built["3.0.0"]))
    assert run.returncode == 1
    assert "health check failed" in run.stderr and "rolled back to 2.0.0" in run.stderr
    rig.assert_consistent("2.0.0")
    assert pideploy.status(rig.cfg).previous == "1.0.0"
    result, d = details(rig, "pi_deploy")[-1]
    assert (result, d["from"], d["to"]) == ("failed", "2.0.0", "3.0.0") and "health check failed" in d["reason"]


def test_v3_that_answers_500_is_rolled_back(rig: Rig, built: dict[str, Path]) -> None:
    pideploy.deploy(rig.cfg, str(built["2.0.0"]))
    rig.cfg.pi.health_timeout_s = FAILING_TIMEOUT_S
    result = pideploy.deploy(rig.cfg, str(built["3.0.1"]))
    assert not result.ok and result.current == "2.0.0"
    assert "HTTP 500" in result.reason and "rolled back to 2.0.0" in result.reason
    rig.assert_consistent("2.0.0")
    assert details(rig, "pi_deploy")[-1][0] == "failed"


def test_failed_first_deploy_leaves_no_current(rig: Rig, built: dict[str, Path]) -> None:
    rig.cfg.pi.health_timeout_s = FAILING_TIMEOUT_S
    result = pideploy.deploy(rig.cfg, str(built["3.0.0"]))
    assert not result.ok and result.current is None and "no earlier release" in result.reason
    assert not (rig.root / "current").exists()


def test_smoke_command_failure_keeps_current(rig: Rig, built: dict[str, Path]) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    rig.cfg.pi.smoke_command = shlex.join([sys.executable, "-c", "import os, sys; sys.exit(os.path.exists('main.py') + 6)"])
    result = pideploy.deploy(rig.cfg, str(built["2.0.0"]))
    assert not result.ok and "smoke command exited 7" in result.reason
    rig.assert_consistent("1.0.0")
    assert details(rig, "pi_deploy")[-1][0] == "failed"


def test_failing_restart_command_switches_back(rig: Rig, built: dict[str, Path]) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    good = rig.cfg.pi.restart_command
    rig.cfg.pi.restart_command = shlex.join([sys.executable, "-c", "import sys; sys.exit('unit pi-sensors not found')"])
    result = pideploy.deploy(rig.cfg, str(built["2.0.0"]))
    assert not result.ok and result.current == "1.0.0"
    assert "restart command exited 1" in result.reason and "unit pi-sensors not found" in result.reason
    rig.cfg.pi.restart_command = good
    assert pideploy.status(rig.cfg).current == "1.0.0" and rig.serving() == "1.0.0"


def test_current_that_is_a_real_folder_is_left_alone(rig: Rig, built: dict[str, Path]) -> None:
    (rig.root / "current").mkdir(parents=True)
    with pytest.raises(PicoctlError, match="is not a link; move it into"):
        pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    assert (rig.root / "current").is_dir()


@pytest.mark.parametrize("target", ["/opt/pi-app", "releases/../../etc", "releases/1.0.0/sub", "releases/latest", "1.0.0"])
def test_a_link_picoctl_did_not_make_is_left_alone(rig: Rig, built: dict[str, Path], target: str) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    (rig.root / "current").unlink()
    os.symlink(target, rig.root / "current")  # made by hand: names no release picoctl could switch back to
    with pytest.raises(PicoctlError, match="not at releases/<version>: move that release"):
        pideploy.deploy(rig.cfg, str(built["2.0.0"]))
    assert os.readlink(rig.root / "current") == target
    assert sorted(p.name for p in (rig.root / "releases").iterdir()) == ["1.0.0"]


def test_unreadable_journal_stops_everything_with_a_clear_error(rig: Rig, built: dict[str, Path]) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    (rig.root / ".deploy-journal.json").write_text('{"op": "dep')
    run = rig.cli("deploy", str(built["2.0.0"]))
    assert run.returncode == 1 and "unreadable deploy journal" in run.stderr and "remove it" in run.stderr
    assert os.readlink(rig.root / "current") == "releases/1.0.0"


@pytest.mark.parametrize("change", [{"to_version": "../../etc"}, {"from_version": 3}, {"started_at": "noon"},
                                    {"actor": None}, {"previous_before": "releases/1.0.0"}], ids=str)
def test_a_journal_edited_by_hand_is_refused_before_any_link_moves(rig: Rig, built: dict[str, Path], change: dict) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    entry = {"op": "deploy", "to_version": "2.0.0", "from_version": "1.0.0", "previous_before": None, "actor": "a",
             "step": "switched", "reason": "", "started_at": 1.0, "source": "x"} | change
    (rig.root / ".deploy-journal.json").write_text(json.dumps(entry))
    run = rig.cli("deploy", str(built["2.0.0"]))
    assert run.returncode == 1 and "the deploy journal's" in run.stderr and "remove it" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and os.readlink(rig.root / "current") == "releases/1.0.0"


def test_keeps_configured_releases_but_never_current_or_previous(rig: Rig, built: dict[str, Path]) -> None:
    rig.cfg.pi.keep_releases = 2
    for v in ("1.0.0", "2.0.0", "2.1.0"):
        assert pideploy.deploy(rig.cfg, str(built[v])).ok
    assert sorted(pideploy.status(rig.cfg).releases) == ["2.0.0", "2.1.0"]
    with pytest.raises(BadInput, match="1.0.0 is not on disk"):
        pideploy.rollback(rig.cfg, "1.0.0")
    assert pideploy.rollback(rig.cfg, "2.0.0").ok
    assert pideploy.deploy(rig.cfg, str(built["1.0.0"])).ok  # a downgrade by deploy: 2.1.0 goes, 2.0.0 stays
    assert sorted(pideploy.status(rig.cfg).releases) == ["1.0.0", "2.0.0"]


def test_same_version_again_changes_nothing(rig: Rig, built: dict[str, Path]) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    pid = (rig.tmp / "app.pid").read_text()
    again = pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    assert (again.ok, again.changed) == (True, False)
    assert (rig.tmp / "app.pid").read_text() == pid


# --- refusals: nothing reaches releases/ ---------------------------------------------------------

def _tampered(d: Path, built: dict[str, Path], keys: Keys) -> Path:
    shutil.copytree(built["2.0.0"], d)
    artifact = next(d.glob("*.tar.gz"))
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 1
    artifact.write_bytes(bytes(data))
    return d


def _truncated(d: Path, built: dict[str, Path], keys: Keys) -> Path:
    shutil.copytree(built["2.0.0"], d)
    artifact = next(d.glob("*.tar.gz"))
    artifact.write_bytes(artifact.read_bytes()[:-10])
    return d


def _other_key(d: Path, built: dict[str, Path], keys: Keys) -> Path:
    release.build("pi", "2.0.0", APP, d, key_hex=signing.generate_keypair()[0])
    return d


def _unsigned(d: Path, built: dict[str, Path], keys: Keys) -> Path:
    release.build("pi", "2.0.0", APP, d)
    return d


def _damaged(d: Path, built: dict[str, Path], keys: Keys) -> Path:
    """Signed, sizes and hashes right, but the archive is not gzip at all."""
    shutil.copytree(built["2.0.0"], d)
    artifact = next(d.glob("*.tar.gz"))
    artifact.write_bytes(b"this is not a gzip stream\n" * 40)
    meta = json.loads((d / "meta.json").read_text())
    meta.update(size=artifact.stat().st_size, sha256=signing.sha256_file(artifact))
    meta["signature"] = signing.sign_document(meta, keys.private)
    (d / "meta.json").write_text(json.dumps(meta))
    return d


REFUSALS = {
    "damaged archive": (_damaged, "damaged archive"),
    "tampered": (_tampered, "sha256 does not match"),
    "truncated": (_truncated, "truncated"),
    "wrong signature": (_other_key, "signature does not verify"),
    "unsigned": (_unsigned, "not signed"),
    "traversal": (lambda d, b, k: craft(d, k, [(entry("pi-sensors-9.0.0/main.py"), b"x"),
                                               (entry("pi-sensors-9.0.0/../evil"), b"x")]), "unsafe file name"),
    "absolute": (lambda d, b, k: craft(d, k, [(entry("/tmp/evil"), b"x")]), "unsafe file name"),
    "outside root": (lambda d, b, k: craft(d, k, [(entry("other/evil"), b"x")]), "outside the release root"),
    "symlink": (lambda d, b, k: craft(d, k, [(entry("pi-sensors-9.0.0/main.py"), b"x"),
                                             (entry("pi-sensors-9.0.0/evil", tarfile.SYMTYPE, "/etc/passwd"), None)]), "is a link"),
    "hard link": (lambda d, b, k: craft(d, k, [(entry("pi-sensors-9.0.0/main.py"), b"x"),
                                               (entry("pi-sensors-9.0.0/evil", tarfile.LNKTYPE, "pi-sensors-9.0.0/main.py"),
                                                None)]), "is a link"),
    "device": (lambda d, b, k: craft(d, k, [(entry("pi-sensors-9.0.0/evil", tarfile.CHRTYPE), None)]), "device or special"),
    "duplicate": (lambda d, b, k: craft(d, k, [(entry("pi-sensors-9.0.0/main.py"), b"x"),
                                               (entry("pi-sensors-9.0.0/main.py"), b"evil")]), "appears twice"),
    "newline in a name": (lambda d, b, k: craft(d, k, [(entry("pi-sensors-9.0.0/main.py"), b"x"),
                                                       (entry("pi-sensors-9.0.0/a\nb.py"), b"x")]), "control character"),
    "name over 255 bytes": (lambda d, b, k: craft(d, k, [(entry("pi-sensors-9.0.0/main.py"), b"x"),
                                                         (entry("pi-sensors-9.0.0/" + "\u00e9" * 128), b"x")]),
                            "longer than 255 bytes"),
    "names differing in case": (lambda d, b, k: craft(d, k, [(entry("pi-sensors-9.0.0/main.py"), b"x"),
                                                             (entry("pi-sensors-9.0.0/Main.py"), b"x")]), "only in case"),
    "no main.py": (lambda d, b, k: craft(d, k, [(entry("pi-sensors-9.0.0/evil.py"), b"x")]), "no main.py"),
    "unpacks too big": (lambda d, b, k: craft(d, k, [(entry("pi-sensors-9.0.0/main.py"), b"\0" * 300_000)]),
                        "more than pi.max_archive_bytes"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_release_is_refused_before_anything_is_unpacked(rig: Rig, built: dict[str, Path], keys: Keys, case: str) -> None:
    make, message = REFUSALS[case]
    bad = make(rig.tmp / "bad", built, keys)
    rig.cfg.pi.max_archive_bytes = 200_000
    with pytest.raises(BadInput, match=message) as refused:
        pideploy.deploy(rig.cfg, str(bad))
    assert ".incoming" not in str(refused.value)  # the source given, never our deleted temp copy
    assert list((rig.root / "releases").iterdir()) == []
    assert list((rig.root / ".incoming").iterdir()) == []
    assert not (rig.root / "current").exists() and not (rig.root / ".deploy-journal.json").exists()
    assert not list(rig.tmp.rglob("evil")) and not Path("/tmp/evil").exists()
    [(result, d)] = details(rig, "pi_deploy")
    assert result == "refused" and message in d["reason"] and str(bad) in d["reason"] and ".incoming" not in d["reason"]


def test_oversize_artifact_is_refused_before_download(rig: Rig, built: dict[str, Path]) -> None:
    rig.cfg.pi.max_archive_bytes = 1000
    with pytest.raises(BadInput, match="over pi.max_archive_bytes"):
        pideploy.deploy(rig.cfg, str(built["1.0.0"]))


@pytest.mark.parametrize("args, message", [
    (["deploy", "/nonexistent/release"], "no such release folder"),
    (["deploy", "REL", "--sha256", "xyz"], "--sha256: expected 64 hex digits"),
    (["rollback"], "no previous release to roll back to"),
    (["rollback", "--to", "../x"], "not a semantic version"),
    (["update"], "pi.update_url is not set"),
])
def test_cli_bad_input_exits_2_with_one_line(rig: Rig, built: dict[str, Path], args: list[str], message: str) -> None:
    run = rig.cli(*[str(built["1.0.0"]) if a == "REL" else a for a in args])
    assert run.returncode == 2 and message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_deploy_without_public_key_is_refused(rig: Rig, built: dict[str, Path]) -> None:
    rig.cfg.release.public_key = ""
    with pytest.raises(BadInput, match="release.public_key is not set"):
        pideploy.deploy(rig.cfg, str(built["1.0.0"]))


# --- URL sources and update ----------------------------------------------------------------------

def test_deploy_from_meta_url_and_artifact_url(rig: Rig, built: dict[str, Path]) -> None:
    with serving(files(built["1.0.0"].parent)) as base:
        seen: list = []
        r1 = pideploy.deploy(rig.cfg, f"{base}/1.0.0/meta.json", Progress("pi deploy", seen.append))
        assert r1.ok and rig.serving() == "1.0.0"
        size = release.load_meta(built["1.0.0"])["size"]
        assert [(e.done, e.total) for e in seen if e.phase == "download"][-1] == (size, size)
        meta = release.load_meta(built["2.0.0"])
        artifact_url = f"{base}/2.0.0/{meta['artifact']}"
        with pytest.raises(PicoctlError, match="is not the expected --sha256"):
            pideploy.deploy(rig.cfg, artifact_url, sha256="0" * 64)
        assert list((rig.root / ".incoming").iterdir()) == []
        run = rig.cli("deploy", artifact_url, "--sha256", meta["sha256"])
        assert run.returncode == 0, run.stderr
        assert rig.serving() == "2.0.0"
        with pytest.raises(PicoctlError, match="HTTP 404"):
            pideploy.deploy(rig.cfg, f"{base}/9.9.9/meta.json")


def test_update_deploys_only_newer_releases_of_its_channel(rig: Rig, built: dict[str, Path]) -> None:
    published = rig.tmp / "published"
    shutil.copytree(built["1.0.0"], published / "stable")
    shutil.copytree(built["2.0.0"], published / "canary")
    with serving(files(published)) as base:
        rig.cfg.pi.update_url = f"{base}/{{channel}}/meta.json"
        first = pideploy.update(rig.cfg)
        assert (first.ok, first.changed, rig.serving()) == (True, True, "1.0.0")
        again = pideploy.update(rig.cfg)
        assert (again.changed, again.reason) == (False, "up to date: 1.0.0 is current, 1.0.0 is published")
        shutil.rmtree(published / "stable")
        shutil.copytree(built["2.0.0"], published / "stable")  # a canary release where stable should be
        held = pideploy.update(rig.cfg)
        assert not held.changed and "published for canary only" in held.reason
        rig.save()
        run = rig.cli("update", "--channel", "canary")
        assert run.returncode == 0, run.stderr
        assert rig.serving() == "2.0.0"
        assert "(update, canary)" in rig.events[-1]["actor"]


# --- crashes and concurrency ---------------------------------------------------------------------

@pytest.mark.parametrize("step, after", [("fetched", "1.0.0"), ("unpacked", "1.0.0"),
                                         ("switched", "2.0.0"), ("restarted", "2.0.0")])
def test_sigkill_at_each_step_is_recovered_by_the_next_call(rig: Rig, built: dict[str, Path], step: str, after: str) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    run = rig.cli("deploy", str(built["2.0.0"]), env={CRASH_ENV: step})
    assert run.returncode == -signal.SIGKILL
    assert json.loads((rig.root / ".deploy-journal.json").read_text())["step"] == step
    status = rig.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    assert "recovering" in status.stderr
    rig.assert_consistent(after)
    result, d = details(rig, "pi_deploy")[-1]
    assert (result, d["to"]) == (("aborted" if after == "1.0.0" else "ok"), "2.0.0")
    assert pideploy.deploy(rig.cfg, str(built["2.1.0"])).ok  # the lock was not left stuck


def test_sigkill_while_switching_back_is_finished_by_the_next_call(rig: Rig, built: dict[str, Path]) -> None:
    pideploy.deploy(rig.cfg, str(built["2.0.0"]))
    rig.cfg.pi.health_timeout_s = FAILING_TIMEOUT_S
    rig.save()
    run = rig.cli("deploy", str(built["3.0.1"]), env={CRASH_ENV: "reverting"})
    assert run.returncode == -signal.SIGKILL
    assert os.readlink(rig.root / "current") == "releases/3.0.1"
    again = pideploy.deploy(rig.cfg, str(built["2.0.0"]))  # recovers first, then finds 2.0.0 current
    assert again.changed is False
    rig.assert_consistent("2.0.0")
    result, d = details(rig, "pi_deploy")[-1]
    assert result == "failed" and "HTTP 500" in d["reason"]


def smoke_that_marks(marker: Path, seconds: float) -> str:
    """A smoke command that touches `marker` as it starts, then takes `seconds`."""
    return shlex.join([sys.executable, "-c", f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep({seconds})"])


def test_deploy_killed_from_outside_during_smoke_test_is_undone(rig: Rig, built: dict[str, Path]) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    marker = rig.tmp / "smoke-started"
    rig.cfg.pi.smoke_command = smoke_that_marks(marker, 30)
    rig.save()
    victim = rig.popen("deploy", str(built["2.0.0"]))
    try:
        wait_for(marker.exists, 20, "the smoke test started", every=0.05)
    finally:
        victim.kill()
        victim.communicate()
    rig.cfg.pi.smoke_command = ""
    rig.assert_consistent("1.0.0")
    result, d = details(rig, "pi_deploy")[-1]
    assert (result, d["to"]) == ("aborted", "2.0.0") and "interrupted after 'unpacked'" in d["reason"]


def test_second_deploy_refuses_clearly_or_waits(rig: Rig, built: dict[str, Path]) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    marker = rig.tmp / "smoke-started"
    rig.cfg.pi.smoke_command = smoke_that_marks(marker, 2)
    rig.save()
    first = rig.popen("deploy", str(built["2.0.0"]))
    try:
        wait_for(marker.exists, 20, "the smoke test started", every=0.05)
        refused = rig.cli("deploy", str(built["2.1.0"]))
        assert refused.returncode == 1
        assert f"another deploy is running (pid {first.pid}: deploy {built['2.0.0']}" in refused.stderr
        waited = rig.cli("deploy", str(built["2.1.0"]), "--wait", "30")
        assert waited.returncode == 0, waited.stderr
        assert first.wait(timeout=30) == 0
    finally:
        first.kill()
        first.communicate()
    rig.assert_consistent("2.1.0")
    assert pideploy.status(rig.cfg).previous == "2.0.0"


def test_status_json_and_queued_events_while_hub_is_down(rig: Rig, built: dict[str, Path]) -> None:
    rig.cfg.hub.public_url = f"http://127.0.0.1:{free_port()}"
    rig.save()
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    run = rig.cli("status", "--json")
    assert run.returncode == 0, run.stderr
    st = json.loads(run.stdout)
    assert (st["current"], st["healthy"], st["queued_events"]) == ("1.0.0", True, 1)
    queued = json.loads((rig.tmp / "data" / "pending-events.jsonl").read_text())
    assert (queued["kind"], queued["result"], queued["version"]) == ("pi_deploy", "ok", "1.0.0")


# --- same-version replacement, full disks, durability, which release answers ----------------------

def test_sigkill_while_replacing_a_same_version_release_keeps_the_one_previous_names(rig: Rig, built: dict[str, Path]) -> None:
    for v in ("1.0.0", "2.0.0"):
        pideploy.deploy(rig.cfg, str(built[v]))
    assert pideploy.rollback(rig.cfg).ok  # current 1.0.0, previous 2.0.0
    run = rig.cli("deploy", str(built["2.0.0"]), env={CRASH_ENV: "replaced"})  # killed between the two renames
    assert run.returncode == -signal.SIGKILL
    status = rig.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    rig.assert_consistent("1.0.0")
    assert os.readlink(rig.root / "previous") == "releases/2.0.0" and (rig.root / "releases" / "2.0.0" / "main.py").is_file()
    assert rig.cli("rollback").returncode == 0
    rig.assert_consistent("2.0.0")


def _one_line_failure(run: subprocess.CompletedProcess, message: str) -> None:
    assert run.returncode == 1, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr and message in run.stderr, run.stderr
    assert [line for line in run.stderr.splitlines() if message in line] == [run.stderr.strip().splitlines()[-1]]


def _big_unpacked(d: Path, keys: Keys) -> Path:
    """A small archive (1 MiB of zeros compresses to about 1 KiB) that unpacks past a 256 KiB file limit."""
    return craft(d, keys, [(entry("pi-sensors-9.0.0/main.py"), APP.joinpath("main.py").read_bytes()),
                           (entry("pi-sensors-9.0.0/zeros.bin"), bytes(1 << 20))])


@pytest.mark.parametrize("where, limit, message", [
    ("download", 1024, "cannot store the download"),
    ("journal", 64, "cannot write the deploy journal"),
    ("unpack", 256 * 1024, "cannot unpack"),
])
def test_a_full_disk_during_deploy_is_one_line_exit_1_an_event_and_nothing_left(
        rig: Rig, built: dict[str, Path], keys: Keys, where: str, limit: int, message: str) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    source = _big_unpacked(rig.tmp / "big", keys) if where == "unpack" else built["2.0.0"]
    size = next(source.glob("*.tar.gz")).stat().st_size
    assert size > limit if where == "download" else where == "journal" or size < limit
    run = rig.cli("deploy", str(source), file_size_limit=limit)
    _one_line_failure(run, message)
    assert "damaged archive" not in run.stderr and "File too large" in run.stderr
    rig.assert_consistent("1.0.0")
    assert not list(rig.root.glob(".deploy-journal*")) and sorted(os.listdir(rig.root / "releases")) == ["1.0.0"]
    result, d = details(rig, "pi_deploy")[-1]
    assert result == "refused" and message in d["reason"] and d["from"] == "1.0.0"


def test_a_full_disk_at_rollback_leaves_no_journal_temp_and_records_it(rig: Rig, built: dict[str, Path]) -> None:
    for v in ("1.0.0", "2.0.0"):
        pideploy.deploy(rig.cfg, str(built[v]))
    run = rig.cli("rollback", file_size_limit=64)
    _one_line_failure(run, "cannot write the deploy journal")
    assert not list(rig.root.glob(".deploy-journal*"))
    rig.assert_consistent("2.0.0")
    result, d = details(rig, "pi_rollback")[-1]
    assert (result, d["from"], d["to"]) == ("refused", "2.0.0", "1.0.0")


def test_a_deploy_killed_before_it_knows_the_version_still_leaves_an_event(rig: Rig, built: dict[str, Path]) -> None:
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    run = rig.cli("deploy", str(built["2.0.0"]), env={CRASH_ENV: "started"})
    assert run.returncode == -signal.SIGKILL
    assert rig.cli("status").returncode == 0
    rig.assert_consistent("1.0.0")
    result, d = details(rig, "pi_deploy")[-1]
    assert (result, d["from"], d["to"]) == ("aborted", "1.0.0", None)


def test_the_release_is_on_disk_before_current_names_it(rig: Rig, built: dict[str, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file and folder of the new release is fsynced before the rename into releases/ and the
    switch, and the folders holding the renamed entries after them."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(("replace", os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert pideploy.deploy(rig.cfg, str(built["1.0.0"])).ok
    dest = str(rig.root / "releases" / "1.0.0")
    installed = calls.index(("replace", dest))
    stage = str(rig.root / ".incoming" / "unpack-1.0.0")
    synced_before = {path.replace(stage, dest, 1) for op, path in calls[:installed] if op == "fsync"}
    on_disk = {str(p) for p in Path(dest).rglob("*")} | {dest}
    assert on_disk <= synced_before, sorted(on_disk - synced_before)
    after = calls[installed:]
    assert ("fsync", str(rig.root / "releases")) in after
    switched = after.index(("replace", str(rig.root / "current")))
    assert ("fsync", str(rig.root)) in after[switched:]


def test_the_health_check_waits_for_the_new_release_to_answer(rig: Rig, built: dict[str, Path]) -> None:
    """A restart command that returns while the old app still runs (here: one that restarts nothing)
    does not let the old release pass for the new one: the health answer names its version."""
    pideploy.deploy(rig.cfg, str(built["1.0.0"]))
    restart = rig.cfg.pi.restart_command
    rig.cfg.pi.restart_command = shlex.join([sys.executable, "-c", "pass"])
    rig.cfg.pi.health_timeout_s = FAILING_TIMEOUT_S
    result = pideploy.deploy(rig.cfg, str(built["2.0.0"]))
    assert not result.ok and "HTTP 200 from version 1.0.0, not 2.0.0" in result.reason
    assert (result.current, rig.serving()) == ("1.0.0", "1.0.0")
    rig.cfg.pi.restart_command = restart
    assert pideploy.deploy(rig.cfg, str(built["2.0.0"])).ok and rig.serving() == "2.0.0"
    st = pideploy.status(rig.cfg)
    assert st.healthy and "version 2.0.0" in st.health
