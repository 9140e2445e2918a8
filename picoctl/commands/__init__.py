"""Subcommands of the `picoctl` CLI, one module per command group."""
