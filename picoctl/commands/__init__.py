"""Subcommands of the `picoctl` CLI, one module per command group."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..client import HubClient
    from ..config import FleetConfig

# Each command's module (commands.<name>) and its help line: `picoctl --help` lists them without
# importing any, and the CLI imports only the module of the command it runs.
COMMANDS = {
    "init": "create fleet.toml, data folder, operator token and release keys",
    "keys": "release and root signing keys, the key set boards trust",
    "release": "build, verify and publish releases",
    "pi": "deploy, roll back and inspect the Pi app on this machine",
    "rollout": "stage a release through the fleet: start, promote, halt, roll back",
    "usb": "find, flash, push to and watch boards on USB",
    "serve": "run the hub: device API, operator API and event stream",
    "hub": "the hub's store: move a site from SQLite to PostgreSQL",
    "devices": "list the fleet: version, status, last heartbeat, offer",
    "history": "the audit log: deploys, offers, statuses, rollouts, refusals",
    "device": "provision boards",
    "demo": "run a hub, a simulated fleet, a USB Pico and the Pi app here, and open the TUI",
}


def hub_client(cfg: FleetConfig) -> HubClient:
    """A client of the hub `cfg` names (or $PICOCTL_HUB_URL), its module imported here on use: httpx stays
    out of `picoctl --help`."""
    from ..client import HubClient

    return HubClient.from_config(cfg)
