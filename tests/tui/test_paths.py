"""Path prompts: the newest UF2 or release folder as the default, and completion of a typed path."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from picoctl.tui.widgets.paths import RELEASE, UF2, PathSuggester, newest


def _release(folder: Path, target: str, age_s: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"target": target, "version": "1.0.0"}))
    t = (folder / "meta.json").stat().st_mtime - age_s
    os.utime(folder, (t, t))
    return folder


def test_the_newest_fitting_file_or_release_folder_is_the_default(tmp_path: Path) -> None:
    (tmp_path / "a.uf2").write_bytes(b"")
    os.utime(tmp_path / "a.uf2", (1, 1))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.UF2").write_bytes(b"")
    (tmp_path / "c.txt").write_bytes(b"")
    assert newest([tmp_path], UF2) == tmp_path / "out" / "b.UF2"

    _release(tmp_path / "rel-old", "picow", 100)
    new = _release(tmp_path / "out" / "rel-new", "pico", 10)
    _release(tmp_path / "pi-rel", "pi", 0)  # a Pi release is not pushed to a board
    assert newest([tmp_path, tmp_path / "missing"], RELEASE) == new
    assert newest([tmp_path / "missing"], UF2) is None


def test_a_typed_path_completes_to_folders_and_fitting_files(tmp_path: Path) -> None:
    (tmp_path / "firmware.uf2").write_bytes(b"")
    (tmp_path / "fine.txt").write_bytes(b"")
    (tmp_path / "fold").mkdir()
    (tmp_path / ".hidden").mkdir()
    uf2, rel = PathSuggester(UF2), PathSuggester(RELEASE)
    base = f"{tmp_path}/"
    assert asyncio.run(uf2.get_suggestion(base + "fi")) == base + "firmware.uf2"
    assert asyncio.run(uf2.get_suggestion(base + "fo")) == base + "fold/"
    assert asyncio.run(rel.get_suggestion(base + "f")) == base + "fold/"  # a release is a folder: files are skipped
    assert asyncio.run(uf2.get_suggestion(base)) == base + "firmware.uf2"
    assert asyncio.run(uf2.get_suggestion(base + ".h")) == base + ".hidden/"
    assert asyncio.run(uf2.get_suggestion(base + "zz")) is None
    assert asyncio.run(uf2.get_suggestion(f"{tmp_path}/nowhere/x")) is None
