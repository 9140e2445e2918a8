"""A transient failure's backoff as an operator may set it in fleet.toml: a value the hub cannot
wait out sanely (negative, or one whose doublings reach past int64 seconds and print as
'retrying in 2562047788015215h') is refused in one line naming the key; the largest it takes still
tells a board a whole number of seconds within int64 and the CLI an hour count."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from picoctl import config, diagnostics
from picoctl.config import MAX_RETRY_BACKOFF_S
from picoctl.errors import BadInput
from picoctl.rollout import MAX_BACKOFF_DOUBLINGS, OfferRecord, retry_at
from picoctl.site import init_site
from picoctl.strict_json import INT64_MAX


@pytest.mark.parametrize("backoff", [-5, MAX_RETRY_BACKOFF_S + 1, 2**63 - 1])
def test_a_backoff_the_hub_cannot_wait_out_sanely_is_refused_naming_the_key(tmp_path: Path, backoff: int) -> None:
    path = init_site(tmp_path / "site", 18471)
    path.write_text(re.sub(r"(?m)^retry_backoff_s = .*$", f"retry_backoff_s = {backoff}", path.read_text()))
    with pytest.raises(BadInput, match=rf"rollout\.retry_backoff_s: expected 0 .* got {backoff}$"):
        config.load(path)
    run = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(path), "serve"],
                         capture_output=True, text=True, timeout=60, env={**os.environ})
    assert run.returncode == 2 and "rollout.retry_backoff_s" in run.stderr and "Traceback" not in run.stderr, run


def test_the_longest_backoff_taken_is_a_sane_wait() -> None:
    assert config.parse({"rollout": {"retry_backoff_s": 0}}).rollout.retry_backoff_s == 0
    record = OfferRecord("gh-01", 1, "1.1.0", 1, "failed", attempts=10 * MAX_BACKOFF_DOUBLINGS, transient=True,
                         updated_at=0.0)
    at = retry_at(record, config.parse({"rollout": {"retry_backoff_s": MAX_RETRY_BACKOFF_S}}).rollout.retry_backoff_s)
    assert at == MAX_RETRY_BACKOFF_S * 1024 < INT64_MAX
    assert diagnostics.retry_note(at, 0.0) == "retrying in 24576h"
