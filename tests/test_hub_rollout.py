"""Whole rollouts on a real hub with simulated Pico Ws: canary failure halts, rollback, promotion, retries."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from conftest import cli_lines
from picoctl import config
from picoctl.sim.fleet import SimDevice
from waiting import wait_for

V1 = {"main.py": b"print('v1')\n", "lib/pump.py": b"PUMP = 1\n"}
V2 = {"main.py": b"print('v2')\n", "lib/pump.py": b"PUMP = 2\n" * 50}
CANARY_THEN_ALL = [{"name": "canary", "channel": "canary"}, {"name": "100%", "percent": 100}]


def configure(hub, **rollout: Any) -> None:
    for k, v in rollout.items():
        setattr(hub.cfg.rollout, k, v)
    config.save(hub.cfg, hub.site / "fleet.toml")
    hub.restart()


def fleet(hub, canary: list[str], stable: list[str], **behaviour: dict) -> dict[str, SimDevice]:
    hub.publish(hub.build_release("1.0.0", V1))
    hub.publish(hub.build_release("1.1.0", V2))
    out = {}
    for ids, channel in ((canary, "canary"), (stable, "stable")):
        for i in ids:
            out[i] = SimDevice(i, hub.register(i, channel=channel), files=dict(V1), **behaviour.get(i, {}))
    return out


def step_all(c: httpx.Client, devices: dict[str, SimDevice]) -> dict[str, str | None]:
    return {i: d.step(c) for i, d in devices.items()}


def offered(hub, device_id: str) -> list[dict]:
    return hub.client.history(device=device_id, kind="offer")


def test_canary_failure_halts_stable_never_offered_rollback_reoffers_the_old_release(hub) -> None:
    devs = fleet(hub, ["can-ok", "can-bad"], ["st-1", "st-2", "st-3"], **{"can-bad": {"fail_trial": True}})
    with httpx.Client(base_url=hub.url) as c:
        assert set(step_all(c, devs).values()) == {None}  # heartbeats report 1.0.0; nothing to do yet
        ro = hub.client.start_rollout("picow", "1.1.0", CANARY_THEN_ALL, 1, 0)
        assert ro["previous_version"] == "1.0.0" and ro["state"] == "active" and ro["stage"] == "canary"

        assert devs["can-ok"].step(c) == "committed"
        assert hub.client.rollout(ro["id"])["state"] == "active"
        assert devs["can-bad"].step(c) == "rolled_back"
        halted = hub.client.rollout(ro["id"])
        assert halted["state"] == "halted"
        assert "1 device(s) failed at stage canary" in halted["reason"]
        assert halted["counts"]["failed"] == 1 and halted["counts"]["committed"] == 1

        # halted: nobody gets anything new, even after promote is refused
        for _ in range(2):
            assert set(step_all(c, {k: v for k, v in devs.items() if k.startswith("st-")}).values()) == {None}
        r = httpx.post(f"{hub.url}/api/v1/rollouts/{ro['id']}/promote", json={},
                       headers=hub.auth)
        assert r.status_code == 409 and "halted" in r.json()["error"]

        back = hub.client.rollout_action(ro["id"], "rollback", "canary can-bad did not confirm")
        assert back["kind"] == "rollback" and back["version"] == "1.0.0" and back["state"] == "active"
        assert back["stages"][0]["ids"] == ["can-bad", "can-ok"]
        assert hub.client.rollout(ro["id"])["state"] == "rolled_back"

        seq_before = devs["can-ok"].seq
        assert devs["can-ok"].step(c) == "committed"
        assert devs["can-ok"].version == "1.0.0" and devs["can-ok"].seq > seq_before
        assert devs["can-ok"].files == V1
        assert devs["can-bad"].step(c) is None  # it swapped back by itself: already on 1.0.0
        assert hub.client.rollout(back["id"])["state"] == "completed"
        assert set(step_all(c, devs).values()) == {None}

    for i in ("st-1", "st-2", "st-3"):
        assert offered(hub, i) == [] and devs[i].version == "1.0.0" and devs[i].log == []
    kinds = [e["kind"] for e in hub.client.history(version="1.1.0")]
    assert "rollout_halted" in kinds and "rollout_rolled_back" in kinds
    halts = hub.client.history(kind="rollout_halted")
    assert halts[0]["actor"] == "hub" and "failed" in halts[0]["detail"]


def test_auto_promotion_through_stages_to_completion_and_late_registration(hub) -> None:
    devs = fleet(hub, ["can-1"], ["st-1", "st-2"])
    with httpx.Client(base_url=hub.url) as c:
        step_all(c, devs)
        ro = hub.client.start_rollout("picow", "1.1.0", CANARY_THEN_ALL, 1, 1)
        assert devs["st-1"].step(c) is None  # not in the canary stage
        assert devs["can-1"].step(c) == "committed"
        promoted = hub.client.rollout(ro["id"])
        assert promoted["stage"] == "100%" and promoted["state"] == "active"
        late = SimDevice("late-1", hub.register("late-1"), files=dict(V1))
        assert late.step(c) == "committed"  # registered after the start: in the current stage
        assert devs["st-1"].step(c) == "committed"
        assert hub.client.rollout(ro["id"])["state"] == "active"
        assert devs["st-2"].step(c) == "committed"
        done = hub.client.rollout(ro["id"])
        assert done["state"] == "completed" and done["counts"]["committed"] == 4
    seqs = [e["detail"] for e in hub.client.history(kind="rollout_promoted")]
    assert len(seqs) == 1


def test_transient_download_failure_is_offered_again_after_backoff_with_a_fresh_seq(hub) -> None:
    configure(hub, retry_backoff_s=1)
    devs = fleet(hub, ["can-1"], [], **{"can-1": {"transient_failures": 2}})
    d = devs["can-1"]
    with httpx.Client(base_url=hub.url) as c:
        d.step(c)
        ro = hub.client.start_rollout("picow", "1.1.0", CANARY_THEN_ALL, 1, 0)
        assert d.step(c) == "failed"
        first_seq = d.seq
        assert d.check(c) is None  # backoff: 1 s after the first failure
        time.sleep(1.1)
        assert d.step(c) == "failed"  # second drop: the backoff doubles
        time.sleep(1.1)
        assert d.check(c) is None
        time.sleep(1.0)
        assert d.step(c) == "committed"
        assert d.seq > first_seq + 1
        r = hub.client.rollout(ro["id"])
        assert r["state"] == "active" and r["counts"]["committed"] == 1 and r["counts"]["failed"] == 0
    results = [e["result"] for e in hub.client.history(device="can-1", kind="deploy_status")]
    assert results.count("failed (transient)") == 2


def test_a_transient_failure_is_shown_retrying_with_its_reason_and_when_and_told_to_the_board(hub) -> None:
    configure(hub, retry_backoff_s=600)
    d = fleet(hub, ["can-1"], [], **{"can-1": {"transient_failures": 1}})["can-1"]
    with httpx.Client(base_url=hub.url) as c:
        d.step(c)
        ro = hub.client.start_rollout("picow", "1.1.0", CANARY_THEN_ALL, 1, 0)
        assert d.step(c) == "failed"
        told = d.post(c, "/check", {"id": d.id, "counter": d.counter(), "type": d.type, "version": d.version,
                                    "seq": d.seq, "nonce": "0" * 32}, verify_mac=True)
    assert told["offer"] is None and 595 <= told["retry_s"] <= 600
    offer = hub.client.device("can-1")["offer"]
    assert offer["phase"] == "failed" and offer["detail"].startswith("lib/pump.py: link dropped")
    assert offer["transient"] is True and 0 < offer["retry_at"] - time.time() <= 600
    r = hub.client.rollout(ro["id"])
    assert r["state"] == "active" and r["counts"]["failed"] == 0 and r["counts"]["retrying"] == 1
    assert r["failures"] == [] and r["retrying"] == [{"device_id": "can-1", "detail": offer["detail"],
                                                     "retry_at": offer["retry_at"]}]
    shown = cli_lines(hub, 200, "rollout", "status", str(ro["id"]))
    assert any(re.fullmatch(r"retrying  can-1 failed: lib/pump\.py: link dropped .*\(retrying in [89]m\)", ln)
               for ln in shown), shown
    assert any(re.fullmatch(r"can-1 .* 1\.1\.0 retrying\s*", ln) for ln in cli_lines(hub, 200, "devices")), shown
    shown = cli_lines(hub, 200, "devices", "show", "can-1")
    assert any(re.fullmatch(r"offer     rollout 1 1\.1\.0 seq \d+: failed \(retrying in [89]m\) lib/pump\.py: .*", ln)
               for ln in shown), shown
    hub.client.rollout_action(ro["id"], "halt", "by hand")  # no retry to come: none is told
    offer = hub.client.device("can-1")["offer"]
    assert offer["transient"] is True and offer["retry_at"] is None
    assert hub.client.rollout(ro["id"])["retrying"] == [{"device_id": "can-1", "detail": offer["detail"], "retry_at": None}]
    with httpx.Client(base_url=hub.url) as c:
        told = d.post(c, "/check", {"id": d.id, "counter": d.counter(), "type": d.type, "version": d.version,
                                    "seq": d.seq, "nonce": "1" * 32}, verify_mac=True)
    assert told == {"id": "can-1", "nonce": "1" * 32, "offer": None}


def test_a_later_offer_refused_is_not_counted_against_the_offer_the_device_committed(hub) -> None:
    """A board reports an offer it refuses with its own seq, the last offer it ended (docs/protocol.md):
    that offer stays as it ended, and its rollout does not halt; the report is still in the history."""
    devs = fleet(hub, ["can-1", "can-2"], [])
    d = devs["can-1"]
    with httpx.Client(base_url=hub.url) as c:
        step_all(c, devs)
        ro = hub.client.start_rollout("picow", "1.1.0", CANARY_THEN_ALL, 1, 0)
        assert d.step(c) == "committed"
        d.status(c, {"seq": d.seq, "version": d.version}, "failed", d.version, "offer refused: bad MAC")
    r = hub.client.rollout(ro["id"])
    assert r["state"] == "active" and r["counts"]["committed"] == 1 and r["counts"]["failed"] == 0
    assert hub.client.device("can-1")["offer"]["phase"] == "committed"
    assert [e["detail"] for e in hub.client.history(device="can-1", kind="deploy_status")][-1] == "offer refused: bad MAC"


def test_a_device_silent_after_switching_counts_as_failure_and_halts(hub) -> None:
    configure(hub, trial_timeout_s=1)
    devs = fleet(hub, ["can-1"], [], **{"can-1": {"silent_after_switch": True}})
    with httpx.Client(base_url=hub.url) as c:
        devs["can-1"].step(c)
        ro = hub.client.start_rollout("picow", "1.1.0", CANARY_THEN_ALL, 1, 0)
        assert devs["can-1"].step(c) == "silent"
        assert hub.client.rollout(ro["id"])["state"] == "active"
        wait_for(lambda: hub.client.rollout(ro["id"])["state"] != "active", 5, "the rollout to end")
        halted = hub.client.rollout(ro["id"])
    assert halted["state"] == "halted" and halted["counts"]["failed"] == 1


def test_every_offer_has_a_fresh_seq_above_what_the_device_reports(hub) -> None:
    devs = fleet(hub, ["can-1"], [])
    d = devs["can-1"]
    d.seq = 41  # the board accepted offers from an earlier hub
    with httpx.Client(base_url=hub.url) as c:
        d.heartbeat(c)
        hub.client.start_rollout("picow", "1.1.0", CANARY_THEN_ALL, 1, 0)
        first = d.check(c)
        again = d.check(c)  # not accepted (lost reply): offered again, with a new seq
        assert first["seq"] == 42 and again["seq"] == 43
        assert [f["name"] for f in again["files"]] == ["lib/pump.py", "main.py"]
        assert again["version"] == "1.1.0" and len(again["release"]["signature"]) == 128 and "meta" not in again
        assert d.update(c, again) == "committed"


@pytest.mark.parametrize("body, status, message", [
    ({"target": "picow", "version": "9.9.9", "stages": CANARY_THEN_ALL}, 404, "not published"),
    ({"target": "picow", "version": "1.1.0", "stages": []}, 400, "non-empty list"),
    ({"target": "picow", "version": "1.1.0", "stages": [{"name": "x", "percent": 150}]}, 400, "percent"),
    ({"target": "picow", "version": "1.1.0", "stages": CANARY_THEN_ALL, "halt_after_failures": "1"}, 400,
     "halt_after_failures"),
    ({"target": "picow", "version": "1.1.0", "stages": CANARY_THEN_ALL, "halt_after_failures": -1}, 400, "0 or more"),
])
def test_bad_rollout_requests(hub, body: dict, status: int, message: str) -> None:
    hub.publish(hub.build_release("1.1.0", V2))
    r = httpx.post(f"{hub.url}/api/v1/rollouts", json=body, headers=hub.auth)
    assert r.status_code == status and message in r.json()["error"]
    assert hub.client.rollouts() == []


def test_one_active_rollout_per_target_and_actions_on_unknown_rollouts(hub) -> None:
    hub.publish(hub.build_release("1.1.0", V2))
    hub.client.start_rollout("picow", "1.1.0", CANARY_THEN_ALL, 1, 0)
    auth = hub.auth
    r = httpx.post(f"{hub.url}/api/v1/rollouts", json={"target": "picow", "version": "1.1.0",
                                                         "stages": CANARY_THEN_ALL}, headers=auth)
    assert r.status_code == 409 and "still active" in r.json()["error"]
    assert httpx.post(f"{hub.url}/api/v1/rollouts/99/halt", headers=auth).status_code == 404
    assert httpx.post(f"{hub.url}/api/v1/rollouts/1/explode", headers=auth).status_code == 404
    halted = hub.client.rollout_action(1, "halt", "by hand")
    assert halted["state"] == "halted" and halted["reason"] == "by hand"
    assert hub.client.rollout_action(1, "resume")["state"] == "active"


def test_resume_after_a_failure_halt_accepts_those_failures_and_halts_on_the_next(hub) -> None:
    devs = fleet(hub, ["can-1", "can-2", "can-3"], [], **{"can-1": {"fail_trial": True}, "can-3": {"fail_trial": True}})
    with httpx.Client(base_url=hub.url) as c:
        step_all(c, devs)
        ro = hub.client.start_rollout("picow", "1.1.0", CANARY_THEN_ALL, 1, 0)
        assert devs["can-1"].step(c) == "rolled_back"
        assert devs["can-2"].step(c) is None  # halted
        resumed = hub.client.rollout_action(ro["id"], "resume", "flaky board")
        assert resumed["state"] == "active" and resumed["halt_after_failures"] == 2
        assert devs["can-2"].step(c) == "committed"
        assert devs["can-3"].step(c) == "rolled_back"
        assert hub.client.rollout(ro["id"])["state"] == "halted"


def test_the_event_stream_carries_statuses_and_rollout_changes_in_commit_order(hub) -> None:
    import asyncio

    from picoctl.client import AsyncHubClient

    devs = fleet(hub, ["can-bad"], [], **{"can-bad": {"fail_trial": True}})

    async def scenario() -> list:
        seen: list = []
        async with AsyncHubClient(hub.url, hub.token) as client:
            async def follow() -> None:
                async for ev in client.events():
                    seen.append(ev)
                    if ev.event == "rollout" and ev.data["state"] == "halted":
                        return

            task = asyncio.create_task(follow())
            await asyncio.sleep(0.3)

            def drive() -> None:
                with httpx.Client(base_url=hub.url) as c:
                    devs["can-bad"].heartbeat(c)
                    hub.client.start_rollout("picow", "1.1.0", CANARY_THEN_ALL, 1, 0)
                    devs["can-bad"].step(c)

            await asyncio.to_thread(drive)
            await asyncio.wait_for(task, 10)
        return seen

    seen = asyncio.run(scenario())
    ids = [int(e.id) for e in seen]
    assert ids == sorted(ids)
    statuses = [e.data["phase"] for e in seen if e.event == "status"]
    assert statuses == ["offered", "downloading", "staged", "switching", "trial", "rolled_back"]
    rollouts = [e.data["state"] for e in seen if e.event == "rollout"]
    assert rollouts == ["active", "halted"]
    assert {"heartbeat", "history"} <= {e.event for e in seen}


def _rolled_back_while_one_downloads(hub, c: httpx.Client) -> tuple[dict[str, SimDevice], dict, dict, dict]:
    """gh-a committed 1.1.0 and gh-b still downloading it when the rollout is rolled back: the devices,
    the rollout, its rollback and gh-b's offer."""
    devs = fleet(hub, [], ["gh-a", "gh-b"])
    a, b = devs["gh-a"], devs["gh-b"]
    step_all(c, devs)
    ro = hub.client.start_rollout("picow", "1.1.0", [{"name": "all", "percent": 100}], 0, 0)
    assert a.step(c) == "committed"
    late = b.check(c)
    assert late is not None and late["version"] == "1.1.0"
    b.seq = late["seq"]
    b.status(c, late, "downloading", "1.0.0")
    back = hub.client.rollout_action(ro["id"], "rollback", "1.1.0 is bad")
    return devs, ro, back, late


