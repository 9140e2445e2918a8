"""A table for thousands of live rows (the fleet): the Line API, one cached Strip per row.

DataTable invalidates the render of every visible cell on any update; here an update rebuilds only its
own row's Strip, so a burst of heartbeats costs a few rows per frame. Rows by key, fixed column widths,
a header line, a row cursor (j/k, arrows, page keys, g/G), enter posts `Selected`, sort by any column.
Same `put`/`drop`/`keep_only`/`selected_key` interface as KeyedTable.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .. import keymap
from ..text import flat
from .table import Cell, RowChosen, plain, sort_key

PAD = 1


class FastTable(ScrollView, can_focus=True):
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False, id="table.up_arrow"),
        Binding("down", "cursor(1)", "Down", show=False, id="table.down_arrow"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="table.page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="table.page_down"),
        Binding("home", "home", "Start", show=False, id="table.home", tooltip="the first row, scrolled back left"),
        Binding("end", "scroll_bottom", "Bottom", show=False, id="table.end"),
        Binding("enter", "select", "Open", id="table.select", tooltip="open the selected row"),
        Binding("left", "scroll_left", "Left", show=False, id="table.left", tooltip="show the columns to the left"),
        Binding("right", "scroll_right", "Right", show=False, id="table.right", tooltip="show the columns to the right"),
        *(Binding(b.key, {"cursor_down": "cursor(1)", "cursor_up": "cursor(-1)"}.get(b.action, b.action),
                  b.description, show=False, id=b.id, tooltip=b.tooltip) for b in keymap.TABLE),
    ]
    COMPONENT_CLASSES = {"fast-table--header", "fast-table--cursor", "fast-table--even"}
    DEFAULT_CSS = """
    FastTable { background: $surface; }
    FastTable > .fast-table--header { text-style: bold; background: $panel; color: $foreground; }
    FastTable > .fast-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground;
                                      text-style: bold; }
    FastTable > .fast-table--even { background: $surface-lighten-1 30%; }
    """

    cursor_row: reactive[int] = reactive(0, always_update=False, repaint=False)

    def __init__(self, columns: Sequence[tuple[str, str, int | None]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._columns = [(k, label, w or 20) for k, label, w in columns]
        self._index = {k: i for i, (k, _, _) in enumerate(self._columns)}
        self._cells: dict[str, tuple[Any, ...]] = {}  # plain values, for change detection and sorting
        self._shown: dict[str, tuple[Cell, ...]] = {}  # what is drawn
        self._order: list[str] = []
        self._position: dict[str, int] = {}
        self._strips: dict[tuple[str, int], Strip] = {}  # (key, 0 plain / 1 even / 2 cursor) -> strip
        self._sort: tuple[str, bool] | None = None
        self.updates = 0

    # --- the KeyedTable interface --------------------------------------------------------------
    @property
    def column_keys(self) -> list[str]:
        return [c[0] for c in self._columns]

    @property
    def row_count(self) -> int:
        return len(self._order)

    def has(self, key: str) -> bool:
        return key in self._cells

    def put(self, key: str, cells: Sequence[Cell]) -> set[str]:
        new = tuple(plain(c) for c in cells)
        old = self._cells.get(key)
        if old == new:
            return set()
        self._cells[key] = new
        self._shown[key] = tuple(cells)
        self._forget(key)
        if old is None:
            self._position[key] = len(self._order)
            self._order.append(key)
            self._resize()
            self.updates += len(cells)
            return set(self.column_keys)
        changed = {self._columns[i][0] for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b}
        self.updates += len(changed)
        self._refresh_key(key)
        return changed

    def drop(self, key: str) -> None:
        if self._cells.pop(key, None) is None:
            return
        selected = self.selected_key()
        self._shown.pop(key, None)
        self._forget(key)
        self._order.remove(key)
        self._reindex(selected)
        self._resize()
        self.refresh()

    def keep_only(self, keys: Iterable[str]) -> None:
        wanted = set(keys)
        gone = [k for k in self._cells if k not in wanted]
        selected = self.selected_key()
        for key in gone:
            self._cells.pop(key)
            self._shown.pop(key, None)
            self._forget(key)
        if gone:
            self._order = [k for k in self._order if k in wanted]
            self._reindex(selected)
            self._resize()
            self.refresh()

    def get_cell(self, key: str, column: str) -> Cell:
        return self._shown[key][self._index[column]]

    def get_row(self, key: str) -> list[Cell]:
        return list(self._shown[key])

    def keys_in_order(self) -> list[str]:
        return list(self._order)

    def keys_in_view(self) -> list[str]:
        top = int(self.scroll_offset.y)
        return self._order[top:top + self.size.height]

    def selected_key(self) -> str | None:
        if not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    def sort_by(self, column: str, reverse: bool = False, key: Callable[[str], Any] | None = None) -> None:
        """Order the rows by `column` (or by `key` of each row's key, when the shown text does not sort, such
        as ages); the header marks it (▲ ascending, ▼ descending); the cursor stays on the row it was on."""
        i = self._index[column]
        cells = self._cells
        selected = self.selected_key()
        self._order.sort(key=key or (lambda k: sort_key(cells[k][i])), reverse=reverse)
        self._sort = (column, reverse)
        self._reindex(selected)
        self.refresh()

    @property
    def sorted_by(self) -> tuple[str, bool] | None:
        return self._sort

    def move_cursor(self, row: int, animate: bool = False) -> None:
        self.cursor_row = max(0, min(row, len(self._order) - 1))

    # --- drawing ----------------------------------------------------------------------------
    def _forget(self, key: str) -> None:
        for variant in (0, 1, 2):
            self._strips.pop((key, variant), None)

    def _reindex(self, selected: str | None = None) -> None:
        """Positions after the order changed; the cursor follows the row `selected` if it is still here."""
        self._position = {k: i for i, k in enumerate(self._order)}
        self._strips.clear()  # zebra stripes follow positions
        row = self._position.get(selected) if selected is not None else None
        if row is not None:
            self.cursor_row = row
        elif self.cursor_row >= len(self._order):
            self.cursor_row = max(len(self._order) - 1, 0)

    def _resize(self) -> None:
        width = sum(w + 2 * PAD for _, _, w in self._columns)
        self.virtual_size = Size(width, len(self._order) + 1)

    def _refresh_key(self, key: str) -> None:
        pos = self._position.get(key)
        top = int(self.scroll_offset.y)
        if pos is not None and top <= pos < top + self.size.height:
            self.refresh_line(pos - top + 1)

    def _line(self, cells: Sequence[Any], base: Style) -> list[Segment]:
        pad = Segment(" " * PAD, base)
        out: list[Segment] = []
        for (_, _, width), cell in zip(self._columns, cells, strict=False):
            style, right = base, isinstance(cell, (int, float))
            if isinstance(cell, Text):
                own = Style.parse(cell.style) if isinstance(cell.style, str) else cell.style
                style, right, cell = base + own, cell.justify == "right", cell.plain
            text = str(cell)
            if not (text.isascii() and text.isprintable()):
                text = flat(text)  # on one line
            if right and cell_len(text) < width:
                text = " " * (width - cell_len(text)) + text
            out += [pad, Segment(set_cell_size(text, width), style), pad]  # wide characters count twice
        return out

    def _header(self) -> list[str]:
        column, reverse = self._sort or ("", False)
        return [f"{label}{'▼' if reverse else '▲'}" if key == column else label for key, label, _ in self._columns]

    def _cropped(self, strip: Strip, scroll_x: int, width: int, style: Style) -> Strip:
        """The visible part of a row; the first column (the row's key) stays in place when scrolled sideways."""
        if scroll_x <= 0:
            return strip.crop_extend(0, width, style)
        pinned = self._columns[0][2] + 2 * PAD
        return Strip.join([strip.crop_extend(0, pinned, style),
                           strip.crop_extend(pinned + scroll_x, scroll_x + width, style)])

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x = int(self.scroll_offset.x)
        if y == 0:
            base = self.get_component_rich_style("fast-table--header")
            return self._cropped(Strip(self._line(self._header(), base)), scroll_x, width, base)
        row = int(self.scroll_offset.y) + y - 1
        if row >= len(self._order):
            return Strip.blank(width, self.rich_style)
        key = self._order[row]
        variant = 2 if row == self.cursor_row else 1 if row % 2 else 0
        strip = self._strips.get((key, variant))
        if strip is None:
            base = self.rich_style
            if variant == 2:
                base = base + self.get_component_rich_style("fast-table--cursor")
            elif variant == 1:
                base = base + self.get_component_rich_style("fast-table--even")
            strip = Strip(self._line(self._shown[key], base))
            self._strips[(key, variant)] = strip
        return self._cropped(strip, scroll_x, width, self.rich_style)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    # --- the cursor --------------------------------------------------------------------------
    def watch_cursor_row(self, old: int, new: int) -> None:
        height = max(self.size.height - 1, 1)
        top = int(self.scroll_offset.y)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + height:
            self.scroll_to(y=new - height + 1, animate=False)
        self.refresh()

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor_row + step)

    def action_page(self, step: int) -> None:
        self.move_cursor(self.cursor_row + step * max(self.size.height - 2, 1))

    def action_scroll_top(self) -> None:
        self.move_cursor(0)

    def _column_edges(self) -> list[int]:
        """Where each column after the pinned one starts, as a sideways scroll offset."""
        edges, x = [], 0
        for _, _, width in self._columns[1:]:
            edges.append(x)
            x += width + 2 * PAD
        return edges

    def action_scroll_right(self) -> None:
        """One column to the right (the ID column stays)."""
        x = int(self.scroll_x)
        nxt = next((e for e in self._column_edges() if e > x), x)
        self.scroll_to(x=min(nxt, self.max_scroll_x), animate=False)

    def action_scroll_left(self) -> None:
        x = int(self.scroll_x)
        self.scroll_to(x=max([e for e in self._column_edges() if e < x] or [0]), animate=False)

    def action_home(self) -> None:
        """The first row and the first columns: back to where the table starts."""
        self.scroll_to(x=0, animate=False)
        self.move_cursor(0)

    def action_scroll_bottom(self) -> None:
        self.move_cursor(len(self._order) - 1)

    def action_select(self) -> None:
        key = self.selected_key()
        if key is not None:
            self.post_message(RowChosen(self, key))

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(int(self.scroll_offset.y) + event.y - 1)
            if event.chain == 2:
                self.action_select()
