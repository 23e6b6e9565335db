"""The Textual app: mounts the dashboard, binds keys, runs the sources as workers — and owns no logic.

Data flows one way: sources -> :class:`~console.store.ClusterStore` -> coalesced notification ->
snapshot -> the panels that depend on what changed.  The only timer refreshes the panels' "N s ago"
labels; data is never redrawn on a clock.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from console.config import Config
from console.model import Snapshot
from console.snapshot import build
from console.store import ClusterStore
from screens.panels import PANELS, Panel

HELP = (
    "tab/shift+tab move between panels · ↑/↓ move in a panel · ctrl+p command palette · ? this help · q quit"
)


class Banner(Static):
    DEFAULT_CSS = "Banner { height: 1; background: $accent; color: $text; padding: 0 1; }"


class Dashboard(App[None]):
    TITLE = "opsconsole"
    CSS = "VerticalScroll { padding: 0 1; }"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "help"),
        Binding("tab", "focus_next", "next panel", show=False),
        Binding("shift+tab", "focus_previous", "previous panel", show=False),
    ]

    def __init__(self, config: Config, read_only: bool = False, start_sources: bool = True) -> None:
        super().__init__()
        self.config = config
        self.read_only = read_only
        self.store = ClusterStore()
        self.snapshot: Snapshot | None = None
        self.start_sources = start_sources
        self._sources: list[Any] = []
        self._kube_api: Any = None

    def compose(self) -> ComposeResult:
        kind = "LAB" if self.config.lab else "REAL CLUSTER"
        mode = "read-only" if self.read_only else "read-write"
        yield Banner(
            f"{kind} · {self.config.cluster.name} · context {self.config.kubernetes.context} · {mode}",
            id="banner",
        )
        with VerticalScroll():
            for panel_id in PANELS:
                yield Panel(panel_id)
        yield Footer()

    def on_mount(self) -> None:
        self.store.subscribe(self._changed)
        self.set_interval(1.0, self._ages)  # age labels only
        if self.start_sources:
            self.run_worker(
                self._run_sources(),
                exclusive=True,
                group="sources",
                exit_on_error=False,
                description="live sources",
            )

    async def _run_sources(self) -> None:
        # Imported here, off the first paint's critical path (kubernetes.aio and hcloud are heavy).
        from console.model import SourceState
        from console.sources.hetzner import HetznerSource
        from console.sources.http import HttpSource
        from console.sources.kube import KubeSource, api_client

        kube_api = self._kube_api = await api_client(
            self.config.kubernetes.kubeconfig or None, self.config.kubernetes.context
        )
        self._sources = [KubeSource(self.store, kube_api), HttpSource(self.store, self.config)]
        try:
            self._sources.append(HetznerSource(self.store, self.config))
        except Exception as exc:
            self.store.set_source("hetzner", SourceState.UNREACHABLE, str(exc))
        for source in self._sources:
            source.start()
        from console.sources.kube import weak_db_credentials

        self.store.set_extra("weak_db_credentials", await weak_db_credentials(kube_api, self.config))

    def _changed(self, changed: set[str]) -> None:
        self.snapshot = build(self.store, self.config, self.config.kubernetes.context)
        sources = {s.name: s for s in self.snapshot.sources}
        with self.batch_update():
            for panel in self.query(Panel):
                if (
                    not panel.sources
                    or any(s in changed or f"source:{s}" in changed for s in panel.sources)
                    or ("kube:pods" in panel.sources and "probes" in changed)
                ):
                    panel.show(self.snapshot, sources)

    def _ages(self) -> None:
        for panel in self.query(Panel):
            if panel.updated_at is not None:
                panel.refresh_age()

    def action_help(self) -> None:
        self.notify(HELP, title="keys", timeout=8)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.notify(f"{event.worker.description}: {event.worker.error}", severity="error", timeout=10)

    async def on_unmount(self) -> None:
        for source in self._sources:
            await source.stop()
        if self._kube_api is not None:
            await self._kube_api.close()
