"""`picoctl devices` as a person reads it: at 80 columns one aligned line a device, its last error
wrapped beneath it with every word; at 120 a short error stays on its line; `--json` is the hub's
answer as it was. Against a real hub, through the CLI as typed."""

from __future__ import annotations

import json
import re

import httpx

from conftest import Hub, cli_lines
from picoctl.sim.fleet import SimDevice

def crash(type_: str, message: str, line: int) -> dict[str, str | int]:
    """A crash record as the agent reports it (docs/protocol.md)."""
    return {"type": type_, "message": message, "boot": 3, "reset_cause": "soft",
            "traceback": f'Traceback (most recent call last):\n  File "app/main.py", line {line}\n'}


CRASH = crash("AttributeError", "module 'hardware' has no attribute 'pump_pwm'", 8)
SUMMARY = "AttributeError: module 'hardware' has no attribute 'pump_pwm' (app/main.py:8)"


def devices(hub: Hub, columns: int, *args: str) -> list[str]:
    return cli_lines(hub, columns, "devices", *args)


def fleet(hub: Hub, error: dict[str, str | int]) -> None:
    """gh-01 online and well, gh-03 online with `error` as its last one, gh-09 registered, never heard."""
    with httpx.Client(base_url=hub.url, timeout=10) as client:
        SimDevice("gh-01", hub.register("gh-01", "picow", "stable")).heartbeat(client)
        crashed = SimDevice("gh-03", hub.register("gh-03", "picow", "canary"), last_error=error)
        crashed.heartbeat(client)
    hub.register("gh-09", "picow", "stable")


def test_devices_fit_80_columns_with_the_error_beneath_and_cut_nothing(hub: Hub) -> None:
    fleet(hub, CRASH)
    lines = devices(hub, 80)
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert lines[0] == "3 devices"
    assert lines[1].split() == ["ID", "TYPE", "CHANNEL", "VERSION", "STATUS", "SEEN", "RSSI", "OFFER"]
    for line, row in ((lines[2], ["gh-01", "picow", "stable"]), (lines[3], ["gh-03", "picow", "canary"])):
        assert re.fullmatch(r"\S+ +picow +\w+ +1\.0\.0 +online +\d+s ago +-61", line) and line.split()[:3] == row
    under = []
    for line in lines[4:]:
        if not line.startswith("    "):
            break
        under.append(line.strip())
    assert len(under) == 2 and " ".join(under) == f"! {SUMMARY}"  # every word, wrapped
    assert lines[4 + len(under)].split() == ["gh-09", "picow", "stable", "-", "new", "never", "-"]
    assert len(lines) == 5 + len(under)
    status = lines[1].index("STATUS")  # aligned under the header
    assert [lines[i][status:].split()[0] for i in (2, 3, 4 + len(under))] == ["online", "online", "new"]


def test_devices_keep_a_short_error_on_its_line_at_120_columns(hub: Hub) -> None:
    fleet(hub, crash("MemoryError", "", 3))
    lines = devices(hub, 120)
    assert all(len(line) <= 120 for line in lines)
    assert lines[1].split() == ["ID", "TYPE", "CHANNEL", "VERSION", "STATUS", "SEEN", "RSSI", "OFFER", "ERROR"]
    assert lines[3].split()[-2:] == ["MemoryError", "(app/main.py:3)"]
    assert lines[3].index("MemoryError") == lines[1].index("ERROR")
    assert len(lines) == 5  # one line a device


def test_devices_json_is_the_hubs_answer(hub: Hub) -> None:
    fleet(hub, CRASH)
    listed = json.loads("\n".join(devices(hub, 80, "--json")))
    assert listed == hub.client.devices() and listed[1]["error_summary"] == SUMMARY


def test_what_the_hub_says_is_printed_never_obeyed() -> None:
    from picoctl.commands.devices import layout_devices

    hostile = {"id": "gh-01\x1b]2;owned\x07", "type": "picow", "channel": "stable", "version": "1.0\r\n", "rssi": None,
               "status": "online", "last_seen": None, "offer": None, "error_summary": "Error: \x1b[2Jgone\tnow"}
    out = layout_devices([hostile], 80)
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert out.splitlines()[2].split()[:3] == ["gh-01?]2;owned?", "picow", "stable"]
    assert out.splitlines()[-1] == "    ! Error: ?[2Jgone now"


def test_what_a_terminal_would_obey_beyond_ascii_is_printed_as_a_question_mark() -> None:
    """The same characters the TUI escapes (picoctl.drawable): a C1 CSI, a bidi override, a line separator."""
    from picoctl.commands.output import printable

    assert printable("gh\x9b2J\u202e01\u2028x\u00a0\u0301") == "gh?2J?01?x\u00a0\u0301"
