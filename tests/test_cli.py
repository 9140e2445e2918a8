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


HEAVY = ("httpx", "rich", "serial", "mpremote", "esptool", "textual", "starlette", "uvicorn")
PROBE = """
import sys
from picoctl.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[0].split(","))) or "-"))
"""


def test_help_and_a_light_command_start_without_the_heavy_libraries() -> None:
    """`picoctl --help` took four times mpremote's start: every command module imported everything."""
    for args in (["--help"], ["usb", "--help"], ["usb", "push", "--help"], ["--config", "x", "history", "--help"]):
        proc = subprocess.run([sys.executable, "-c", PROBE.replace("sys.argv[0]", repr(",".join(HEAVY))), *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.stdout.strip().splitlines()[-1] == "-", (args, proc.stdout[-300:], proc.stderr[-300:])


def test_only_the_command_run_is_imported() -> None:
    probe = ("import sys\nfrom picoctl.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('picoctl.commands.')))")
    proc = subprocess.run([sys.executable, "-c", probe, "usb", "push", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "['picoctl.commands.numbers', 'picoctl.commands.output', 'picoctl.commands.usb']"
    full = subprocess.run([sys.executable, "-m", "picoctl", "--help"], capture_output=True, text=True, timeout=60)
    assert all(name in full.stdout for name in ("usb", "rollout", "demo", "history"))
