"""A heartbeat series drawn as Textual's Sparkline draws it, except a constant one: that is a level line
at mid-height (Sparkline puts it on the bottom bar, one value on the top), as its range `v to v` says."""

from __future__ import annotations

from rich.color import Color, blend_rgb
from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.renderables.sparkline import Sparkline as Drawn
from textual.widgets import Sparkline


class Series(Sparkline):
    def render(self) -> RenderResult:
        drawn = super().render()
        data = self.data or []
        if not data or min(data) != max(data) or not isinstance(drawn, Drawn):
            return drawn
        low, high = drawn.min_color.color, drawn.max_color.color
        mid = Color.from_triplet(blend_rgb(low.get_truecolor(), high.get_truecolor(), 0.5)) if low and high else None
        bars, height, width = Drawn.BARS, self.size.height, self.size.width
        level = (len(bars) * height - 1) // 2  # the bar segment half way up, counted from the bottom

        def row(i: int) -> str:  # row i from the bottom
            return " " if level < i * len(bars) else "█" if level >= (i + 1) * len(bars) else bars[level % len(bars)]

        return Text("\n".join(row(i) * width for i in reversed(range(height))), style=Style(color=mid), end="")
