"""Staged-rollout policy: cohorts, stable hashing, stage specs, offers, counts, thresholds, rollback."""

from __future__ import annotations

import dataclasses

import pytest

from picoctl import rollout as ro
from picoctl.errors import BadInput
from picoctl.rollout import Cohort, Counts, DeviceInfo, OfferRecord, RolloutInfo, Stage

NOW = 1_000_000.0
BACKOFF = 60.0
TRIAL = 900.0


def dev(i: str, *, type: str = "picow", channel: str = "stable", version: str | None = "1.0.0",
        seq: int = 1, last_seen: float | None = NOW) -> DeviceInfo:
    return DeviceInfo(id=i, type=type, channel=channel, version=version, seq=seq, last_seen=last_seen)


def rollout(id: int = 1, *, version: str = "1.1.0", state: str = "active", stage_index: int = 0,
            stages: list[Stage] | None = None, halt: int = 1, promote: int = 0, kind: str = "update",
            target: str = "picow") -> RolloutInfo:
    return RolloutInfo(id=id, target=target, version=version, previous_version="1.0.0", state=state, kind=kind,
                       stage_index=stage_index, stages=tuple(stages or ro.parse_stages(None)),
                       halt_after_failures=halt, promote_after_successes=promote, created_at=NOW - 1000)


def rec(device_id: str, phase: str, *, rollout_id: int = 1, attempts: int = 1, transient: bool = False,
        updated_at: float = NOW, version: str = "1.1.0") -> OfferRecord:
    return OfferRecord(device_id=device_id, rollout_id=rollout_id, version=version, seq=rollout_id + 1,
                       phase=phase, attempts=attempts, transient=transient, updated_at=updated_at)


def ids_under(percent: float, n: int = 10_000) -> list[str]:
    return [f"d{i}" for i in range(n) if ro.bucket(f"d{i}") < percent]


# --- cohorts and hashing -------------------------------------------------------------------------

def test_cohort_constraints_all_must_hold_and_empty_means_everyone() -> None:
    assert Cohort().contains(dev("x"))
    assert Cohort(ids=("a", "b")).contains(dev("a")) and not Cohort(ids=("a",)).contains(dev("b"))
    assert Cohort(device_type="pico").contains(dev("a", type="pico"))
    assert not Cohort(device_type="pico").contains(dev("a"))
    assert Cohort(channel="canary").contains(dev("a", channel="canary"))
    assert not Cohort(channel="canary").contains(dev("a"))
    assert not Cohort(ids=("a",), channel="canary").contains(dev("a"))  # ids match, channel does not
    low, high = ids_under(5, 200)[0], next(f"d{i}" for i in range(200) if ro.bucket(f"d{i}") >= 50)
    assert Cohort(percent=5).contains(dev(low)) and not Cohort(percent=50).contains(dev(high))
    assert all(Cohort(percent=100).contains(dev(f"d{i}")) for i in range(1000))


def test_cohort_id_set_is_cached_and_ids_compare_by_value() -> None:
    c = Cohort(ids=["a", "b"])  # a list given is kept as a tuple, so the cohort stays hashable
    assert c.ids == ("a", "b") and c._id_set == frozenset({"a", "b"})
    assert c == Cohort(ids=("a", "b")) and hash(c) == hash(Cohort(ids=("a", "b")))


def test_bucket_is_stable_and_in_range() -> None:
    assert ro.bucket("gh-01") == ro.bucket("gh-01")
    ro.bucket.cache_clear()
    assert ro.bucket("gh-01") == pytest.approx(97.32009458036201)  # fixed by sha256, not by the process
    assert all(0 <= ro.bucket(f"dev-{i}") < 100 for i in range(2000))


@pytest.mark.parametrize("percent", [1, 10, 50, 90])
def test_bucket_spreads_ids_evenly(percent: float) -> None:
    share = 100 * len(ids_under(percent)) / 10_000
    assert abs(share - percent) <= 1.5


