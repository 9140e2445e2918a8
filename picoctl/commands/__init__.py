"""Subcommands of the `picoctl` CLI, one module per command group."""

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