def test_a_device_still_downloading_at_the_rollback_gets_the_rollback_once_it_commits(hub) -> None:
    with httpx.Client(base_url=hub.url) as c:
        devs, ro, back, late = _rolled_back_while_one_downloads(hub, c)
        a, b = devs["gh-a"], devs["gh-b"]
        assert back["stages"][0]["ids"] == ["gh-a"]  # gh-b had not taken it yet
        assert a.step(c) == "committed" and a.version == "1.0.0"
        assert hub.client.rollout(back["id"])["state"] == "completed"

        assert b.update(c, late) == "committed" and b.version == "1.1.0"  # the download in flight finishes
        assert b.step(c) == "committed" and b.version == "1.0.0"  # and the rollback reaches it
        done = hub.client.rollout(back["id"])
        assert done["state"] == "completed" and done["stages"][0]["ids"] == ["gh-a", "gh-b"]
        assert set(step_all(c, devs).values()) == {None}
    assert [e["result"] for e in hub.client.history(kind="rollout_extended")] == ["active"]


def test_a_finished_rollouts_figures_are_those_it_ended_with(hub) -> None:
    with httpx.Client(base_url=hub.url) as c:
        devs, ro, back, late = _rolled_back_while_one_downloads(hub, c)
        a, b = devs["gh-a"], devs["gh-b"]
        ended = hub.client.rollout(ro["id"])
        assert ended["state"] == "rolled_back"
        assert (ended["counts"]["eligible"], ended["counts"]["committed"], ended["counts"]["downloading"]) == (2, 1, 1)

        # afterwards its devices move on and a new one registers: none of it rewrites the record
        assert b.update(c, late) == "committed"
        assert a.step(c) == "committed" and b.step(c) == "committed"
        done = hub.client.rollout(back["id"])
        assert done["state"] == "completed" and done["counts"]["committed"] == 2
        SimDevice("gh-c", hub.register("gh-c"), files=dict(V1)).step(c)
        a.version = "0.9.0"
        a.heartbeat(c)
    after = {r["id"]: r for r in hub.client.rollouts()}
    assert after[ro["id"]]["counts"] == ended["counts"] and after[ro["id"]]["failures"] == ended["failures"]
    assert after[back["id"]]["counts"] == done["counts"]
    assert "figures" not in after[ro["id"]]
