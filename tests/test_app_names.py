"""A picow release may not ship files that would shadow the board's agent (app/ is first on the
board's import path): `release build` refuses them, and so does the hub when a release arrives."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from picoctl import release
from picoctl.errors import BadInput

SHADOWING = ["ota/agent.py", "ota/__init__.py", "ota.py", "ota.mpy", "hashlib.py", "json/__init__.py"]


@pytest.mark.parametrize("name", SHADOWING)
def test_release_build_refuses_names_that_shadow_the_agent(tmp_path: Path, name: str) -> None:
    src = tmp_path / "src"
    for rel in ("main.py", name):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("X = 1\n")
    with pytest.raises(BadInput, match="would shadow the board's OTA agent"):
        release.build("picow", "1.0.0", src, tmp_path / "out", mpy=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_names_that_only_look_alike_are_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel in ("main.py", "lib/ota/x.py", "ota.txt", "otaku.py", "lib/json.py"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("X = 1\n")
    meta = release.build("picow", "1.0.0", src, tmp_path / "out", mpy=False)
    assert {f["name"] for f in meta["files"]} == {"main.py", "lib/ota/x.py", "ota.txt", "otaku.py", "lib/json.py"}
    # a pi release is no board's app: its own ota/ folder is fine
    (src / "ota").mkdir()
    (src / "ota" / "x.py").write_text("X = 1\n")
    release.build("pi", "1.0.0", src, tmp_path / "pi", mpy=False)


def test_hub_refuses_a_release_that_shadows_the_agent(hub, tmp_path: Path) -> None:
    good = hub.build_release("1.0.0", {"main.py": b"X = 1\n"})
    meta = release.load_meta(good)
    meta["files"] = [*meta["files"], {"name": "ota/agent.mpy", "size": 1, "sha256": "0" * 64}]
    r = httpx.put(f"{hub.url}/api/v1/releases/picow/1.0.0", content=(good / meta["artifact"]).read_bytes(),
                  headers={"Authorization": f"Bearer {hub.token}", "Content-Type": "application/octet-stream",
                           "X-Picoctl-Meta": base64.b64encode(json.dumps(meta).encode()).decode()})
    assert r.status_code == 400, r.text
    assert "would shadow the board's OTA agent" in r.json()["error"]
    assert hub.client.releases("picow") == []
