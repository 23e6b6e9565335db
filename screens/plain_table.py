"""PlainTable: Textual's DataTable with a fast path for the rows a dashboard panel holds.

Why: DataTable renders every cell through Rich's general layout (markup parsed, ``Padding`` inside
``Styled``, wrapped, split and cropped into lines), the dearest part of a paint.  Its caches are keyed on
the table's update counter and focus state, and a focus change clears them, so every Tab re-renders each
visible line of the two tables it moves between — most of the key's answer at scale (bench/dashboard.py
--scale).  A panel's row is one line of plain text per cell, so a cell
is one segment — its text padded to the column's width, in the style DataTable would give it — and a
cell's text is worked out once per distinct value, not once per paint.

Exactly equivalent or not taken: the fast path is used only for a row (the header too) of height 1,
in a table without fixed rows, fixed columns or row labels, whose every cell is a string that
DataTable's own formatter (markup and emoji codes included) turns into unstyled text without tabs or
control characters; anything else — styled or multi-line cells, row labels — goes through DataTable's
own ``_render_line_in_row``.  ``tests/test_plain_table.py`` renders the same rows through both, cursor,
hover, zebra stripes and focus included, and compares every character and its style, so a Textual
release that changes the private method overridden here fails a test instead of drawing something else
(``pyproject.toml`` also keeps Textual below 9).
"""

from __future__ import annotations

from functools import lru_cache

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.color import Color
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets._data_table import default_cell_formatter  # private, as the method overridden
from textual.widgets.data_table import Column, RowKey

SegmentLines = list[list[Segment]]


@lru_cache(maxsize=16384)
def plain_text(value: object) -> str | None:
    """The text DataTable shows for a one-line cell holding ``value``, or None if it is not plain text.

    Cached: a panel's cells repeat ("Ready", "agent", node names), and formatting parses markup.
    """
    if not isinstance(value, str):
        return None
    text = default_cell_formatter(value, wrap=False, height=1)
    if not isinstance(text, Text) or text.spans or text.style or not text.plain.isprintable():
        return None  # tabs and control characters are expanded or dropped by Rich: not their length
    return text.plain


def _plain_label(label: Text) -> str | None:
    """A column label's text, if DataTable would draw it as plain text."""
    if label.spans or label.style or label.justify or not label.plain.isprintable():
        return None
    return label.plain


class PlainTable(DataTable[str]):
    """A DataTable whose plain one-line rows render as one segment per cell (see the module docstring)."""

    def _render_line_in_row(
        self,
        row_key: RowKey,
        line_no: int,
        base_style: Style,
        cursor_location: Coordinate,
        hover_location: Coordinate,
    ) -> tuple[SegmentLines, SegmentLines]:
        def stock() -> tuple[SegmentLines, SegmentLines]:
            return super(PlainTable, self)._render_line_in_row(
                row_key, line_no, base_style, cursor_location, hover_location
            )

        header = row_key is self._header_row_key
        row = self.rows.get(row_key)
        if (
            (self.header_height if header else None if row is None else row.height) != 1
            or line_no != 0
            or self.fixed_rows
            or self.fixed_columns
            or (self._labelled_row_exists and self.show_row_labels)
        ):
            return stock()
        cursor_type = self.cursor_type
        show_cursor = self.show_cursor
        show_hover = self._show_hover_cursor
        cache_key = (
            row_key,
            line_no,
            base_style,
            cursor_location,
            hover_location,
            cursor_type,
            show_cursor,
            show_hover,
            self._update_count,
            self._pseudo_class_state,
        )
        cached = self._row_render_cache.get(cache_key)
        if cached is not None:
            return cached
        columns = self.ordered_columns
        if header:
            texts = [_plain_label(column.label) for column in columns]
            row_index: int | None = -1
        else:
            values = self._data.get(row_key, {})
            texts = [plain_text(values.get(column.key)) for column in columns]
            row_index = self._row_locations.get(row_key)
        if row_index is None or any(text is None for text in texts):
            return stock()
        should_highlight = self._should_highlight
        styles_for = self._get_styles_to_render_cell
        fg_css = self.cursor_foreground_priority == "css"
        bg_css = self.cursor_background_priority == "css"
        row_style = self._get_row_style(row_index, base_style)
        pad = " " * self.cell_padding
        scrollable: SegmentLines = []
        for column_index, (column, text) in enumerate(zip(columns, texts, strict=True)):
            cell = Coordinate(row_index, column_index)
            component, post = styles_for(
                header,
                False,
                False,
                should_highlight(hover_location, cell, cursor_type),
                should_highlight(cursor_location, cell, cursor_type),
                show_cursor,
                show_hover,
                fg_css,
                bg_css,
            )
            style = row_style + Style.from_meta({"row": row_index, "column": column_index}) + component + post
            width = column.get_render_width(self)
            inner = set_cell_size(text or "", max(0, width - 2 * len(pad)))
            scrollable.append([Segment(set_cell_size(pad + inner + pad, width), style)])
        scrollable.append(
            [
                Segment(
                    " " * self._remaining_space(columns),
                    self._extend_style(row_index, row_style, cursor_location, hover_location),
                )
            ]
        )
        pair: tuple[SegmentLines, SegmentLines] = ([], scrollable)
        self._row_render_cache[cache_key] = pair
        return pair

    def _remaining_space(self, columns: list[Column]) -> int:
        table_width = sum(column.get_render_width(self) for column in columns) + self._row_label_column_width
        return max(0, int(self.size.width) - table_width)

    def _extend_style(
        self, row_index: int, row_style: Style, cursor_location: Coordinate, hover_location: Coordinate
    ) -> Style:
        """The style of the blank to the right of the last column, as DataTable's own row does it."""
        if self.cursor_type == "row":
            extend_style, _ = self._get_styles_to_render_cell(
                row_index == -1,
                False,
                False,
                self._should_highlight(hover_location, Coordinate(row_index or 0, 0), self.cursor_type),
                row_index == cursor_location.row,
                self.show_cursor,
                self._show_hover_cursor,
                False,
                False,
            )
            extend_style = row_style + extend_style
        elif row_style.bgcolor is not None:
            faded = Color.from_rich_color(row_style.bgcolor).blend(self.background_colors[1], factor=0.25)
            extend_style = Style.from_color(color=row_style.color, bgcolor=faded.rich_color)
        else:
            extend_style = Style.from_color(row_style.color, row_style.bgcolor)
        return extend_style + Style.from_meta({"row": row_index, "column": 0, "out_of_bounds": True})
