"""A plain wheel (not the editable install the tests run from) carries what picoctl puts on other
machines: the agent, the board apps and the example Pi app, found where the checkout has them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from picoctl import provision, shipped

ROOT = Path(__file__).resolve().parents[1]

# Run without site (so without the editable install's finder), the wheel first, the dependencies after.
PROBE = """
import json, sys
sys.path[:0] = [sys.argv[1]]
sys.path.append(sys.argv[2])
import picoctl, picoctl.provision as provision, picoctl.shipped as shipped
print(json.dumps({
    "package": picoctl.__file__,
    "linked": shipped.BUNDLED.joinpath("device_code").is_symlink(),
    "agent": sorted(provision.agent_files(mpy=False)),
    "app": sorted(provision.app_files(mpy=False)[1]),
    "pico": shipped.DEVICE_CODE.joinpath("pico", "main.py").is_file(),
    "pi_app": sorted(p.name for p in shipped.EXAMPLES.joinpath("pi-app").iterdir()),
}))
"""


def test_a_wheel_ships_the_device_code_and_the_example_app(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: a build in the checkout could reuse a stale build/ folder
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "__snapshots__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("picoctl-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path / "site")
    run = subprocess.run([sys.executable, "-S", "-c", PROBE, str(tmp_path / "site"), sysconfig.get_paths()["purelib"]],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["package"].startswith(str(tmp_path / "site")) and not got["linked"]  # copies, not links
    assert got["agent"] == sorted(provision.agent_files(mpy=False)) and "ota/agent.py" in got["agent"]
    assert got["app"] == sorted(provision.app_files(mpy=False)[1]) and got["pico"]
    assert got["pi_app"] == sorted(p.name for p in shipped.EXAMPLES.joinpath("pi-app").iterdir())
