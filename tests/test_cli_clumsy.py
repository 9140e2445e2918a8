"""Every command as a clumsy operator types it: missing and malformed arguments, numbers out of range,
ids and paths that do not exist, garbage files, a hub that is down, failing, lying or silent, a wrong
token, a full disk, and Ctrl-C or SIGTERM in the middle. Each ends with one clear line on stderr and a
non-zero exit (2 for bad usage or input), never a traceback, and leaves no half-written file.

Runs the installed `picoctl` entry point in a subprocess, as the operator does."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Hub, free_port
from loopback import Peer, serving

PICOCTL = str(Path(sys.executable).with_name("picoctl"))
WAIT_S = 60  # the bound on any one command; each ends in well under a second but on a loaded machine


class _Answer(Peer):
    status = 500
    body = b"Internal Server Error"

    def _reply(self) -> None:
        self.answer(self.status, self.body)

    do_GET = do_POST = do_PUT = do_DELETE = _reply  # noqa: N815 (http.server names them)


class _Garbage(_Answer):
    status = 200
    body = b"\x00<html>not the hub \xff"


class _WrongShape(_Answer):
    status = 200
    body = b'["a list", "where an object belongs"]'


class _Fieldless(_Answer):
    """JSON of the right kind for each route (a list or an object) with none of the fields it has."""

    status = 200
    LISTS = re.compile(r"/api/v1/(devices|history|releases|rollouts|devices/[^/]+/readings)")

    def _reply(self) -> None:
        self.body = b"[{}]" if self.LISTS.fullmatch(self.path.partition("?")[0]) else b"{}"
        super()._reply()

    do_GET = do_POST = do_PUT = do_DELETE = _reply  # noqa: N815


class _Stringly(_Fieldless):
    """The right kind and the fields, but strings where numbers belong."""

    ROW = {"id": "7", "type": "picow", "channel": "stable", "version": "1.0.0", "status": "online",
           "last_seen": "yesterday", "rssi": "-61", "keys": "1", "offer": None, "error_summary": "", "last_error": None,
           "boots": None, "reset_cause": None, "firmware": {}, "heartbeats": [], "events": [], "at": "noon",
           "actor": "pi", "kind": "x", "device_id": None, "result": None, "detail": None, "target": "picow",
           "state": "active", "stages": [], "failures": [], "sha256": "00", "published_at": "today", "meta": {}}

    def _reply(self) -> None:
        row = json.dumps(self.ROW).encode()
        self.body = b"[" + row + b"]" if self.LISTS.fullmatch(self.path.partition("?")[0]) else row
        _Answer._reply(self)

    do_GET = do_POST = do_PUT = do_DELETE = _reply  # noqa: N815


class _Silent:
    """A hub that accepts connections and never answers; `connected` is set at the first one."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connected = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.connected.set()

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A site with a real hub, and the places and fake hubs the cases name."""
    root = tmp_path_factory.mktemp("clumsy")
    hub = Hub.create(root / "site")
    hub.start()
    fakes = contextlib.ExitStack()
    fake_urls = {name: fakes.enter_context(serving(handler)) for name, handler in (
        ("h500", _Answer), ("garbage", _Garbage), ("shape", _WrongShape), ("fieldless", _Fieldless), ("stringly", _Stringly))}
    silent = _Silent()
    files = root / "files"
    files.mkdir()
    (files / "not-json").mkdir()
    (files / "not-json" / "meta.json").write_text("{ this is not JSON")
    (files / "wrong-json").mkdir()
    (files / "wrong-json" / "meta.json").write_text('["a list"]')
    (files / "empty").mkdir()
    (files / "empty" / "meta.json").write_text("")
    (files / "bad-tar").mkdir()
    (files / "bad-tar" / "meta.json").write_text(
        '{"target": "picow", "version": "1.0.0", "artifact": "app.tar", "sha256": "00", "size": 9, "signature": ""}')
    (files / "bad-tar" / "app.tar").write_bytes(b"not a tar")
    (files / "cut.uf2").write_bytes(b"UF2\nW\x95\x9e]\x00\x00" + b"\x00" * 100)  # a block's start, cut short
    (files / "garbage.uf2").write_bytes(b"\xff" * 1024)
    (files / "empty.uf2").write_bytes(b"")
    (files / "garbage.key").write_text("not a key at all")
    (files / "garbage.json").write_text("{{{{")
    (files / "garbage.toml").write_text("[hub\nport = ")
    (files / "src").mkdir()
    (files / "src" / "main.py").write_text("print('hi')\n")
    bad_token, no_token = root / "bad-token", root / "no-token"
    for copy in (bad_token, no_token):
        shutil.copytree(hub.site, copy, ignore=shutil.ignore_patterns("data"))
    (bad_token / "operator.token").write_text("not-the-token\n")
    (no_token / "operator.token").unlink()
    try:
        yield {"site": str(hub.site), "cfg": str(hub.site / "fleet.toml"), "hub": hub.url, "files": str(files),
               "root": str(root), "down": f"http://127.0.0.1:{free_port()}", **fake_urls,
               "silent": f"http://127.0.0.1:{silent.port}",
               "_silent": silent, "bad_token": str(bad_token / "fleet.toml"), "no_token": str(no_token / "fleet.toml")}
    finally:
        silent.close()
        fakes.close()
        hub.close()


def run(world: dict, argv: list[str], hub: str = "hub", cfg: str = "cfg", limit: int | None = None,
        stdout_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PICOCTL_HUB_URL": world[hub], "PICOCTL_CONFIG": world[cfg], "HOME": world["root"],
           "COLUMNS": "80"}
    args = [a.format(**{k: v for k, v in world.items() if not k.startswith("_")}) for a in argv]
    preexec = None
    if limit is not None:
        def preexec() -> None:
            import resource
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    out = open(stdout_file, "w") if stdout_file else subprocess.PIPE
    try:
        return subprocess.run([PICOCTL, *args], stdout=out, stderr=subprocess.PIPE, text=True, env=env,
                              timeout=WAIT_S, preexec_fn=preexec)
    finally:
        if stdout_file:
            out.close()


def assert_clear_failure(done: subprocess.CompletedProcess[str], code: int | None) -> None:
    err = done.stderr.strip()
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode != 0, (done.stdout, done.stderr)
    if code is not None:
        assert done.returncode == code, done.stderr
    assert err, "no message on stderr"
    assert len(err) >= len("picoctl: terminated"), err  # a sentence, naming what went wrong


USAGE = 2
FAILED = 1
CASES: list[tuple[str, list[str], dict, int | None]] = [
    # arguments: missing, extra, malformed, out of range
    ("unknown command", ["flash"], {}, USAGE),
    ("unknown option", ["devices", "--colour"], {}, USAGE),
    ("extra argument", ["history", "gh-01"], {}, USAGE),
    ("missing id", ["devices", "show"], {}, USAGE),
    ("missing version", ["rollout", "start"], {}, USAGE),
    ("keys generate without --out", ["keys", "generate"], {}, USAGE),
    ("history negative limit", ["history", "--limit", "-5"], {}, USAGE),
    ("history zero limit", ["history", "--limit", "0"], {}, USAGE),
    ("history huge limit", ["history", "--limit", "99999999999999999999999"], {}, USAGE),
    ("history non-ascii limit", ["history", "--limit", "١٢"], {}, USAGE),
    ("history word limit", ["history", "--limit", "ten"], {}, USAGE),
    ("devices show nan beats", ["devices", "show", "gh-01", "--beats", "nan"], {}, USAGE),
    ("devices show huge beats", ["devices", "show", "gh-01", "--beats", "1" + "0" * 30], {}, USAGE),
    ("devices readings negative", ["devices", "readings", "gh-01", "--limit", "-1"], {}, USAGE),
    ("devices log nan timeout", ["devices", "log", "gh-01", "--timeout", "nan"], {}, USAGE),
    ("devices log infinite timeout", ["devices", "log", "gh-01", "--timeout", "inf"], {}, USAGE),
    ("devices log negative timeout", ["devices", "log", "gh-01", "--timeout", "-3"], {}, USAGE),
    ("devices add bad id", ["devices", "add", "no spaces/allowed"], {}, USAGE),
    ("devices add non-ascii id", ["devices", "add", "gh-０１"], {}, USAGE),
    ("devices add unknown type", ["devices", "add", "gh-90", "--type", "toaster"], {}, USAGE),
    ("devices add bad channel", ["devices", "add", "gh-90", "--channel", "beta"], {}, USAGE),
    ("rollout status negative id", ["rollout", "status", "-1"], {}, USAGE),
    ("rollout status huge id", ["rollout", "status", "99999999999999999999999"], {}, USAGE),
    ("rollout status word id", ["rollout", "status", "one"], {}, USAGE),
    ("rollout start bad version", ["rollout", "start", "1.x"], {}, USAGE),
    ("rollout start nan percent", ["rollout", "start", "1.0.0", "--percent", "nan"], {}, USAGE),
    ("rollout start huge percent", ["rollout", "start", "1.0.0", "--percent", "500"], {}, USAGE),
    ("rollout start negative halt", ["rollout", "start", "1.0.0", "--halt-after-failures", "-1"], {}, USAGE),
    ("rollout start bad stages", ["rollout", "start", "1.0.0", "--stages", "canary:abc,,"], {}, USAGE),
    ("usb flash nan timeout", ["usb", "flash", "{files}/cut.uf2", "--timeout", "nan"], {}, USAGE),
    ("usb flash negative timeout", ["usb", "flash", "{files}/cut.uf2", "--timeout", "-1"], {}, USAGE),
    ("usb log negative seconds", ["usb", "log", "--port", "/dev/nope", "--seconds", "-1"], {}, USAGE),
    ("usb log nan seconds", ["usb", "log", "--port", "/dev/nope", "--seconds", "nan"], {}, USAGE),
    ("usb log port missing", ["usb", "log", "--no-hub", "--port", "{root}/no-port", "--seconds", "1"], {}, None),
    ("usb log port a plain file", ["usb", "log", "--no-hub", "--port", "{files}/garbage.uf2", "--seconds", "1"], {}, None),
    ("usb follow nan seconds", ["usb", "follow", "--seconds", "nan"], {}, USAGE),
    ("usb flash-esp bad address", ["usb", "flash-esp", "{files}/garbage.uf2", "--port", "/dev/nope", "--addr", "0xZZ"],
     {}, USAGE),
    ("usb flash-esp zero baud", ["usb", "flash-esp", "{files}/garbage.uf2", "--port", "/dev/nope", "--baud", "0"],
     {}, USAGE),
    ("pi deploy nan wait", ["pi", "deploy", "{files}/not-json", "--wait", "nan"], {}, USAGE),
    ("pi rollback negative wait", ["pi", "rollback", "--wait", "-1"], {}, USAGE),
    ("serve port out of range", ["serve", "--port", "70000"], {}, USAGE),
    ("serve negative port", ["serve", "--port", "-1"], {}, USAGE),
    ("demo zero devices", ["demo", "--devices", "0", "--no-tui"], {}, USAGE),
    ("demo huge devices", ["demo", "--devices", "100000", "--no-tui"], {}, USAGE),
    ("release build bad version", ["release", "build", "--target", "picow", "--version", "one", "--source",
                                   "{files}/src", "--out", "{root}/out-bad-version"], {}, USAGE),
    ("release build nan smoke seconds", ["release", "build", "--target", "picow", "--version", "1.0.0", "--source",
                                         "{files}/src", "--out", "{root}/out-nan", "--smoke", "--smoke-seconds", "nan"],
     {}, USAGE),
    ("release smoke nan seconds", ["release", "smoke", "{files}/not-json", "--seconds", "nan"], {}, USAGE),
    ("hub migrate not a url", ["hub", "migrate", "--to", "sqlite:///x"], {}, USAGE),
    ("device provision bad id", ["device", "provision", "bad id!", "--out", "{root}/prov"], {}, USAGE),
    # ids that do not exist
    ("devices show unknown", ["devices", "show", "gh-404"], {}, None),
    ("devices remove unknown", ["devices", "remove", "gh-404"], {}, None),
    ("devices readings unknown", ["devices", "readings", "gh-404"], {}, None),
    ("devices log unknown", ["devices", "log", "gh-404"], {}, None),
    ("rollout status unknown", ["rollout", "status", "404"], {}, None),
    ("rollout promote unknown", ["rollout", "promote", "404"], {}, None),
    ("rollout halt none", ["rollout", "halt"], {}, None),
    ("rollout start unpublished", ["rollout", "start", "9.9.9"], {}, None),
    ("pi rollback to unknown", ["pi", "rollback", "--to", "9.9.9"], {}, None),
    # paths: missing, a directory, empty or garbage
    ("config missing", ["devices"], {"cfg": "files"}, USAGE),
    ("config garbage", ["--config", "{files}/garbage.toml", "devices"], {}, USAGE),
    ("config is a directory", ["--config", "{files}", "devices"], {}, USAGE),
    ("release verify missing", ["release", "verify", "{root}/nowhere"], {}, USAGE),
    ("release verify meta not json", ["release", "verify", "{files}/not-json"], {}, USAGE),
    ("release verify meta wrong json", ["release", "verify", "{files}/wrong-json"], {}, USAGE),
    ("release verify meta empty", ["release", "verify", "{files}/empty"], {}, USAGE),
    ("release verify bad tar", ["release", "verify", "{files}/bad-tar", "--unsigned-ok"], {}, USAGE),
    ("release verify a file", ["release", "verify", "{files}/cut.uf2"], {}, USAGE),
    ("release verify garbage pubkey", ["release", "verify", "{files}/bad-tar", "--pubkey", "{files}/garbage.key"],
     {}, USAGE),
    ("release publish missing", ["release", "publish", "{root}/nowhere"], {}, USAGE),
    ("release publish meta not json", ["release", "publish", "{files}/not-json"], {}, USAGE),
    ("release publish bad tar", ["release", "publish", "{files}/bad-tar"], {}, None),
    ("release smoke meta not json", ["release", "smoke", "{files}/not-json"], {}, USAGE),
    ("release smoke garbage readings", ["release", "smoke", "{files}/bad-tar", "--readings", "{files}/garbage.json"],
     {}, USAGE),
    ("release build missing source", ["release", "build", "--target", "picow", "--version", "1.0.0", "--source",
                                      "{root}/nowhere", "--out", "{root}/out-missing"], {}, USAGE),
    ("release build source is a file", ["release", "build", "--target", "picow", "--version", "1.0.0", "--source",
                                        "{files}/cut.uf2", "--out", "{root}/out-file"], {}, USAGE),
    ("release build out is a file", ["release", "build", "--target", "picow", "--version", "1.0.0", "--source",
                                     "{files}/src", "--out", "{files}/cut.uf2"], {}, USAGE),
    ("release build garbage key", ["release", "build", "--target", "picow", "--version", "1.0.0", "--source",
                                   "{files}/src", "--out", "{root}/out-key", "--key", "{files}/garbage.key"], {}, USAGE),
    ("release build key is a directory", ["release", "build", "--target", "picow", "--version", "1.0.0", "--source",
                                          "{files}/src", "--out", "{root}/out-keydir", "--key", "{files}"], {}, USAGE),
    ("release import garbage url", ["release", "import", "not a url"], {}, None),
    ("pi deploy missing", ["pi", "deploy", "{root}/nowhere"], {}, USAGE),
    ("pi deploy meta not json", ["pi", "deploy", "{files}/not-json"], {}, USAGE),
    ("pi deploy bad tar", ["pi", "deploy", "{files}/bad-tar"], {}, None),
    ("pi deploy garbage sha256", ["pi", "deploy", "{files}/bad-tar", "--sha256", "xyz"], {}, USAGE),
    ("usb flash missing", ["usb", "flash", "{root}/nowhere.uf2", "--drive", "{root}"], {}, USAGE),
    ("usb flash a directory", ["usb", "flash", "{files}/src", "--drive", "{root}"], {}, USAGE),
    ("usb flash cut uf2", ["usb", "flash", "{files}/cut.uf2", "--drive", "{root}"], {}, USAGE),
    ("usb flash garbage uf2", ["usb", "flash", "{files}/garbage.uf2", "--drive", "{root}"], {}, USAGE),
    ("usb flash empty uf2", ["usb", "flash", "{files}/empty.uf2", "--drive", "{root}"], {}, USAGE),
    ("usb flash drive missing", ["usb", "flash", "{files}/cut.uf2", "--drive", "{root}/no-drive"], {}, None),
    ("usb push missing", ["usb", "push", "{root}/nowhere", "--port", "/dev/nope"], {}, USAGE),
    ("usb push port missing", ["usb", "push", "{files}/src", "--port", "/dev/nope"], {}, None),
    ("usb push bad tar", ["usb", "push", "{files}/bad-tar", "--port", "/dev/nope"], {}, None),
    ("usb flash-esp missing", ["usb", "flash-esp", "{root}/nowhere.bin", "--port", "/dev/nope"], {}, USAGE),
    ("keys generate out is a file", ["keys", "generate", "--out", "{files}/cut.uf2"], {}, None),
    ("keys sign-set missing root key", ["keys", "sign-set", "--root-key", "{root}/nowhere.key", "--release",
                                        "{files}/garbage.key", "--file", "{root}/set.json"], {}, USAGE),
    ("keys sign-set garbage keys", ["keys", "sign-set", "--root-key", "{files}/garbage.key", "--release", "00",
                                    "--file", "{root}/set.json"], {}, USAGE),
    ("init into a file", ["init", "--dir", "{files}/cut.uf2"], {}, None),
    ("device provision release missing", ["device", "provision", "gh-50", "--out", "{root}/prov", "--release",
                                          "{root}/nowhere"], {}, USAGE),
    # the hub: down, failing, lying, silent; the token wrong or missing
    ("hub down", ["devices"], {"hub": "down"}, FAILED),
    ("hub down history", ["history"], {"hub": "down"}, FAILED),
    ("hub 500", ["devices"], {"hub": "h500"}, FAILED),
    ("hub 500 show", ["devices", "show", "gh-01"], {"hub": "h500"}, FAILED),
    ("hub 500 rollout", ["rollout", "status"], {"hub": "h500"}, FAILED),
    ("hub garbage", ["devices"], {"hub": "garbage"}, FAILED),
    ("hub garbage history", ["history"], {"hub": "garbage"}, FAILED),
    ("hub garbage releases", ["release", "list"], {"hub": "garbage"}, FAILED),
    ("hub not a url", ["devices"], {"hub": "files"}, None),
    ("wrong token", ["devices"], {"cfg": "bad_token"}, None),
    ("no token", ["devices"], {"cfg": "no_token"}, None),
]


@pytest.mark.parametrize(("argv", "where", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_clumsy_command_ends_with_one_clear_line(world: dict, argv: list[str], where: dict, code: int | None) -> None:
    assert_clear_failure(run(world, argv, **where), code)


READERS = [["devices"], ["history"], ["devices", "show", "gh-01"], ["devices", "readings", "gh-01"],
           ["devices", "log", "gh-01", "--timeout", "1"], ["rollout", "status"], ["release", "list"], ["keys", "show"]]


@pytest.mark.parametrize("hub", ["shape", "fieldless", "stringly"])
@pytest.mark.parametrize("argv", READERS, ids=" ".join)
def test_a_hub_answer_of_another_shape_is_named_in_one_line(world: dict, argv: list[str], hub: str) -> None:
    done = run(world, argv, hub=hub)
    assert_clear_failure(done, FAILED)
    said = done.stderr.strip()
    assert re.fullmatch(r"picoctl: error: hub answered GET /api/v1/\S+ with an unexpected shape: \S.+", said), said
    assert {"shape": "expected an object, got a", "fieldless": ": no field '", "stringly": ", got a string"}[hub] in said


def test_a_hub_that_never_answers_times_out_clearly(world: dict) -> None:
    assert_clear_failure(run(world, ["devices"], hub="silent"), FAILED)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_command_ends_it_clearly(world: dict, sig: signal.Signals) -> None:
    silent: _Silent = world["_silent"]
    silent.connected.clear()
    env = {**os.environ, "PICOCTL_HUB_URL": world["silent"], "PICOCTL_CONFIG": world["cfg"], "HOME": world["root"]}
    proc = subprocess.Popen([PICOCTL, "history"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert silent.connected.wait(WAIT_S), "picoctl never reached the hub"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        proc.kill()
        proc.wait()
    assert_clear_failure(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), 128 + sig)


def test_a_full_disk_under_a_release_build_leaves_no_half_written_release(world: dict) -> None:
    big = Path(world["root"]) / "big-src"
    big.mkdir(exist_ok=True)
    (big / "main.py").write_text("print('hi')\n")
    (big / "blob.py").write_bytes(os.urandom(8192))
    out = Path(world["root"]) / "out-full"
    done = run(world, ["release", "build", "--target", "picow", "--version", "1.0.0", "--source", str(big),
                       "--out", str(out)], limit=4096)
    assert_clear_failure(done, FAILED)
    assert not (out / "meta.json").exists()


def test_a_full_disk_under_keys_generate_leaves_no_half_key(world: dict) -> None:
    out = Path(world["root"]) / "keys-full"
    done = run(world, ["keys", "generate", "--out", str(out)], limit=16)
    assert_clear_failure(done, FAILED)
    assert not out.exists() or not any(out.iterdir())


def test_a_full_disk_under_json_output_is_a_clear_failure(world: dict) -> None:
    done = run(world, ["history", "--json"], limit=1, stdout_file=Path(world["root"]) / "history.json")
    assert_clear_failure(done, FAILED)
