"""Bad input to `picoctl release smoke` (exit 2 before anything runs), traces and their export."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from picoctl import provision, release, shipped, smoke
from picoctl.cli import main
from picoctl.errors import BadInput
from picoctl.sim.fleet import SimDevice


@pytest.fixture
def candidate(tmp_path: Path) -> Path:
    out = tmp_path / "picow-1.1.0"
    release.build("picow", "1.1.0", provision.DEVICE_CODE / "app", out)
    return out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


@pytest.mark.parametrize(("text", "where"), [
    ('[\n {"at": 1, "readings": {"moisture": 12}},\n {"at": 2, "readings": {"moisture": 12}\n]\n', "line 4: not JSON"),
    ('{"readings": {"moisture": 12}}\n', "line 1: a trace is a JSON list of heartbeat readings"),
    ('[\n {"at": 1, "readings": {"moisture": 12}},\n\n {"at": 2, "moisture": 12}\n]\n',
     'line 4: expected an object with a "readings" object'),
    ('[{"at": 1, "readings": {"moisture": 12}},\n {"at": 2, "readings": {"moisture": "dry"}}]', "line 2: moisture must be a number"),
    ('[\n {"at": 1, "readings": {"moisture": 140}}\n]', "line 2: moisture must be a number from 0 to 100, got 140"),
    ('[\n {"at": "noon", "readings": {"moisture": 14}}\n]', 'line 2: "at" must be a number'),
    ("[]", "line 1: the trace is empty"),
    ('[{"at": 1, "readings": {"pump": true}}]', "line 1: no reading the simulated board has a sensor for (moisture)"),
    ("", "line 1: not JSON"),
], ids=["not-json", "not-a-list", "no-readings", "not-a-number", "out-of-range", "bad-at", "empty", "no-sensor", "blank"])
def test_a_readings_file_that_is_not_a_trace_exits_2_naming_the_line(tmp_path: Path, candidate: Path, capsys,
                                                                     text: str, where: str) -> None:
    trace = tmp_path / "trace.json"
    trace.write_text(text)
    assert main(["release", "smoke", str(candidate), "--readings", str(trace)]) == 2
    assert f"--readings {trace} {where}" in one_error_line(capsys)


def test_a_trace_keeps_the_sensors_in_order_and_skips_the_apps_outputs(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    trace.write_text('[\n{"at": 1, "readings": {"moisture": 12, "pump": true}},\n{"at": 2, "readings": {"pump": false}},\n'
                     '{"readings": {"moisture": 55.5}}\n]\n')
    assert smoke.load_trace(trace) == [{"moisture": 12.0}, {}, {"moisture": 55.5}]
    with pytest.raises(BadInput, match="cannot read"):
        smoke.load_trace(tmp_path / "missing.json")


def test_a_from_release_of_another_target_exits_2(tmp_path: Path, candidate: Path, capsys) -> None:
    pi = tmp_path / "pi-2.0.0"
    release.build("pi", "2.0.0", shipped.EXAMPLES / "pi-app", pi)
    assert main(["release", "smoke", str(candidate), "--from", str(pi)]) == 2
    assert f"--from {pi}: a pi release; the smoke boots Pico W (picow) releases" in one_error_line(capsys)
    assert main(["release", "smoke", str(pi)]) == 2
    assert "candidate" in one_error_line(capsys)
    assert main(["release", "smoke", str(candidate), "--from", str(candidate)]) == 2
    assert "the same version as the candidate (1.1.0)" in one_error_line(capsys)
    assert main(["release", "smoke", str(tmp_path / "nowhere")]) == 2
    assert "no meta.json" in one_error_line(capsys)
    assert main(["release", "smoke", str(candidate), "--seconds", "0"]) == 2
    assert "--seconds" in one_error_line(capsys)


def test_without_the_unix_port_smoke_says_so_and_how_to_get_one(candidate: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(smoke, "find_micropython", lambda: None)  # as on an aarch64 Pi
    assert main(["release", "smoke", str(candidate)]) == 1
    err = one_error_line(capsys)
    assert "not installed here" in err and "build it from MicroPython's source" in err and "CI attestation" in err
    out = candidate.parent / "picow-1.2.0"
    assert main(["release", "build", "--target", "picow", "--version", "1.2.0", "--source",
                 str(provision.DEVICE_CODE / "app"), "--out", str(out), "--smoke"]) == 1
    assert "not installed here" in one_error_line(capsys) and not out.exists()


def test_build_smoke_options_need_a_picow_smoke(tmp_path: Path, capsys) -> None:
    base = ["release", "build", "--version", "1.0.0", "--out", str(tmp_path / "out")]
    assert main(base + ["--target", "pi", "--source", str(shipped.EXAMPLES / "pi-app"), "--smoke"]) == 2
    assert "only picow releases" in one_error_line(capsys)
    assert main(base + ["--target", "picow", "--source", str(provision.DEVICE_CODE / "app"), "--smoke-seconds", "3"]) == 2
    assert "go with --smoke" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_devices_readings_exports_a_trace_smoke_reads(hub, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PICOCTL_HUB_URL", hub.url)
    cli = ["--config", str(hub.site / "fleet.toml"), "devices", "readings"]
    sim = SimDevice("gh-07", hub.register("gh-07"))
    with httpx.Client(base_url=hub.url, timeout=10) as client:
        for moisture in (41.0, 30.5, 12.0):
            sim.readings = {"moisture": moisture, "pump": moisture < 30}
            sim.heartbeat(client)
    assert main(cli + ["gh-07", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 5  # [, one heartbeat a line, ]
    path = tmp_path / "trace.json"
    path.write_text(out)
    assert smoke.load_trace(path) == [{"moisture": 41.0}, {"moisture": 30.5}, {"moisture": 12.0}]
    assert [b["readings"]["pump"] for b in json.loads(out)] == [False, False, True]
    assert main(cli + ["gh-07", "--limit", "2", "--json"]) == 0
    assert [b["readings"]["moisture"] for b in json.loads(capsys.readouterr().out)] == [30.5, 12.0]
    assert main(cli + ["gh-07"]) == 0
    assert "moisture=12.0" in capsys.readouterr().out
    assert main(cli + ["gh-99"]) == 1
    assert "no device 'gh-99'" in one_error_line(capsys)
    assert main(cli + ["gh-07", "--limit", "0"]) == 2
    with httpx.Client(base_url=hub.url, headers=hub.auth) as client:
        assert client.get("/api/v1/devices/gh-07/readings", params={"limit": "many"}).status_code == 400
        assert client.get("/api/v1/devices/gh-99/readings").status_code == 404
    assert httpx.get(f"{hub.url}/api/v1/devices/gh-07/readings").status_code == 401
