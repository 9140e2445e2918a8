"""`picoctl hub migrate --to postgresql://…`: move this site's store from SQLite to PostgreSQL."""

from __future__ import annotations

import argparse

from .. import config
from ..errors import BadInput
from .output import add_json_flag, console, emit


def _migrate(args: argparse.Namespace) -> int:
    from ..hub.db import is_postgres, redact
    from ..hub.move import migrate_site

    if not is_postgres(args.to):
        raise BadInput(f"--to {args.to!r}: expected a postgresql:// URL")
    cfg = config.load(args.config)
    counts = migrate_site(cfg.data_dir, args.to)

    def render(c: dict[str, int]) -> None:
        console.print(f"[green]copied[/] {', '.join(f'{n} {t}' for t, n in c.items())} into {redact(args.to)};"
                      " counts and every device's last counter match")
        console.print(f"set hub.database_url = \"{redact(args.to)}\" (with its password) in fleet.toml, then start"
                      " the hubs")

    emit(args, counts, render)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    h = sub.add_parser("hub", help="the hub's store")
    actions = h.add_subparsers(dest="action", metavar="ACTION", required=True)
    m = actions.add_parser("migrate", help="copy this site's SQLite store (state and history) into PostgreSQL")
    m.add_argument("--to", required=True, metavar="URL", help="postgresql://user:password@host/db of an empty database")
    add_json_flag(m)
    m.set_defaults(func=_migrate)
