"""PlainTable draws exactly what Textual's DataTable draws, character by character and style by style.

Its fast path overrides a private DataTable method (see screens/plain_table.py); these tests render the
same rows through both tables — cursor, zebra stripes, focus and blur, cells that take the fast path and
cells that must not (markup, emoji codes, tabs, wide characters, a cell wider than its column) — and
compare every line.  A Textual release that changes what the override relies on fails here.
"""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from screens.plain_table import PlainTable, plain_text

ROWS = [
    ("k3s-cp1", "Ready", "control-plane", "-", "running", "20"),
    ("k3s-w1", "NotReady", "agent", "NoSchedule", "off", "0"),
    ("[b]bold[/b]", "a [link] that is not markup", ":thumbs_up: emoji", "tab\there", "wide 漢字", ""),
    ("scale-node-499", "Ready", "agent", "-", "running", "1234567"),
    ("x" * 40, "y", "z", "-", "?", "3"),
]
COLUMNS = ("node", "status", "roles", "taints", "hetzner", "pods")


class _Twins(App[None]):
    CSS = "DataTable { height: 8; }"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield DataTable(id="stock", cursor_type="row", zebra_stripes=True)
            yield PlainTable(id="plain", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for table in self.query(DataTable):
            for i, name in enumerate(COLUMNS):
                table.add_column(name, key=str(i))
            for i, row in enumerate(ROWS):
                table.add_row(*row, key=f"r{i}")


def _cells(strip: Strip) -> list[tuple[str, object]]:
    """One (character, style) per character: equal pictures, however the segments are split."""
    return [(ch, seg.style) for seg in strip for ch in seg.text if not seg.control]


def _lines(table: DataTable[str]) -> list[list[tuple[str, object]]]:
    width = table.size.width
    table._pseudo_class_state = table.get_pseudo_class_state()
    return [_cells(table._render_line(y, 0, width, table.rich_style)) for y in range(table.size.height)]


async def _compare(app: _Twins) -> None:
    stock = app.query_one("#stock", DataTable)
    plain = app.query_one("#plain", PlainTable)
    assert stock.size == plain.size
    for y, (ours, theirs) in enumerate(zip(_lines(plain), _lines(stock), strict=True)):
        assert ours == theirs, f"line {y} differs"


async def test_plain_table_draws_what_data_table_draws() -> None:
    app = _Twins()
    async with app.run_test(size=(120, 24)) as pilot:
        await pilot.pause()
        stock = app.query_one("#stock", DataTable)
        plain = app.query_one("#plain", PlainTable)
        app.set_focus(None)
        await pilot.pause()
        await _compare(app)  # neither focused
        for table in (stock, plain):
            table.move_cursor(row=2)
        await pilot.pause()
        await _compare(app)  # the cursor on the row of cells that must take DataTable's own path
        # Focus one, then the other: the focused picture of each against the other's.
        focused_stock, focused_plain = await _focused_pictures(pilot, stock, plain)
        assert focused_plain == focused_stock
        assert _lines(stock) != focused_stock  # blurred differs: the comparison can fail
        for table in (stock, plain):
            table.update_cell("r3", "5", "7")
            table.update_cell("r0", "1", "NotReady")
        await pilot.pause()
        focused_stock, focused_plain = await _focused_pictures(pilot, stock, plain)
        assert focused_plain == focused_stock


async def _focused_pictures(
    pilot: Any, stock: DataTable[str], plain: PlainTable
) -> tuple[list[list[tuple[str, object]]], list[list[tuple[str, object]]]]:
    """Each table's lines while it has the focus."""
    stock.focus()
    await pilot.pause()
    focused_stock = _lines(stock)
    plain.focus()
    await pilot.pause()
    return focused_stock, _lines(plain)


async def test_plain_table_draws_hover_and_other_cursors_as_data_table_does() -> None:
    app = _Twins()
    async with app.run_test(size=(120, 24)) as pilot:
        await pilot.pause()
        app.set_focus(None)
        tables = (app.query_one("#stock", DataTable), app.query_one("#plain", PlainTable))
        for cursor_type in ("row", "cell", "column"):
            for table in tables:
                table.cursor_type = cursor_type
                table.move_cursor(row=3, column=1)
                table.hover_coordinate = Coordinate(1, 2)
                table._show_hover_cursor = True
            await pilot.pause()
            await _compare(app)


async def test_plain_table_takes_the_fast_path_for_plain_rows() -> None:
    """The override is used (a cell is one segment) — else the equality above proves nothing."""
    app = _Twins()
    async with app.run_test(size=(120, 24)) as pilot:
        await pilot.pause()
        plain = app.query_one("#plain", PlainTable)
        here = Coordinate(0, 0)
        _, fast = plain._render_line_in_row(RowKey("r0"), 0, plain.rich_style, here, here)
        assert [len(cell) for cell in fast] == [1] * (len(COLUMNS) + 1)  # the cells and the blank after
        assert fast[0][0].text.strip() == "k3s-cp1"
        _, head = plain._render_line_in_row(plain._header_row_key, 0, plain.rich_style, here, here)
        assert [len(cell) for cell in head] == [1] * (len(COLUMNS) + 1)
        assert head[0][0].text.strip() == "node"
        _, slow = plain._render_line_in_row(RowKey("r2"), 0, plain.rich_style, here, here)  # markup
        assert "".join(s.text for s in slow[0]).strip() == "bold"
        assert plain_text("[b]x[/b]") is None and plain_text("tab\there") is None
        assert plain_text("80:healthy 443:healthy") == "80:healthy 443:healthy"
        assert plain_text("a [link] is markup") is None
