"""Printing for the CLI: rich for people, `--json` for scripts."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from typing import TYPE_CHECKING

from ..drawable import drawable
from ..progress import Progress, ProgressEvent

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """rich's Console, made on first use: importing rich costs more than many commands' own work
    (and nothing of it for `picoctl --help`)."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


console = _LazyConsole()
err_console = _LazyConsole(stderr=True)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any], None]) -> None:
    """Print `data` as JSON when `--json` was given, else through `render`."""
    if getattr(args, "json", False):
        json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        render(data)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*(Text("" if v is None else str(v)) for v in r))  # cells are text, never markup
    console.print(t)


INDENT = 4


def printable(value: object) -> str:
    """`value` as one line of text to print, never to obey: a tab or line break is a space, any other
    character a terminal may not draw as it is (picoctl.drawable: an escape sequence's ESC, a bidi
    override) a '?'."""
    s = str(value)
    if s.isascii() and s.isprintable():
        return s
    return "".join(ch if drawable(ch) else " " if ch in "\t\n\r" else "?" for ch in s)


def columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The header and the rows as lines of left-aligned columns two spaces apart; the last one unpadded."""
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True)), line[-1]]).rstrip()
            for line in lines]


def beneath(text: str, width: int) -> list[str]:
    """`text` wrapped under a row of `columns`, indented: every word of it, none cut."""
    return textwrap.wrap(text, max(20, width - INDENT), initial_indent=" " * INDENT, subsequent_indent=" " * INDENT,
                         break_on_hyphens=False)


@contextmanager
def progress_bar(task: str) -> Iterator[Progress]:
    """A Progress drawn as a rich bar on stderr when that is a terminal (silent otherwise)."""
    if not sys.stderr.isatty():
        yield Progress(task)  # no bar to draw: rich stays unloaded
        return
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    from rich.progress import Progress as Bar

    with Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
             TimeRemainingColumn(), console=err_console.get(), transient=True, disable=not err_console.is_terminal) as bar:
        tid = bar.add_task(task, total=None)

        def sink(e: ProgressEvent) -> None:
            bar.update(tid, description=" ".join(filter(None, (task, e.phase, e.item))), completed=e.done, total=e.total)

        yield Progress(task, sink)
