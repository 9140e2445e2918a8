"""Offer computation per device check: 10,000 devices, 20 rollouts (and one count() over the fleet).

picoctl.rollout.choose_offer (cached id sets and buckets, O(rollouts)) against a naive baseline that
recomputes every rollout's cohort by scanning the whole fleet on each check, as a hub without the
policy module's precomputation would. Both must pick the same rollout for every sampled device.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from picoctl import rollout as ro
from picoctl.rollout import DeviceInfo, OfferRecord, RolloutInfo

N_DEVICES = 10_000
N_ROLLOUTS = 20
NOW = 1_000_000.0
BACKOFF = 60.0
BUDGET_US = 1000.0


def make_fleet(rng: random.Random) -> tuple[list[DeviceInfo], list[RolloutInfo], dict[str, dict[int, OfferRecord]]]:
    devices = [
        DeviceInfo(id=f"dev-{i:05d}", type="picow" if i % 10 else "pico",
                   channel="canary" if i % 50 == 0 else "stable", version="1.0.0", seq=1, last_seen=NOW)
        for i in range(N_DEVICES)
    ]
    canary_ids = [d.id for d in rng.sample(devices, 40)]
    specs = ["canary,10%,50%,100%", "canary,5%,25%,100%", "10%,50%,100%", "canary,100%"]
    states = ["completed"] * 12 + ["rolled_back", "halted"] + ["active"] * 6
    rollouts = []
    for i in range(N_ROLLOUTS):
        spec = specs[i % len(specs)]
        stages = tuple(ro.parse_stages(spec, canary_ids=canary_ids if spec.startswith("canary") and i % 2 else ()))
        rollouts.append(RolloutInfo(
            id=i + 1, target="pico" if i % 7 == 3 else "picow", version=f"1.{i + 1}.0", previous_version=f"1.{i}.0",
            state=states[i], kind="update", stage_index=rng.randrange(len(stages)), stages=stages,
            halt_after_failures=3, promote_after_successes=5, created_at=NOW - 10_000 + i))
    phases = list(ro.PHASES)
    records: dict[str, dict[int, OfferRecord]] = {}
    for d in devices:
        mine = {}
        for r in rng.sample(rollouts, 3):
            phase = rng.choice(phases)
            mine[r.id] = OfferRecord(d.id, r.id, r.version, r.id + 1, phase, rng.randint(1, 4),
                                     phase == "failed" and rng.random() < 0.5, NOW - rng.uniform(0, 600))
        records[d.id] = mine
    return devices, rollouts, records


def _naive_bucket(device_id: str) -> float:
    return (int.from_bytes(hashlib.sha256(device_id.encode()).digest()[:8], "big") >> 11) * 100.0 / 2**53


def _naive_in_stage(stage: ro.Stage, d: DeviceInfo) -> bool:
    c = stage.cohort
    return ((not c.ids or d.id in c.ids) and (c.device_type is None or d.type == c.device_type)
            and (c.channel is None or d.channel == c.channel)
            and (c.percent is None or c.percent >= 100 or _naive_bucket(d.id) < c.percent))


def naive_choose(device: DeviceInfo, rollouts: list[RolloutInfo], fleet: list[DeviceInfo],
                 records: dict[int, OfferRecord]) -> RolloutInfo | None:
    """Same decision, but each rollout's cohort is rebuilt from the whole fleet on every check."""
    deciding = None
    for r in sorted(rollouts, key=lambda r: r.id, reverse=True):
        if r.target != device.type:
            continue
        cohort = [d.id for d in fleet if d.type == r.target
                  and any(_naive_in_stage(s, d) for s in r.stages[:r.stage_index + 1])]
        if r.id in records or (r.state == "active" and device.id in cohort):
            deciding = r
            break
    if deciding is None or deciding.state != "active" or device.version == deciding.version:
        return None
    if not any(_naive_in_stage(s, device) for s in deciding.stages[:deciding.stage_index + 1]):
        return None
    rec = records.get(deciding.id)
    if rec is None or rec.phase in ro.PRE_SWITCH:
        return deciding
    if rec.phase == "failed" and rec.transient:
        return deciding if NOW >= ro.retry_at(rec, BACKOFF) else None
    return None


def main() -> None:
    rng = random.Random(7)
    devices, rollouts, records = make_fleet(rng)
    ro.bucket.cache_clear()

    start = time.perf_counter()
    offered = sum(ro.choose_offer(d, rollouts, records[d.id], NOW, BACKOFF) is not None for d in devices)
    cold_us = (time.perf_counter() - start) * 1e6 / len(devices)
    rounds = 5
    start = time.perf_counter()
    for _ in range(rounds):
        for d in devices:
            ro.choose_offer(d, rollouts, records[d.id], NOW, BACKOFF)
    us = (time.perf_counter() - start) * 1e6 / (rounds * len(devices))

    sample = rng.sample(devices, 40)
    start = time.perf_counter()
    naive = [naive_choose(d, rollouts, devices, records[d.id]) for d in sample]
    baseline_us = (time.perf_counter() - start) * 1e6 / len(sample)
    fast = [ro.choose_offer(d, rollouts, records[d.id], NOW, BACKOFF) for d in sample]
    if [r and r.id for r in naive] != [r and r.id for r in fast]:
        sys.exit("choose_offer and the naive baseline disagree")

    active = next(r for r in rollouts if r.state == "active" and r.target == "picow")
    flat = [rec for mine in records.values() for rec in mine.values()]
    start = time.perf_counter()
    counts = ro.count(active, devices, flat, NOW, 900.0)
    count_ms = (time.perf_counter() - start) * 1e3

    print(f"{len(devices)} devices, {len(rollouts)} rollouts, {offered} offers made in one pass")
    print(f"count() of rollout {active.id} over the fleet ({counts.eligible} eligible): {count_ms:.1f} ms")
    print(f"choose_offer: {cold_us:.1f} us/check on the first pass (buckets computed), {us:.1f} us/check after")
    print(f"naive baseline (cohorts rebuilt per check, {len(sample)} checks): {baseline_us:.0f} us/check")
    status = "ok" if us < BUDGET_US and cold_us < BUDGET_US else "OVER BUDGET"
    print(f"budget {BUDGET_US:.0f} us/check: {status}")
    print(f"RESULT us_per_check={us:.1f} cold_us_per_check={cold_us:.1f} "
          f"baseline_us_per_check={baseline_us:.0f} ratio={baseline_us / us:.0f} count_ms={count_ms:.1f}")
    if status != "ok":
        sys.exit(1)


if __name__ == "__main__":
    main()