def test_stage_growth_is_monotonic() -> None:
    stages = ro.parse_stages("canary,10%,50%,100%", canary_ids=["c1", "c2"])
    devices = [dev(f"d{i}") for i in range(3000)] + [dev("c1"), dev("c2")]
    previous: set[str] = set()
    sizes = []
    for i in range(len(stages)):
        now_in = {d.id for d in devices if ro.eligible(rollout(stages=stages, stage_index=i), d)}
        assert previous <= now_in
        previous = now_in
        sizes.append(len(now_in))
    assert sizes[0] == 2 and sizes[0] < sizes[1] < sizes[2] < sizes[3] == len(devices)
    assert abs(sizes[1] - 2 - 300) < 60 and abs(sizes[2] - 1500) < 100


def test_eligible_needs_the_target_type() -> None:
    r = rollout(stages=ro.parse_stages("100%"))
    assert ro.eligible(r, dev("a")) and not ro.eligible(r, dev("a", type="pico"))


# --- stage specs ---------------------------------------------------------------------------------

def test_parse_stages_default_and_canary_choices() -> None:
    assert [s.name for s in ro.parse_stages(None)] == ["canary", "10%", "50%", "100%"]
    assert ro.parse_stages(None)[0].cohort == Cohort(channel="canary")
    assert ro.parse_stages("canary,100%", canary_ids=["a", "b", "a"])[0].cohort == Cohort(ids=("a", "b"))
    assert ro.parse_stages("canary,100%", device_type="picow")[0].cohort == Cohort(device_type="picow")
    assert ro.parse_stages("canary,100%", percent=2.5)[0].cohort == Cohort(percent=2.5)
    # ids win over the device type, which wins over the percent
    assert ro.parse_stages("canary", canary_ids=["a"], device_type="picow", percent=5)[0].cohort == Cohort(ids=("a",))
    assert ro.parse_stages("canary", device_type="picow", percent=5)[0].cohort == Cohort(device_type="picow")
    assert [s.cohort.percent for s in ro.parse_stages(" 5% , 12.5%,100% ")] == [5, 12.5, 100]


@pytest.mark.parametrize("spec, kw, message", [
    ("", {}, "comma-separated"),
    ("canary,,100%", {}, "comma-separated"),
    ("canary,", {}, "comma-separated"),
    ("canary,ten", {}, "unknown stage 'ten'"),
    ("10%,canary", {}, "canary can only be the first stage"),
    ("canary,canary", {}, "canary can only be the first stage"),
    ("canary,0%", {}, "above 0 and at most 100"),
    ("canary,150%", {}, "above 0 and at most 100"),
    ("canary,-5%", {}, "unknown stage"),
    ("canary,50%,10%", {}, "does not grow"),
    ("10%,10%", {}, "does not grow"),
    ("canary,10%", {"percent": 20}, "does not grow past the previous stage's 20%"),
    ("10%,100%", {"canary_ids": ["a"]}, "no canary stage"),
    ("100%", {"device_type": "picow"}, "no canary stage"),
    ("canary", {"canary_ids": ["bad id"]}, "device id 'bad id'"),
    ("canary", {"canary_ids": [""]}, "device id ''"),
    ("canary", {"percent": 0}, "canary percent"),
    ("canary", {"percent": float("nan")}, "canary percent"),
])
def test_parse_stages_rejects_bad_specs(spec: str, kw: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message.replace("(", r"\(")) as exc:
        ro.parse_stages(spec, **kw)
    assert "\n" not in str(exc.value)


def test_stage_wire_round_trip() -> None:
    stages = ro.parse_stages("canary,10%,100%", canary_ids=["a", "b"])
    wire = [s.to_dict() for s in stages]
    assert wire[0] == {"name": "canary", "ids": ["a", "b"], "device_type": None, "percent": None, "channel": None}
    assert ro.stages_from_dicts(wire) == tuple(stages)
    assert Stage.from_dict({"name": "all"}) == Stage("all", Cohort())


