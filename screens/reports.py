"""Drill reports (key ``D``, palette "Drill reports"): every saved report, newest first; Enter reads one.

The reports are the files ``actions/drill_report.py`` saves in the state directory (JSON for scripts,
Markdown for people); this screen lists the JSON's headline and shows the Markdown as written, so what an
operator reads here is what they would attach to a post-mortem.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Markdown, Static

from actions.drill_report import reports_dir
from screens.base import OpsScreen


def saved_reports() -> list[tuple[Path, dict[str, Any]]]:
    """(JSON path, report) for every readable drill report, newest first."""
    d = reports_dir()
    out = []
    for path in d.glob("drill-*.json") if d.exists() else []:
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # a half-written or foreign file is not a report
    return sorted(out, key=lambda x: float(x[1].get("started", 0)), reverse=True)


class ReportScreen(OpsScreen):
    """One report's Markdown."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "back")]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        md = self.path.with_suffix(".md")
        text = md.read_text() if md.exists() else f"```\n{self.path.read_text()}\n```"
        yield Static(str(md if md.exists() else self.path), id="report-path")
        with VerticalScroll():
            yield Markdown(text, id="report-text")
        yield Footer()


class ReportsScreen(OpsScreen):
    DEFAULT_CSS = "#reports-empty { padding: 1 2; }"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("enter", "open", "read"),
    ]

    def compose(self) -> ComposeResult:
        self.reports = saved_reports()
        yield Static(
            f"{len(self.reports)} drill reports in {reports_dir()}"
            if self.reports
            else f"no drill reports yet in {reports_dir()} (press d on the dashboard to run a drill)",
            id="reports-empty",
        )
        table: DataTable[str] = DataTable(id="reports", cursor_type="row")
        table.add_columns("started", "scenario", "target", "verdict", "summary")
        for path, r in self.reports:
            table.add_row(
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(r.get("started", 0)))),
                str(r.get("scenario", "?")),
                str(r.get("target", "?")),
                str(r.get("verdict", "?")),
                str(r.get("summary", ""))[:100],
                key=str(path),
            )
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(event.row_key.value)

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            self._open(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _open(self, key: str | None) -> None:
        if key:
            self.app.push_screen(ReportScreen(Path(key)))
