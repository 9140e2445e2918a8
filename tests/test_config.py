"""fleet.toml loading: search order, defaults, and one-line errors naming file, key and expectation."""

from pathlib import Path

import pytest

from picoctl import config, keyset
from picoctl.commands.init import init_site
from picoctl.errors import BadInput


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "fleet.toml"
    p.write_text(text)
    return p


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[hub]\nport = 9000\ndata_dir = "d"\n[device_types.picow]\nheartbeat_interval_s = 30\n'))
    assert cfg.hub.port == 9000
    assert cfg.data_dir == tmp_path.resolve() / "d"
    assert cfg.device_type("picow").stale_after() == 90
    assert cfg.device_type("unknown").heartbeat_interval_s == 60


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[hub]\nport = 'x'\n", "hub.port: expected an integer, got str 'x'"),
        ("[hub]\nprot = 1\n", "hub.prot: unknown key"),
        ("[hubb]\n", "hubb: unknown section"),
        ("[pi]\nkeep_releases = 1\n", "pi.keep_releases: expected at least 2"),
        ("[pi]\nhealth_timeout_s = true\n", "pi.health_timeout_s: expected a number, got bool"),
        ("[release]\npublic_key = 'abc'\n", "release.public_key: expected 64 hex digits"),
        ("[device_types.picow]\nheartbeat_interval_s = 0\n", "device_types.picow.heartbeat_interval_s"),
        ("[hub\n", "not valid TOML"),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadInput) as err:
        config.load(path)
    message = str(err.value)
    assert str(path) in message and expected in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        config.load(tmp_path / "nope.toml")


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = write(tmp_path, "")
    monkeypatch.setenv(config.ENV_VAR, str(env_file))
    assert config.find() == env_file
    assert config.find(tmp_path / "explicit.toml") == tmp_path / "explicit.toml"
    monkeypatch.delenv(config.ENV_VAR)
    monkeypatch.setattr(config, "SEARCH_PATH", (tmp_path / "none.toml",))
    with pytest.raises(BadInput, match="picoctl init"):
        config.find()


def test_init_round_trip_and_refuses_overwrite(tmp_path: Path) -> None:
    path = init_site(tmp_path / "site")
    cfg = config.load(path)
    keys = keyset.from_config(cfg)
    assert keys is not None and keys.version == 1 and len(keys.release) == 1 and len(keys.root) == 1
    assert (tmp_path / "site/keys/root.key").stat().st_mode & 0o777 == 0o600
    assert (cfg.token_file.stat().st_mode & 0o777) == 0o600
    assert (tmp_path / "site/keys/release.key").stat().st_mode & 0o777 == 0o600
    assert cfg.read_token()
    assert config.parse(__import__("tomllib").loads(config.to_toml(cfg)), path).hub == cfg.hub
    with pytest.raises(BadInput, match="already exists"):
        init_site(tmp_path / "site")
