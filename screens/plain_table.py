"""PlainTable: Textual's DataTable with a fast path for the cells a dashboard panel holds.

Why: DataTable renders every cell through Rich's general layout (``Padding`` inside ``Styled``, wrapped,
split and cropped into lines) — about 0.3 ms a cell here, 2.5–3 ms for one 9-column line.  Its caches
are keyed on the table's update counter and focus state, so any cell update and every focus change
re-renders each visible line: on the 500-node lab a Tab between two panels repainted ~26 lines, 60–100 ms
of the key's answer.  Panel cells are one line of plain text, so a cell is one segment: the text padded
to the column's width, in the style DataTable would give it.

Exactly equivalent or not taken: the fast path is used only for a row of height 1 whose cell formats
(by DataTable's own formatter, markup and emoji included) to a ``Text`` without spans and without tabs
or control characters; anything else — headers, row labels, styled text — goes through DataTable's own
``_render_cell``.  ``tests/test_plain_table.py`` renders the same rows through both and compares the
strips, cursor, zebra stripes and focus included, so a Textual release that changes the private method
this overrides fails a test instead of drawing something else (``pyproject.toml`` also keeps Textual
below 9).
"""

from __future__ import annotations

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets._data_table import CellCacheKey  # private, as the method this overrides

SegmentLines = list[list[Segment]]


def _is_plain(text: str) -> bool:
    """No tab or control character: Rich would expand or strip those, so their width is not their length."""
    return text.isprintable()


class PlainTable(DataTable[str]):
    """A DataTable whose one-line plain-text cells render as one segment each (see the module docstring)."""

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> SegmentLines:
        if row_index < 0 or column_index < 0:  # the header and row labels: few lines, DataTable's way
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        if row_key is None or column_key is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cache_key: CellCacheKey = (
            row_key,
            column_key,
            base_style,
            cursor,
            hover,
            self._show_hover_cursor,
            self._update_count,
            self._pseudo_class_state,
        )
        cached = self._cell_render_cache.get(cache_key)
        if cached is not None:
            return cached
        row = self.rows.get(row_key)
        cells = self._get_row_renderables(row_index).cells
        cell = cells[column_index] if column_index < len(cells) else None
        if (
            row is None
            or row.height != 1
            or not isinstance(cell, Text)
            or cell.spans
            or cell.style
            or not _is_plain(cell.plain)
        ):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        component_style, post_style = self._get_styles_to_render_cell(
            False,
            False,
            row_index < self.fixed_rows or column_index < self.fixed_columns,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        style = base_style + Style.from_meta({"row": row_index, "column": column_index})
        style = style + component_style + post_style
        pad = self.cell_padding
        inner = max(0, width - 2 * pad)
        text = " " * pad + set_cell_size(cell.plain, inner) + " " * pad
        lines = [[Segment(set_cell_size(text, width), style)]]
        self._cell_render_cache[cache_key] = lines
        return lines
