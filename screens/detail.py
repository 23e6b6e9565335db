"""Enter on a row: the object's describe, its live Events and its YAML in three tabs; ``l`` opens a pod's
logs.  Escape returns to the dashboard, whose cursor never moved.  The reading is console/detail.py's."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane

from console.detail import (
    EVENT_COLUMNS,
    Description,
    ObjectRef,
    Section,
    describe,
    event_row,
    watch_events,
    whole_yaml,
)
from console.model import Snapshot
from screens.base import OpsScreen, work


def section_table(section: Section) -> Table:
    table = Table(title=section.title, title_justify="left", expand=False, show_edge=False, pad_edge=False)
    for col in section.columns:
        table.add_column(col, overflow="fold")
    for row in section.rows:
        table.add_row(*row)
    if not section.rows:
        table.add_row("none", *[""] * (len(section.columns) - 1))
    return table


class DetailScreen(OpsScreen):
    DEFAULT_CSS = """
    DetailScreen #detail-title { height: 1; background: $primary; color: $text; padding: 0 1; }
    DetailScreen VerticalScroll { height: 1fr; }
    DetailScreen DataTable { height: 1fr; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("d", "tab('describe')", "describe"),
        Binding("e", "tab('events')", "events"),
        Binding("y", "tab('yaml')", "yaml"),
        Binding("l", "logs", "logs"),
    ]

    def __init__(
        self, api: Any, ref: ObjectRef, snapshot: Snapshot | None, objects: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.objects = objects  # the live sources' watch cache: the object without a round trip
        self.api = api
        self.ref = ref
        self.snapshot = snapshot
        self.description: Description | None = None
        self.events: dict[str, tuple[str, ...]] = {}
        self._yaml_shown = False
        self.yaml: str | None = None  # the YAML tab's text, once read

    def compose(self) -> ComposeResult:
        yield Static(self.ref.title, id="detail-title")
        with TabbedContent(initial="describe"):
            with TabPane("Describe", id="describe"), VerticalScroll():
                yield Static("reading…", id="detail-describe")
            with TabPane("Events", id="events"):
                yield DataTable(id="detail-events", cursor_type="row", zebra_stripes=True)
            with TabPane("YAML", id="yaml"), VerticalScroll():
                yield Static("reading…", id="detail-yaml")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#detail-events", DataTable)
        for i, col in enumerate(EVENT_COLUMNS):
            table.add_column(col, key=str(i))
        self._start()

    def show(self, api: Any, ref: ObjectRef, snapshot: Snapshot | None) -> None:
        """Another row's object in this screen (the app keeps one, installed: composing a new screen and
        its tabs for each Enter cost most of the time to the first frame)."""
        self.api, self.ref, self.snapshot = api, ref, snapshot
        self.description, self.events, self._yaml_shown, self.yaml = None, {}, False, None
        self.query_one("#detail-title", Static).update(ref.title)
        self.query_one("#detail-describe", Static).update("reading…")
        self.query_one("#detail-yaml", Static).update("reading…")
        self.query_one("#detail-events", DataTable).clear()
        self.query_one(TabbedContent).active = "describe"
        self._start()

    def _start(self) -> None:
        work(self, self._load(), "detail", f"reading {self.ref.title}")
        work(self, self._watch_events(), "events", f"the events of {self.ref.title}")

    def on_screen_suspend(self) -> None:
        self.workers.cancel_group(self, "events")  # no watch for a screen nobody looks at

    def on_screen_resume(self) -> None:
        if self.description is not None:  # back from the logs on top of it: watch again
            work(self, self._watch_events(), "events", f"the events of {self.ref.title}")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.ref.kind == "Pod" if action == "logs" else True

    async def _load(self) -> None:
        self.description = await describe(self.api, self.ref, self.snapshot, self.objects)
        self.query_one("#detail-describe", Static).update(
            Group(*(section_table(s) for s in self.description.sections))
        )
        if self.query_one(TabbedContent).active == "yaml":
            self._show_yaml()

    def _show_yaml(self) -> None:
        """The highlighted YAML, read and made when its tab is first shown (highlighting costs a frame's
        time)."""
        if self.description is not None and not self._yaml_shown:
            self._yaml_shown = True
            work(self, self._read_yaml(self.description), "yaml", f"the YAML of {self.ref.title}")

    async def _read_yaml(self, description: Description) -> None:
        text = await whole_yaml(self.api, description)
        if description is self.description:  # not another row's by now
            self.yaml = text
            self.query_one("#detail-yaml", Static).update(Syntax(text, "yaml", word_wrap=True))

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "yaml":
            self._show_yaml()

    async def _watch_events(self) -> None:
        table = self.query_one("#detail-events", DataTable)
        async for kind, event in watch_events(self.api, self.ref):
            uid = str((event.get("metadata") or {}).get("uid") or (event.get("metadata") or {}).get("name"))
            if kind == "DELETED":
                self.events.pop(uid, None)
            else:
                self.events[uid] = event_row(event)
            table.clear()
            for key, row in sorted(self.events.items(), key=lambda kv: kv[1][0], reverse=True):
                table.add_row(*row, key=key)

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_logs(self) -> None:
        from screens.logs import LogScreen

        if self.ref.kind == "Pod" and self.ref.namespace:
            self.app.push_screen(LogScreen(self.api, self.ref.namespace, self.ref.name, self._containers()))

    def _containers(self) -> list[str]:
        obj = self.description.obj if self.description else {}
        return [c["name"] for c in (obj.get("spec") or {}).get("containers") or []]
