"""The TUI's data model and form checks: plain data in, plain data out, bad input refused or ignored."""

from __future__ import annotations

import pytest

from picoctl.config import FleetConfig
from picoctl.errors import BadInput
from picoctl.tui.format import age
from picoctl.hub.operator_api import device_status
from picoctl.tui.model import FleetModel, Link, thresholds_from
from picoctl.tui.widgets.canary_form import build_request

NOW = 1_800_000_000.0


def model() -> FleetModel:
    m = FleetModel(thresholds_from(FleetConfig()), lambda: NOW)
    m.load_devices([{"id": "gh-01", "type": "picow", "channel": "canary", "version": "1.0.0", "status": "online",
                     "last_seen": NOW - 10, "rssi": -60, "mem_free": 100000, "readings": {"moisture": 40.0},
                     "offer": None},
                    {"id": "gh-02", "type": "picow", "status": "new", "last_seen": None}])
    m.take_changes()
    return m


def test_heartbeat_updates_one_device_and_marks_only_it() -> None:
    m = model()
    m.apply("heartbeat", {"device_id": "gh-01", "at": NOW - 1, "version": "1.1.0", "rssi": -55, "mem_free": 90000,
                          "uptime_s": 5, "readings": {"moisture": 12.5, "pump": True}})
    changed, removed, events, topics = m.take_changes()
    d = m.devices["gh-01"]
    assert (changed, removed, events, topics) == ({"gh-01"}, set(), [], {"versions"})  # it runs a new version
    assert (d.version, d.rssi, d.reading("moisture"), d.last_seen) == ("1.1.0", -55, 12.5, NOW - 1)
    m.apply("heartbeat", {"device_id": "gh-01", "at": NOW - 0.5, "version": "1.1.0", "rssi": -54})
    assert m.take_changes() == ({"gh-01"}, set(), [], set())  # the same version: only its row
    assert not d.heartbeats  # history is kept only for a device whose detail was loaded
    m.load_device_detail({"id": "gh-01", "heartbeats": [{"at": NOW - 5, "rssi": -50}], "events": []})
    m.apply("heartbeat", {"device_id": "gh-01", "at": NOW, "rssi": -52})
    assert [h.rssi for h in d.heartbeats] == [-50, -52]


def test_liveness_moves_with_the_clock() -> None:
    m = model()
    d = m.devices["gh-01"]
    assert m.liveness(d, NOW) == "online"
    assert m.liveness(d, NOW + 200) == "stale"  # picow: 60 s heartbeats, stale after 180 s
    assert m.liveness(d, NOW + 600) == "offline"
    assert m.liveness(m.devices["gh-02"], NOW) == "new"
    assert (age(None), age(4.9), age(61), age(7200), age(3 * 86400)) == ("-", "4s", "1m", "2h", "3d")


def test_liveness_is_the_hubs_rule_at_every_age() -> None:
    cfg = FleetConfig()
    m = FleetModel(thresholds_from(cfg), lambda: NOW)
    for quiet in (0, 179.5, 180, 180.5, 599.9, 600, 600.1, 5000):
        row = {"id": "gh-01", "type": "picow", "last_seen": NOW - quiet}
        m.load_devices([row])
        assert m.liveness(m.devices["gh-01"]) == device_status(cfg, row, NOW), quiet


def test_while_the_hub_is_unreachable_liveness_holds_at_the_last_contact() -> None:
    m = model()
    d = m.devices["gh-01"]
    m.link = Link("down", "connection refused", since=NOW)
    assert m.liveness(d, NOW + 600) == "online"  # its silence since says nothing about the board
    m.link = Link("live")
    assert m.liveness(d, NOW + 600) == "offline"


@pytest.mark.parametrize("kind, data", [
    ("heartbeat", {"device_id": "nobody", "at": NOW}),  # unknown device
    ("heartbeat", ["not", "an", "object"]),
    ("device", {"channel": "canary"}),  # no id
    ("rollout", {"state": "active"}),  # no id
    ("release", {"target": "picow"}),  # no version
    ("mystery", {"id": "gh-01"}),
])
def test_malformed_or_unknown_events_change_nothing(kind: str, data: object) -> None:
    m = model()
    before = {k: (d.version, d.channel, d.last_seen) for k, d in m.devices.items()}
    m.apply(kind, data)
    assert m.take_changes() == (set(), set(), [], set())
    assert {k: (d.version, d.channel, d.last_seen) for k, d in m.devices.items()} == before


