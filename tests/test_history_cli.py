"""`picoctl history` and `devices show` as a person reads them in an 80-column terminal: every line
fits, nothing is cut, a wide terminal keeps one event per line, and a board's firmware is what it
reported; against a real hub, through the CLI as typed."""

from __future__ import annotations

import time

import httpx

from conftest import Hub, cli_lines
from picoctl.sim.fleet import SimDevice

HALT = ("rollout 1 stage canary: 1 device(s) failed at stage canary (halt after 1): gh-03 rolled_back: "
        "AttributeError: module 'hardware' has no attribute 'pump_pwm' (app/main.py:8)")


def history(hub: Hub, columns: int, *args: str) -> list[str]:
    return cli_lines(hub, columns, "history", *args)


def test_history_fits_80_columns_and_cuts_nothing(hub: Hub) -> None:
    hub.register("gh-03", "picow", "canary")
    hub.client.add_history({"actor": "pi@greenhouse-controller", "kind": "rollout_halted", "version": "1.1.0",
                            "result": "halted", "detail": HALT, "at": 1796126345.0})
    hub.client.add_history({"actor": "device", "kind": "deploy_status", "device_id": "gh-03", "version": "1.1.0",
                            "result": "switching", "detail": "resetting into boot.py", "at": 1796126346.0})

    lines = history(hub, 80)
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert lines[1].split() == ["ID", "TIME", "KIND", "DEVICE", "VERSION", "RESULT"]
    halted = next(i for i, line in enumerate(lines) if "rollout_halted" in line)
    assert lines[halted].split()[1:] == ["11:59:05", "rollout_halted", "-", "1.1.0", "halted"]
    under = []
    for line in lines[halted + 1:]:
        if not line.startswith("    "):
            break
        under.append(line.strip())
    assert " ".join(under) == f"pi@greenhouse-controller: {HALT}"  # wrapped beneath its row, every word of it
    switching = lines.index(next(line for line in lines if "switching" in line))
    assert lines[switching].split()[1:] == ["11:59:06", "deploy_status", "gh-03", "1.1.0", "switching"]
    assert lines[switching + 1] == "    device: resetting into boot.py"
    assert "2026-12-01" in lines  # the day, said once for its events

    wide = history(hub, 300)
    assert wide[1].split()[-2:] == ["RESULT", "DETAIL"] and any(line.split(None, 7)[7:] == [HALT] for line in wide)
    assert len(wide) == 2 + 3 + len({"2026-12-01", time.strftime("%Y-%m-%d", time.gmtime())})  # one line an event

    assert history(hub, 80, "--kind", "nothing") == ["no events match these filters"]


def test_devices_show_says_only_what_the_board_reported_and_its_events_fit_80_columns(hub: Hub) -> None:
    sim = SimDevice("gh-03", hub.register("gh-03", "picow", "canary"))
    body = {"id": "gh-03", "counter": sim.counter(), "version": "1.0.0", "seq": 0, "uptime_s": 5, "mem_free": 99232,
            "boots": 5, "reset_cause": "soft", "firmware": {"micropython": "1.29.0", "mpy": 2822,
                                                             "board": "linux [GCC 14.2.1] version", "uid": ""}}
    with httpx.Client(base_url=hub.url, timeout=10) as client:
        sim.send(client, "/heartbeat", *sim.signed(body), verify_mac=True)
    hub.client.add_history({"actor": "device", "kind": "deploy_status", "device_id": "gh-03", "version": "1.1.0",
                            "result": "rolled_back", "detail": HALT})

    lines = cli_lines(hub, 80, "devices", "show", "gh-03")
    assert "firmware  MicroPython 1.29.0, .mpy 6.3, linux" in lines and "boot      5, reset cause soft" in lines
    assert not any("?" in line or "[GCC" in line for line in lines)
    assert all(len(line) <= 80 for line in lines)
    rolled = next(i for i, line in enumerate(lines) if line.endswith("rolled_back"))
    assert " ".join(line.strip() for line in lines[rolled + 1:rolled + 4]) == f"device: {HALT}"  # as history shows it
