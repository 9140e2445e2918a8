"""A DataTable updated in place: rows by key, only the cells that changed, never a rebuild."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from rich.markup import escape
from rich.text import Text
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from .. import keymap
from ..text import flat

Cell = str | int | float | Text


def plain(value: Cell) -> Any:
    """A comparable form of a cell, for change detection and sorting."""
    return value.plain if isinstance(value, Text) else value


def one_line(value: Cell) -> Cell:
    """A cell as a row shows it: on one line, and its text as it is (DataTable reads a str cell as
    markup, and cells quote what the hub and the boards say)."""
    if isinstance(value, Text):
        return value if "\n" not in value.plain else Text(flat(value.plain), style=value.style, justify=value.justify)
    return escape(flat(value)) if isinstance(value, str) else value


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers before text, '-' (missing) last, so mixed columns sort without errors."""
    v = plain(value)
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            pass
    if isinstance(v, (int, float)):
        return (0, v)
    return (2, "") if v in ("-", "") else (1, str(v).lower())


class RowChosen(Message):
    """A row chosen (enter, double click) in a KeyedTable or a FastTable: screens handle both alike with
    `@on(RowChosen, "#id")`."""

    def __init__(self, table: Widget, key: str) -> None:
        super().__init__()
        self.table, self.key = table, key

    @property
    def control(self) -> Widget:
        return self.table


class KeyedTable(DataTable):
    """Rows keyed by a string; `put` adds a row or updates only its changed cells."""

    BINDINGS = [*keymap.TABLE]

    def __init__(self, columns: Sequence[tuple[str, str, int | None]], **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        super().__init__(**kwargs)
        self._columns = columns
        self._cells: dict[str, tuple[Any, ...]] = {}
        self.updates = 0  # cells written since mount, for tests and the benchmark

    def on_mount(self) -> None:
        for key, label, width in self._columns:
            self.add_column(label, key=key, width=width)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(RowChosen(self, event.row_key.value))

    @property
    def column_keys(self) -> list[str]:
        return [c[0] for c in self._columns]

    def has(self, key: str) -> bool:
        return key in self._cells

    def put(self, key: str, cells: Sequence[Cell]) -> set[str]:
        """Add the row, or write only the cells that differ from what is shown.

        The keys of the columns written (every column for a new row); empty when nothing changed.
        """
        cells = [one_line(c) for c in cells]
        new = tuple(plain(c) for c in cells)
        old = self._cells.get(key)
        if old is None:
            self.add_row(*cells, key=key)
            self._cells[key] = new
            self.updates += len(cells)
            return set(self.column_keys)
        if old == new:
            return set()
        changed = set()
        for i, (a, b) in enumerate(zip(old, new, strict=False)):
            if a != b:
                column = self._columns[i][0]
                self.update_cell(key, column, cells[i])
                changed.add(column)
        self.updates += len(changed)
        self._cells[key] = new
        return changed

    def drop(self, key: str) -> None:
        if self._cells.pop(key, None) is not None:
            self.remove_row(key)

    def keep_only(self, keys: Iterable[str]) -> None:
        wanted = set(keys)
        for key in [k for k in self._cells if k not in wanted]:
            self.drop(key)

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:
            return None

    def sort_by(self, column: str, reverse: bool = False) -> None:
        self.sort(column, key=sort_key, reverse=reverse)

    def keys_in_order(self) -> list[str]:
        return [r.key.value for r in self.ordered_rows if r.key.value is not None]

    def action_scroll_top(self) -> None:
        self.move_cursor(row=0)

    def action_scroll_bottom(self) -> None:
        self.move_cursor(row=self.row_count - 1)

