"""The CLI's own contract: help, exit codes, init and keys."""

import subprocess
import sys
from pathlib import Path

from picoctl.cli import main


def test_init_and_keys(tmp_path: Path, capsys) -> None:
    assert main(["init", "--dir", str(tmp_path / "site")]) == 0
    assert (tmp_path / "site" / "fleet.toml").exists()
    assert main(["init", "--dir", str(tmp_path / "site")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["keys", "generate", "--out", str(tmp_path / "k")]) == 0
    assert (tmp_path / "k" / "release.key").stat().st_mode & 0o777 == 0o600
    assert main(["keys", "generate", "--out", str(tmp_path / "k")]) == 2


def test_bad_usage_exits_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "picoctl", "release", "build"], capture_output=True, text=True)
    assert proc.returncode == 2 and "required" in proc.stderr


def test_missing_config_is_one_clear_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "picoctl", "--config", str(tmp_path / "none.toml"), "release", "verify", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