def test_status_event_moves_the_offer_phase_and_history_appends_in_order() -> None:
    m = model()
    m.apply("status", {"device_id": "gh-01", "rollout_id": 3, "version": "1.1.0", "seq": 5, "phase": "trial"})
    assert (m.devices["gh-01"].offer.phase, m.devices["gh-01"].offer.seq) == ("trial", 5)
    m.apply("history", {"id": 7, "at": NOW, "actor": "hub", "kind": "deploy_status", "device_id": "gh-01"})
    m.apply("history", {"id": 6, "at": NOW, "actor": "hub", "kind": "late"})  # older than the newest: dropped
    assert [e.id for e in m.events] == [7]


def test_a_transient_failure_is_retrying_not_failed_with_its_reason_and_when_the_hub_says() -> None:
    m = model()
    m.apply("status", {"device_id": "gh-01", "rollout_id": 3, "version": "1.1.0", "seq": 5, "phase": "failed",
                       "transient": True, "detail": "out of memory while staging data.bin (try 1 of 3, retrying)"})
    offer = m.devices["gh-01"].offer
    assert (offer.shown_phase, offer.failed, offer.retry_at) == ("retrying", False, None)
    assert offer.detail == "out of memory while staging data.bin (try 1 of 3, retrying)"
    m.load_devices([{"id": "gh-01", "type": "picow", "status": "online", "last_seen": NOW,
                     "offer": {"rollout_id": 3, "version": "1.1.0", "seq": 5, "phase": "failed", "detail": "x",
                               "transient": True, "retry_at": NOW + 60}}])
    assert (m.devices["gh-01"].offer.shown_phase, m.devices["gh-01"].offer.retry_at) == ("retrying", NOW + 60)
    m.apply("status", {"device_id": "gh-01", "rollout_id": 3, "version": "1.1.0", "seq": 6, "phase": "failed",
                       "transient": False, "detail": "flash full"})
    assert (m.devices["gh-01"].offer.shown_phase, m.devices["gh-01"].offer.failed) == ("failed", True)


def test_event_filter_words_and_fields() -> None:
    m = model()
    m.apply("history", {"id": 1, "at": NOW, "actor": "tui", "kind": "pi_deploy", "version": "2.4.0", "result": "ok"})
    e = m.events[0]
    assert e.matches("kind:pi_") and e.matches("2.4") and not e.matches("device:gh-01") and e.matches("")


def test_canary_form_builds_the_cli_stages() -> None:
    req = build_request("picow/1.1.0", "ids", "gh-01, gh-02", "canary,50%,100%", "1", "2")
    assert (req.target, req.version, req.halt_after_failures, req.promote_after_successes) == ("picow", "1.1.0", 1, 2)
    assert req.stages[0] == {"name": "canary", "ids": ["gh-01", "gh-02"], "device_type": None, "percent": None,
                             "channel": None}
    assert build_request("picow/1.1.0", "channel", "", "", "0", "0").stages[0]["channel"] == "canary"
    assert build_request("picow/1.1.0", "percent", "5%", "canary,100%", "0", "0").stages[0]["percent"] == 5.0


@pytest.mark.parametrize("args, message", [
    ((None, "channel", "", "", "1", "0"), "release: pick a published release"),
    (("picow/1.1.0", "ids", "gh-01,,x", "", "1", "0"), "comma-separated device ids"),
    (("picow/1.1.0", "ids", "bad id!", "", "1", "0"), "device id 'bad id!'"),
    (("picow/1.1.0", "type", "", "", "1", "0"), "expected a device type"),
    (("picow/1.1.0", "percent", "lots", "", "1", "0"), "expected a percentage"),
    (("picow/1.1.0", "percent", "150", "", "1", "0"), "at most 100"),
    (("picow/1.1.0", "channel", "", "10%,5%", "1", "0"), "does not grow"),
    (("picow/1.1.0", "channel", "", "", "-1", "0"), "halt after failures"),
    (("picow/1.1.0", "channel", "", "", "1", "two"), "promote after successes"),
])
def test_canary_form_refuses_bad_input_in_one_line(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace("!", "!")) as info:
        build_request(*args)
    assert "\n" not in str(info.value)