@pytest.mark.parametrize("data, message", [
    ([], "non-empty list"),
    ("canary", "non-empty list"),
    ([5], "expected an object"),
    ([{"name": ""}], "stage name"),
    ([{"name": "x", "ids": "a,b"}], "ids: expected a list"),
    ([{"name": "x", "ids": ["a b"]}], "device id"),
    ([{"name": "x", "percent": 0}], "percent"),
    ([{"name": "x", "percent": True}], "percent"),
    ([{"name": "x", "percent": "10"}], "percent"),
    ([{"name": "x", "channel": 3}], "channel"),
    ([{"name": "x", "device_type": ""}], "device_type"),
    ([{"name": "x", "colour": "red"}], "unknown field 'colour'"),
    ([{"name": "x"}, {"name": "x"}], "appears twice"),
])
def test_stages_from_dicts_rejects_bad_wire_data(data: object, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        ro.stages_from_dicts(data)


def test_rollout_info_checks_its_state_kind_and_stage_index() -> None:
    r = rollout(stages=ro.parse_stages("canary,100%"), stage_index=1)
    assert r.stage.name == "100%" and r.last_stage and not dataclasses.replace(r, stage_index=0).last_stage
    with pytest.raises(ValueError, match="stage_index 2 outside its 2 stage"):
        dataclasses.replace(r, stage_index=2)
    with pytest.raises(ValueError, match="state 'paused'"):
        dataclasses.replace(r, state="paused")
    with pytest.raises(ValueError, match="kind 'hotfix'"):
        dataclasses.replace(r, kind="hotfix")


# --- choose_offer ----------------------------------------------------------------------------------

def test_offer_only_inside_the_cohort_and_not_when_already_on_the_version() -> None:
    r = rollout(stages=ro.parse_stages("canary,100%", canary_ids=["c1"]))
    assert ro.choose_offer(dev("c1"), [r], {}, NOW, BACKOFF) == r
    assert ro.choose_offer(dev("other"), [r], {}, NOW, BACKOFF) is None
    assert ro.choose_offer(dev("c1", version="1.1.0"), [r], {}, NOW, BACKOFF) is None
    assert ro.choose_offer(dev("c1", type="pico"), [r], {}, NOW, BACKOFF) is None
    promoted = dataclasses.replace(r, stage_index=1)
    assert ro.choose_offer(dev("other"), [promoted], {}, NOW, BACKOFF) == promoted


def test_devices_outside_the_cohort_never_see_the_release() -> None:
    stages = ro.parse_stages("canary,10%,100%", canary_ids=["d7"])
    fleet = [dev(f"d{i}", type="pico" if i % 5 == 0 else "picow") for i in range(2000)]
    for i in range(len(stages)):
        r = rollout(stages=stages, stage_index=i)
        offered = {d.id for d in fleet if ro.choose_offer(d, [r], {}, NOW, BACKOFF)}
        expected = {d.id for d in fleet
                    if d.type == "picow" and (d.id == "d7" or i >= 1 and ro.bucket(d.id) < 10 or i == 2)}
        assert offered == expected


def test_device_registering_after_start_joins_the_current_stage() -> None:
    r = rollout(stages=ro.parse_stages("canary,50%,100%"), stage_index=1)
    late_in, late_out = ids_under(50, 100)[0], next(f"d{i}" for i in range(100) if ro.bucket(f"d{i}") >= 50)
    assert ro.choose_offer(dev(late_in), [r], {}, NOW, BACKOFF) == r
    assert ro.choose_offer(dev(late_out), [r], {}, NOW, BACKOFF) is None
    assert ro.choose_offer(dev("late-canary", channel="canary"), [r], {}, NOW, BACKOFF) == r


@pytest.mark.parametrize("phase, offered", [
    ("offered", True), ("checking", True), ("downloading", True), ("staged", True),  # resumed
    ("switching", False), ("trial", False), ("committed", False), ("rolled_back", False), ("failed", False),
])
def test_offer_by_record_phase(phase: str, offered: bool) -> None:
    r = rollout(stages=ro.parse_stages("100%"))
    assert (ro.choose_offer(dev("a"), [r], {1: rec("a", phase)}, NOW, BACKOFF) == r) is offered


@pytest.mark.parametrize("attempts, wait", [(1, 60), (2, 120), (3, 240), (5, 960), (40, 60 * 1024)])
def test_transient_failure_is_offered_again_after_exponential_backoff(attempts: int, wait: float) -> None:
    r = rollout(stages=ro.parse_stages("100%"))
    failed = rec("a", "failed", transient=True, attempts=attempts, updated_at=NOW)
    assert ro.retry_at(failed, BACKOFF) == NOW + wait
    assert ro.choose_offer(dev("a"), [r], {1: failed}, NOW + wait - 0.5, BACKOFF) is None
    assert ro.choose_offer(dev("a"), [r], {1: failed}, NOW + wait, BACKOFF) == r


def test_a_pending_retry_is_told_until_it_is_offered_and_only_while_the_rollout_would_offer_it() -> None:
    r = rollout(stages=ro.parse_stages("100%"))
    failed = {1: rec("a", "failed", transient=True, attempts=2, updated_at=NOW)}
    assert ro.retry_pending(dev("a"), [r], failed, NOW + 119, BACKOFF) == NOW + 120
    assert ro.retry_pending(dev("a"), [r], failed, NOW + 120, BACKOFF) is None  # offered now instead
    halted = dataclasses.replace(r, state="halted")
    assert ro.retry_pending(dev("a"), [halted], failed, NOW, BACKOFF) is None
    assert ro.retry_pending(dev("a", version="1.1.0"), [r], failed, NOW, BACKOFF) is None
    assert ro.retry_pending(dev("a"), [r], {1: rec("a", "failed", updated_at=NOW)}, NOW, BACKOFF) is None
    assert ro.retry_pending(dev("a"), [r], {}, NOW, BACKOFF) is None
    newer = rollout(2, version="1.2.0", stages=ro.parse_stages("100%"))
    assert ro.retry_pending(dev("a"), [r, newer], failed, NOW, BACKOFF) is None  # the newer one decides


def test_halted_rollout_offers_nothing_new_and_holds_back_older_ones() -> None:
    stages = ro.parse_stages("100%")
    old = rollout(1, version="1.1.0", stages=stages)
    halted = rollout(2, version="1.2.0", stages=stages, state="halted")
    assert ro.choose_offer(dev("a"), [halted], {}, NOW, BACKOFF) is None
    assert ro.choose_offer(dev("a"), [halted], {2: rec("a", "downloading", rollout_id=2)}, NOW, BACKOFF) is None
    # a device the halted rollout never reached still gets the older active one
    assert ro.choose_offer(dev("a"), [old, halted], {}, NOW, BACKOFF) == old
    # one that took part in the halted rollout is not sent back to the older release
    assert ro.choose_offer(dev("a", version="1.2.0"), [old, halted], {2: rec("a", "committed", rollout_id=2)},
                           NOW, BACKOFF) is None
    resumed = dataclasses.replace(halted, state="active")
    in_progress = {2: rec("a", "downloading", rollout_id=2)}
    assert ro.choose_offer(dev("a"), [old, resumed], in_progress, NOW, BACKOFF) == resumed


def test_newer_rollout_wins() -> None:
    stages = ro.parse_stages("100%")
    old, new = rollout(1, version="1.1.0", stages=stages), rollout(2, version="1.2.0", stages=stages)
    for order in ([old, new], [new, old]):
        assert ro.choose_offer(dev("a"), order, {}, NOW, BACKOFF) == new
        assert ro.choose_offer(dev("a"), order, {1: rec("a", "committed")}, NOW, BACKOFF) == new
    # not eligible for the newer one (still canary only): the older one still serves it
    canary_only = rollout(2, version="1.2.0", stages=ro.parse_stages("canary,100%"))
    assert ro.choose_offer(dev("a"), [old, canary_only], {}, NOW, BACKOFF) == old
    assert ro.choose_offer(dev("a", channel="canary"), [old, canary_only], {}, NOW, BACKOFF) == canary_only
    # rollouts of another target are ignored
    pico = rollout(3, version="9.0.0", stages=stages, target="pico")
    assert ro.choose_offer(dev("a"), [old, pico], {}, NOW, BACKOFF) == old


def test_rollback_rollout_reaches_only_the_devices_that_took_the_release() -> None:
    bad_records = [rec("a", "committed"), rec("b", "trial"), rec("c", "downloading"), rec("d", "rolled_back")]
    bad = rollout(1, version="1.1.0", stages=ro.parse_stages("100%"), state="rolled_back")
    back = rollout(2, version="1.0.0", kind="rollback", stages=list(ro.rollback_stages(bad_records)))
    assert ro.choose_offer(dev("a", version="1.1.0"), [bad, back], {1: bad_records[0]}, NOW, BACKOFF) == back
    assert ro.choose_offer(dev("b", version="1.1.0"), [bad, back], {1: bad_records[1]}, NOW, BACKOFF) == back
    assert ro.choose_offer(dev("c"), [bad, back], {1: bad_records[2]}, NOW, BACKOFF) is None
    assert ro.choose_offer(dev("d"), [bad, back], {1: bad_records[3]}, NOW, BACKOFF) is None  # already on 1.0.0
    assert ro.choose_offer(dev("e", version="1.1.0"), [bad, back], {}, NOW, BACKOFF) is None


def test_rollback_cohort() -> None:
    records = [rec("z", "committed"), rec("a", "switching"), rec("m", "trial"), rec("q", "rolled_back"),
               rec("x", "downloading"), rec("y", "failed"), rec("w", "offered"), rec("a", "trial", rollout_id=2)]
    assert ro.rollback_cohort(records) == ("a", "m", "q", "z")
    with pytest.raises(BadInput, match="nothing to roll back"):
        ro.rollback_stages([rec("x", "downloading")])


# --- count and evaluate ------------------------------------------------------------------------------

def test_count_phases_and_silent_devices_after_trial_timeout() -> None:
    r = rollout(stages=ro.parse_stages("100%"))
    quiet = NOW - TRIAL - 1
    devices = [dev("off"), dev("dl"), dev("st"), dev("sw"), dev("tr"), dev("ok"), dev("fail"), dev("retry"),
               dev("rb"), dev("gone", last_seen=quiet), dev("gone2", last_seen=None), dev("hb", last_seen=NOW),
               dev("have", version="1.1.0"), dev("waiting")]
    records = [rec("off", "offered"), rec("dl", "downloading"), rec("st", "staged"), rec("sw", "switching"),
               rec("tr", "trial"), rec("ok", "committed"), rec("fail", "failed"),
               rec("retry", "failed", transient=True), rec("rb", "rolled_back"),
               rec("gone", "trial", updated_at=quiet), rec("gone2", "switching", updated_at=quiet),
               rec("hb", "trial", updated_at=quiet),  # heartbeats keep it alive
               rec("dl", "committed", rollout_id=9), rec("unknown-device", "failed")]
    c = ro.count(r, devices, records, NOW, TRIAL)
    assert c == Counts(eligible=14, offered=12, downloading=3, trial=2, committed=1, failed=4, retrying=1,
                       current=1, stage_devices=14, stage_committed=1)
    # a download that stalls is not a failure; only silence after switching is
    assert ro.count(r, [dev("dl")], [rec("dl", "downloading", updated_at=0)], NOW, TRIAL).failed == 0


def test_count_covers_the_current_stage_and_devices_with_a_record() -> None:
    stages = ro.parse_stages("canary,100%")
    r = rollout(stages=stages)
    devices = [dev("c", channel="canary"), dev("s1"), dev("s2"), dev("moved")]
    # "moved" left the canary channel after it was offered: its record still counts
    c = ro.count(r, devices, [rec("c", "committed"), rec("moved", "rolled_back")], NOW, TRIAL)
    assert (c.eligible, c.committed, c.failed, c.stage_devices, c.stage_committed) == (2, 1, 1, 1, 1)
    c = ro.count(dataclasses.replace(r, stage_index=1), devices, [rec("c", "committed")], NOW, TRIAL)
    assert (c.eligible, c.committed, c.stage_devices, c.stage_committed) == (4, 1, 3, 0)


def test_evaluate_halts_at_the_failure_threshold() -> None:
    r = rollout(halt=2, promote=1, stages=ro.parse_stages("canary,100%"))
    assert ro.evaluate(r, Counts(5, 5, 0, 0, 4, 1, stage_devices=5, stage_committed=4)).action == "promote"
    d = ro.evaluate(r, Counts(5, 5, 0, 0, 3, 2, stage_devices=5, stage_committed=3))
    assert d.action == "halt" and "2 device(s) failed at stage canary" in d.reason
    assert ro.evaluate(dataclasses.replace(r, halt_after_failures=0), Counts(5, 5, 0, 0, 0, 5)).action == "none"
    assert ro.evaluate(dataclasses.replace(r, state="halted"), Counts(5, 5, 0, 0, 0, 5)).action == "none"


def test_evaluate_promotes_on_successes_in_the_current_stage_only() -> None:
    r = rollout(halt=3, promote=3, stages=ro.parse_stages("canary,10%,100%"))
    assert ro.evaluate(r, Counts(9, 9, 6, 0, 2, 0, stage_devices=9, stage_committed=2)).action == "none"
    assert ro.evaluate(r, Counts(9, 9, 6, 0, 3, 0, stage_devices=9, stage_committed=3)).action == "promote"
    # at 10%, the canary's earlier successes do not count again
    at10 = dataclasses.replace(r, stage_index=1)
    assert ro.evaluate(at10, Counts(40, 9, 0, 0, 9, 0, stage_devices=31, stage_committed=0)).action == "none"
    # a stage that added fewer devices than the threshold promotes once all of them committed
    assert ro.evaluate(at10, Counts(11, 11, 0, 0, 11, 0, stage_devices=2, stage_committed=2)).action == "promote"
    # a stage without devices waits for a person
    assert ro.evaluate(at10, Counts(9, 9, 0, 0, 9, 0, stage_devices=0, stage_committed=0)).action == "none"
    assert ro.evaluate(dataclasses.replace(r, promote_after_successes=0),
                       Counts(9, 9, 0, 0, 9, 0, stage_devices=9, stage_committed=9)).action == "none"


def test_evaluate_completes_when_the_last_stage_has_every_device() -> None:
    r = rollout(halt=1, promote=1, stages=ro.parse_stages("canary,100%"), stage_index=1)
    assert ro.evaluate(r, Counts(10, 10, 1, 0, 9, 0, stage_devices=5, stage_committed=5)).action == "none"
    d = ro.evaluate(r, Counts(10, 9, 0, 0, 9, 0, current=1, stage_devices=5, stage_committed=5))
    assert d.action == "complete" and "all 10 device(s) run 1.1.0" in d.reason
    assert ro.evaluate(r, Counts(0, 0, 0, 0, 0, 0)).action == "none"


def test_policy_end_to_end_over_a_fleet() -> None:
    """count + evaluate + choose_offer driving a whole rollout to completion."""
    r = rollout(halt=2, promote=2, stages=ro.parse_stages("canary,50%,100%", canary_ids=["d0", "d1"]))
    devices = {f"d{i}": dev(f"d{i}") for i in range(40)}
    records: dict[str, OfferRecord] = {}
    for _ in range(len(r.stages)):
        for d in devices.values():
            if ro.choose_offer(d, [r], {1: records[d.id]} if d.id in records else {}, NOW, BACKOFF):
                records[d.id] = rec(d.id, "committed")
        for i in list(records):
            devices[i] = dataclasses.replace(devices[i], version=r.version)
        decision = ro.evaluate(r, ro.count(r, list(devices.values()), list(records.values()), NOW, TRIAL))
        if decision.action == "promote":
            r = dataclasses.replace(r, stage_index=r.stage_index + 1)
    assert decision.action == "complete" and len(records) == 40


# --- CLI: bad input is refused before the hub is contacted -------------------------------------------

@pytest.fixture
def site(tmp_path):
    from picoctl.commands.init import init_site

    return str(init_site(tmp_path / "site"))


@pytest.mark.parametrize("argv, message", [
    (["start", "1.1"], "not a semantic version"),
    (["start", "1.1.0", "--stages", "canary,50%,10%"], "does not grow"),
    (["start", "1.1.0", "--stages", "10%,100%", "--canary", "a,b"], "no canary stage"),
    (["start", "1.1.0", "--canary", "a,,b"], "comma-separated device ids"),
    (["start", "1.1.0", "--canary", "a b"], "device id 'a b'"),
    (["start", "1.1.0", "--percent", "ten"], "--percent 'ten'"),
    (["start", "1.1.0", "--percent", "120"], "canary percent"),
    (["start", "1.1.0", "--halt-after-failures", "-1"], "--halt-after-failures"),
    (["start", "1.1.0", "--promote-after-successes", "x"], "--promote-after-successes"),
])
def test_cli_start_rejects_bad_input_in_one_line(site: str, capsys, argv: list[str], message: str) -> None:
    from picoctl.cli import main

    assert main(["--config", site, "rollout", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


@pytest.mark.parametrize("argv", [
    ["start", "1.1.0", "--canary", "a", "--percent", "5"],
    ["start", "1.1.0", "--target", "pi"],
    ["start"],
    ["promote", "abc"],
    ["frobnicate"],
])
def test_cli_usage_errors_exit_2(argv: list[str], capsys) -> None:
    from picoctl.cli import main

    assert main(["rollout", *argv]) == 2
    assert "error:" in capsys.readouterr().err


# --- CLI against a real hub ----------------------------------------------------------------------------

def test_cli_drives_a_canary_rollout_on_a_real_hub(hub, monkeypatch, capsys) -> None:
    import json

    import httpx

    from picoctl.cli import main
    from picoctl.sim.fleet import SimDevice

    monkeypatch.setenv("PICOCTL_HUB_URL", hub.url)
    site = str(hub.site / "fleet.toml")

    def cli(*argv: str) -> tuple[int, str, str]:
        code = main(["--config", site, "rollout", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    v1, v2 = {"main.py": b"print('v1')\n"}, {"main.py": b"print('v2')\n"}
    hub.publish(hub.build_release("1.0.0", v1))
    hub.publish(hub.build_release("1.1.0", v2))
    devs = {i: SimDevice(i, hub.register(i), files=dict(v1), fail_trial=i == "bad") for i in ("ok", "bad", "other")}
    with httpx.Client(base_url=hub.url) as c:
        assert [d.step(c) for d in devs.values()] == [None, None, None]

        code, out, _ = cli("start", "1.1.0", "--canary", "ok,bad", "--halt-after-failures", "1", "--json")
        started = json.loads(out)
        assert code == 0 and started["previous_version"] == "1.0.0" and started["state"] == "active"
        assert [s["name"] for s in started["stages"]] == ["canary", "10%", "50%", "100%"]  # fleet.toml's default
        assert started["stages"][0]["ids"] == ["ok", "bad"] and started["counts"]["eligible"] == 2

        assert devs["ok"].step(c) == "committed"
        assert devs["other"].step(c) is None  # outside the canary
        assert devs["bad"].step(c) == "rolled_back"  # crosses the failure threshold: the hub halts

        code, out, _ = cli("status")
        assert code == 0 and "halted" in out and "1 device(s) failed at stage canary" in out and "ids ok,bad" in out
        assert "halt after 1 device failed; promote by hand" in out  # the policy's units: devices, not events
        code, _, err = cli("promote")
        assert code == 1 and "no active rollout of picow" in err

        code, out, _ = cli("rollback", "--reason", "trial boots fail")
        assert code == 0 and f"rolled back rollout {started['id']}: rollout {started['id'] + 1} offers 1.0.0 " \
                             "to the devices that took 1.1.0" in " ".join(out.split())
        back = json.loads(cli("status", "--json")[1])
        assert back["kind"] == "rollback" and back["version"] == "1.0.0" and back["state"] == "active"
        assert back["stages"][0]["ids"] == ["bad", "ok"]
        assert devs["ok"].step(c) == "committed" and devs["ok"].version == "1.0.0"

        code, out, _ = cli("status", str(started["id"]), "--json")
        first = json.loads(out)
        assert code == 0 and (first["state"], first["reason"]) == ("rolled_back", "trial boots fail")
        code, out, _ = cli("status", "--json")
        assert json.loads(out)["id"] == back["id"] and json.loads(out)["state"] == "completed"
        code, _, err = cli("resume", "999")
        assert code == 1 and "no rollout 999" in err


def test_a_device_on_the_release_being_rolled_back_joins_the_rollback() -> None:
    back = dataclasses.replace(rollout(2, version="1.0.0", kind="rollback", state="completed", halt=0,
                                       stages=[Stage("rollback", Cohort(ids=("gh-a",)))]), previous_version="1.1.0")
    joined = ro.rollback_joined(back, dev("gh-b", version="1.1.0"))
    assert joined is not None and [s.cohort.ids for s in joined] == [("gh-a", "gh-b")] and joined[0].name == "rollback"
    assert ro.rollback_joined(back, dev("gh-a", version="1.1.0")) is None  # covered already
    assert ro.rollback_joined(back, dev("gh-c", version="1.0.0")) is None  # not on the bad release
    assert ro.rollback_joined(back, dev("gh-c", type="pico", version="1.1.0")) is None
    assert ro.rollback_joined(dataclasses.replace(back, state="rolled_back"), dev("gh-b", version="1.1.0")) is None
    assert ro.rollback_joined(rollout(version="1.2.0"), dev("gh-b", version="1.0.0")) is None  # an update
