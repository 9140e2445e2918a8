"""The smoke attestation in meta.json: covered by the release signature, shown by `release list`, and
required by the hub before a picow rollout when `[rollout] require_smoke` is on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from picoctl import config, keyset, provision, release, shipped
from picoctl.cli import main
from picoctl.client import HubError

PASSED = {"passed": True, "micropython": "1.29.0-preview", "heap": "160K", "seconds": 20.0, "peak_heap": 43904,
          "from_version": "0.0.0", "readings": 0}
FAILED = dict(PASSED, passed=False, seconds=0.0, peak_heap=None,
              reason="the candidate 1.1.0 raised AttributeError: module 'ota.hw' has no attribute 'pump_pwm'")
CANARY = [{"name": "canary", "ids": [], "device_type": None, "percent": None, "channel": "canary"}]


def attested(hub, version: str, record: dict[str, Any] | None, target: str = "picow") -> Path:
    source = shipped.EXAMPLES / "pi-app" if target == "pi" else provision.DEVICE_CODE / "app"
    out = hub.site / "releases" / f"{target}-{version}"
    release.build(target, version, source, out, key_hex=hub.signing_key)
    if record is not None:
        release.attest_smoke(out, record, hub.signing_key)
    return out


def edit_meta(release_dir: Path, change) -> None:
    meta = json.loads((release_dir / "meta.json").read_text())
    change(meta)
    (release_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))


@pytest.mark.parametrize("change", [
    lambda m: m["smoke"].update(passed=True, reason=None),
    lambda m: m["smoke"].update(peak_heap=1000),
    lambda m: m["smoke"].update(seconds=600),
    lambda m: m.pop("smoke"),
], ids=["failed-to-passed", "peak-heap", "seconds", "removed"])
def test_an_attestation_cannot_be_altered_without_breaking_the_signature(hub, change) -> None:
    out = attested(hub, "1.1.0", FAILED)
    public = keyset.release_keys(hub.cfg, "this test")
    assert release.verify(out, public)["smoke"] == FAILED
    edit_meta(out, change)
    with pytest.raises(Exception, match="signature does not verify"):
        release.verify(out, public)
    with pytest.raises(HubError) as refused:
        hub.publish(out)
    assert refused.value.status == 422 and "signature does not verify" in str(refused.value)


def test_a_malformed_attestation_is_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "picow-1.0.0"
    release.build("picow", "1.0.0", provision.DEVICE_CODE / "app", out)
    edit_meta(out, lambda m: m.update(smoke="passed"))
    with pytest.raises(Exception, match="'smoke' must be an object with a true or false 'passed'"):
        release.load_meta(out)


def test_require_smoke_refuses_a_rollout_without_a_passing_attestation_saying_why(hub, capsys, monkeypatch) -> None:
    for version, record in (("1.0.0", None), ("1.1.0", FAILED), ("1.2.0", PASSED)):
        hub.publish(attested(hub, version, record))
    hub.publish(attested(hub, "2.0.0", None, target="pi"))
    hub.cfg.rollout.require_smoke = True
    config.save(hub.cfg, hub.site / "fleet.toml")
    hub.restart()
    with pytest.raises(HubError) as no_smoke:
        hub.client.start_rollout("picow", "1.0.0", CANARY, 1, 0)
    assert no_smoke.value.status == 409
    assert str(no_smoke.value).endswith("release picow 1.0.0 cannot be rolled out: it has no smoke attestation (build "
                                        "it with `picoctl release build --smoke`), and [rollout] require_smoke is on")
    with pytest.raises(HubError) as failed:
        hub.client.start_rollout("picow", "1.1.0", CANARY, 1, 0)
    assert failed.value.status == 409 and "its smoke failed: the candidate 1.1.0 raised AttributeError" in str(failed.value)
    assert hub.client.rollouts() == []
    started = hub.client.start_rollout("picow", "1.2.0", CANARY, 1, 0)
    assert started["version"] == "1.2.0" and started["state"] == "active"
    assert hub.client.start_rollout("pi", "2.0.0", CANARY, 1, 0)["state"] == "active"  # only picow boots in the smoke

    monkeypatch.setenv("PICOCTL_HUB_URL", hub.url)
    assert main(["--config", str(hub.site / "fleet.toml"), "release", "list", "--target", "picow"]) == 0
    out = capsys.readouterr().out
    assert "passed 20 s, 43 KiB" in out and "picow 1.1.0: smoke failed: the candidate 1.1.0 raised" in out
    assert main(["--config", str(hub.site / "fleet.toml"), "release", "list", "--json"]) == 0
    shown = {(r["target"], r["version"]): r["meta"].get("smoke") for r in json.loads(capsys.readouterr().out)}
    assert shown[("picow", "1.1.0")] == FAILED and shown[("picow", "1.0.0")] is None and len(shown) == 4


def test_without_require_smoke_an_operator_may_still_roll_out_a_failed_smoke(hub) -> None:
    hub.publish(attested(hub, "1.1.0", FAILED))
    assert hub.client.start_rollout("picow", "1.1.0", CANARY, 1, 0)["state"] == "active"