def test_picoctl_without_a_command_needs_a_config_and_a_token(tmp_path) -> None:
    import subprocess
    import sys

    from picoctl.commands.init import init_site

    missing = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(tmp_path / "none.toml")],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and missing.stderr.count("\n") == 1
    cfg = init_site(tmp_path / "site")
    (tmp_path / "site" / "operator.token").unlink()
    no_token = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(cfg)], capture_output=True, text=True,
                              timeout=30)
    assert no_token.returncode == 2 and "cannot read operator token" in no_token.stderr


def test_promote_names_the_devices_the_next_stage_adds() -> None:
    from picoctl.tui.model import Rollout
    from picoctl.tui.screens.releases import joining

    m = FleetModel(thresholds_from(FleetConfig()), lambda: NOW)
    m.load_devices([{"id": f"d{i}", "type": "picow", "channel": "canary" if i < 2 else "stable", "version": "1.0.0"}
                    for i in range(10)] + [{"id": "p1", "type": "pico", "version": "1.0.0"}])
    stages = [{"name": "canary", "channel": "canary"}, {"name": "100%", "percent": 100.0}]
    r = Rollout(1, "picow", "1.1.0", "active", "1.0.0", stages=stages)
    assert joining(r, m.devices.values()) == 8  # the stable picows; the canaries are in already, the pico never
    r.stage_index = 1
    assert joining(r, m.devices.values()) == 0  # the last stage: nothing comes next


def test_summary_counts_versions_of_devices_that_reported_one() -> None:
    m = model()
    assert m.summary().splitlines() == ["2 devices  ● 1 online  ◐ 0 stale  ○ 0 offline  · 1 new",
                                        "versions picow 1.0.0×1"]
    m.load_devices([{"id": "gh-02", "type": "picow", "status": "new", "last_seen": None}])
    assert m.summary().splitlines()[1] == "versions none reported yet"


def test_summary_names_versions_per_device_type() -> None:
    m = model()
    fleet = [{"id": f"w{i}", "type": "picow", "version": "1.1.0" if i < 2 else "1.0.0"} for i in range(5)]
    fleet.append({"id": "p1", "type": "pico", "version": "1.0.0"})
    m.load_devices(fleet)
    assert m.summary().splitlines()[1] == "versions picow 1.0.0×3 1.1.0×2  pico 1.0.0×1"
    m.load_devices(fleet + [{"id": f"t{i}", "type": t, "version": "9.0.0"} for i, t in enumerate(["esp32", "esp32", "x"])])
    assert m.summary().splitlines()[1] == "versions picow 1.0.0×3 1.1.0×2  esp32 9.0.0×2  pico 1.0.0×1 …"


OTHER_SHAPES = [("rollout", {"id": "x"}), ("rollout", {"id": 1, "failures": 5}), ("rollout", {"id": [1]}),
                ("rollout", {"id": 1e400}), ("rollout", {"id": 1, "stage_index": float("nan")}),
                ("history", {"id": "x"}), ("history", {"id": float("nan")}), ("history", {"id": 1, "at": "x"}),
                ("heartbeat", {"device_id": "gh-01", "rssi": 1e400}), ("heartbeat", {"device_id": "gh-01", "at": "x"}),
                ("heartbeat", {"device_id": "gh-01", "uptime_s": float("inf"), "readings": [1]}),
                ("device", {"id": "gh-01", "boots": 1, "last_error": {"type": 5}, "firmware": {"mpy": "x"}}),
                ("device", {"id": {"a": 1}, "type": 5}), ("status", {"device_id": "gh-01", "phase": "trial", "seq": "x"}),
                ("release", {"version": 5}), ("device_removed", {"id": ["x"]}), ("heartbeat", "not an object"),
                ("heartbeat", None), ("heartbeat", [1, 2])]


@pytest.mark.parametrize("kind,data", OTHER_SHAPES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(OTHER_SHAPES)])
def test_an_event_of_another_shape_is_skipped_and_the_next_one_is_applied(kind: str, data: object) -> None:
    m = model()
    m.apply(kind, data)
    m.summary()
    m.apply("heartbeat", {"device_id": "gh-01", "at": NOW, "rssi": -42})
    assert m.devices["gh-01"].rssi == -42
    assert all(isinstance(r.id, int) for r in m.rollouts.values())
