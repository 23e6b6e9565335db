"""The Textual app: mounts the dashboard, binds keys, runs the sources as a worker — and owns no logic.

Data flows one way: sources -> :class:`~console.store.ClusterStore` -> coalesced notification ->
snapshot -> the panels that depend on what changed.  The only timer refreshes the panels' "N s ago"
labels; data is never redrawn on a clock.

Keys: ``tab``/``shift+tab`` or ``1``–``9``, ``0`` move between panels, ``/`` filters every panel's rows,
``?`` shows help, ``ctrl+p`` opens the command palette (every action; mutating ones are hidden and refused
in a read-only session), ``r`` looks again at the slow sources (Borg, PostgreSQL), ``d`` a drill, ``D`` the
drill reports, ``q`` quits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, ComposeResult, SuspendNotSupported, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.reactive import Reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer, Input, Static
from textual.worker import Worker, WorkerState

from console.config_file import ConfigHead
from console.gc_policy import FreezeSurvivors, settle
from console.model import Snapshot
from console.store import ClusterStore
from screens.base import OpsScreen, work, worker_failed
from screens.help import HelpScreen
from screens.panels import PANELS, Panel

if TYPE_CHECKING:
    from console.config import Config

# Store keys that are not Kubernetes kinds, by the source that writes them.
EXTRA_SOURCES = {
    "probes": "http",
    "dns": "dns",
    "replication": "postgres",
    "backups": "borg",
    "hetzner": "hetzner",
    "journal": "console",
    "metrics": "metrics",
}


MIN_BUILD_INTERVAL_S = 0.05


def _import_clients() -> None:
    import importlib

    # The Kubernetes client (the heaviest import) and what starts the sources; LiveSources.start imports
    # the rest in a thread of its own while the watches list.
    for name in ("console.sources.kube", "console.sources.borg", "console.live"):
        importlib.import_module(name)


class Banner(Static):
    DEFAULT_CSS = """
    Banner { height: 1; background: $accent; color: $text; padding: 0 1; }
    Banner.-real { background: $error; }
    """


class Summary(Static):
    """The verdict and the first figures, always on screen under the banner (screens/panels.summary_text)."""

    DEFAULT_CSS = """
    Summary { height: auto; padding: 0 1; background: $boost; text-style: bold; }
    Summary.-critical { color: $error; }
    Summary.-degraded { color: $warning; }
    Summary.-healthy { color: $success; }
    """


class LastDrill(Static):
    """The newest drill report's one-line summary (hidden until there is one)."""

    DEFAULT_CSS = """
    LastDrill { height: 1; padding: 0 1; display: none; }
    LastDrill.-shown { display: block; }
    LastDrill.-fail { color: $error; }
    """


class FilterInput(Input):
    DEFAULT_CSS = (
        "FilterInput { display: none; height: 3; margin: 0 1; } FilterInput.-shown { display: block; }"
    )


class DashboardScreen(OpsScreen):
    """The dashboard's own screen: a focus change repaints what it changes, not the whole screen.

    Textual's ``Screen.focused`` is a repainting reactive: every Tab re-rendered every visible panel (a full
    update, more than the rest of the key's work).  The widgets that gain and lose focus repaint
    themselves (their ``:focus`` styles change), and
    the bindings still refresh (the watcher is Screen's own), so nothing on screen depends on the rest.
    """

    focused: Reactive[Widget | None] = Reactive(None, repaint=False)


class KeyFooter(Footer):
    """Textual's Footer, rebuilt only when the keys it shows change.

    The stock Footer removes and re-mounts every key on each bindings update, which every focus change
    sends; moving between panels (all tables, the same keys) changed nothing it shows and cost a layout
    pass of the screen per Tab.
    """

    _shown: tuple[tuple[str, str, str, bool, bool], ...] | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if not screen.app.app_focus:  # the stock Footer defers to the next update; so does the comparison
            super().bindings_changed(screen)
            return
        shown = tuple(
            (b.key, b.action, b.description, enabled, b.show)
            for (_, b, enabled, _tooltip) in screen.active_bindings.values()
        )
        if shown == self._shown:
            return
        self._shown = shown
        super().bindings_changed(screen)


class Dashboard(App[None]):
    TITLE = "opsconsole"
    CSS = """
    #panels { padding: 0 1; }
    #panels.-wide { layout: grid; grid-size: 2; grid-columns: 1fr 1fr; grid-rows: auto; grid-gutter: 0 1; }
    #panels.-max Panel { display: none; }
    #panels.-max Panel.-max { display: block; height: 1fr; max-height: 100%; }
    #panels.-max Panel.-max DataTable { max-height: 100%; height: 1fr; }
    """
    # From this many columns the panels stand in two columns (a panel's table wants ~75 of them).
    WIDE_COLUMNS = 160
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "help"),
        Binding("slash", "filter", "filter"),
        Binding("r", "refresh", "refresh"),
        Binding("d", "drill", "drill"),
        Binding("D", "reports", "reports", show=False),
        Binding("z", "maximise", "zoom"),
        Binding("escape", "clear_filter", "clear filter", show=False),
        Binding("tab", "focus_next", "next panel", show=False),
        Binding("shift+tab", "focus_previous", "previous panel", show=False),
        # 1 … 9 and 0 jump to the first ten panels; the rest by tab or the command palette.
        *[Binding(str((i + 1) % 10), f"panel({i})", show=False) for i in range(min(len(PANELS), 10))],
    ]

    def __init__(
        self,
        config: Config | None,
        read_only: bool = False,
        start_sources: bool = True,
        head: ConfigHead | None = None,
    ) -> None:
        """``config`` validated already, or None with ``head``: the first frame is painted from the head and
        the file validated right after it (console/config_file.py); a failure ends the app with
        ``config_error`` set (the CLI prints it, exit 2)."""
        super().__init__()
        assert config is not None or head is not None
        self.config: Config = config  # type: ignore[assignment]  # None only until _config_ready
        self.head = head
        self.config_error: str | None = None
        self.read_only = read_only
        self.store = ClusterStore()
        self.snapshot: Snapshot | None = None
        self.start_sources = start_sources
        self.filter_text = ""
        self.live: Any = None
        self._pending_keys: set[str] = set()
        self._build_timer: Timer | None = None
        self._last_build = 0.0
        self._build_cost = 0.0
        self._building = False
        self._gc: FreezeSurvivors | None = None
        self._builder: Any = None  # console.snapshot.SnapshotBuilder, made with the first build

    # ---- layout ---------------------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return DashboardScreen(id="_default")

    def compose(self) -> ComposeResult:
        if self.config is not None:
            c = self.config
            lab, cluster, context = c.lab is not None, c.cluster.name, c.kubernetes.context
        else:
            assert self.head is not None
            lab, cluster, context = self.head.lab, self.head.cluster, self.head.context
        kind = "LAB" if lab else "REAL CLUSTER"
        mode = "read-only" if self.read_only else "read-write"
        banner = Banner(f"{kind} · {cluster} · context {context} · {mode}", id="banner")
        banner.set_class(not lab, "-real")
        yield banner
        yield Summary("waiting for the first look…", id="summary")
        yield LastDrill(id="last-drill")
        yield FilterInput(placeholder="filter rows (Enter keeps it, Escape clears)", id="filter")
        with VerticalScroll(id="panels"):
            for panel_id in PANELS:
                yield Panel(panel_id)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.store.subscribe(self._changed)
        self._gc = FreezeSurvivors(asyncio.get_running_loop())
        self._gc.install()
        self.show_last_drill()
        self.set_interval(1.0, self._ages)  # age labels only
        self.query(Panel).first().table.focus()
        if self.config is not None:
            self._config_ready()
        else:
            self.call_after_refresh(self._validate)

    def _validate(self) -> None:
        work(self, self._load_config(), "config", "config")

    async def _load_config(self) -> None:
        from console.config_file import ConfigError

        head = self.head
        assert head is not None

        def load() -> Config:
            from console.config import load_config

            return load_config(head.path)

        try:
            self.config = await asyncio.to_thread(load)
        except ConfigError as exc:
            self.config_error = str(exc)
            self.exit(return_code=2)
            return
        self._config_ready()

    def _config_ready(self) -> None:
        """What needs the validated config: the recovery offer, then the live sources."""
        self._offer_recovery()
        if self.start_sources:
            # After the first paint: the client imports in _run_sources hold the GIL while they run, and
            # the frame should not wait for them.
            self.call_after_refresh(self._start_sources)

    def _start_sources(self) -> None:
        work(self, self._run_sources(), "sources", "live sources")

    async def _run_sources(self) -> None:
        # The client libraries are slow to import (kubernetes.aio, hcloud, asyncssh, psycopg): in threads,
        # after the first paint, so the event loop keeps answering keys meanwhile.
        await asyncio.to_thread(_import_clients)
        from console.live import LiveSources

        self.live = LiveSources(self.store, self.config)
        await self.live.start()
        settle()  # start-up's imports are done: collector back on, what they built frozen (gc_policy)

    # ---- data -> panels -------------------------------------------------------------------------------

    def _changed(self, changed: set[str]) -> None:
        """Coalesce: at most one snapshot per ``MIN_BUILD_INTERVAL_S``; changes meanwhile join the next.

        One change on a quiet cluster renders at once; 200 pod updates a second on 10,000 pods become
        twenty builds a second, so keys stay answered and the view stays well under a second behind.
        """
        for c in changed:
            if c.startswith("source:"):
                self._pending_keys.add(c.removeprefix("source:"))
            elif c in EXTRA_SOURCES:
                self._pending_keys.add(EXTRA_SOURCES[c])
            else:
                self._pending_keys.add(f"kube:{c}")
        if self._build_timer is not None or self._building:
            return
        # Builds may take at most a quarter of the interpreter: a build is followed by three times its cost
        # before the next, which leaves the keys and the repaints three quarters of it.
        interval = max(MIN_BUILD_INTERVAL_S, 3 * self._build_cost)
        wait = self._last_build + interval - time.monotonic()
        if wait > 0:
            self._build_timer = self.set_timer(wait, self._rebuild)
        else:
            self._rebuild()

    def _rebuild(self) -> None:
        self._build_timer = None
        if self._building:  # one build at a time: the changes wait for the next, scheduled when it ends
            return
        self._building = True
        self._last_build = time.monotonic()
        keys, self._pending_keys = self._pending_keys, set()
        work(self, self._build(keys), "build", "snapshot", exclusive=False)

    async def _build(self, keys: set[str]) -> None:
        """Build the snapshot in a thread, from a copy of the store taken here, then show it here.

        At scale a build is tens of milliseconds of Python; on the event loop every key that arrived meanwhile
        waited for all of it.  In a thread it yields the interpreter every few milliseconds (the GIL's switch
        interval), so keys and repaints go on while it runs.  The copy (``ClusterStore.view``) keeps the
        thread off the tables the watches write; the panels change only on this loop.
        """
        from console.snapshot import SnapshotBuilder  # first use after the first paint

        if self._builder is None:
            self._builder = SnapshotBuilder(self.config)
        builder = self._builder

        def timed_build(view: ClusterStore) -> tuple[Snapshot, float]:
            started = time.thread_time()
            snapshot = builder.build(view)
            return snapshot, time.thread_time() - started

        cpu = 0.0
        try:
            self.snapshot, cpu = await asyncio.to_thread(timed_build, self.store.view())
            shown = time.thread_time()
            self._show(keys)
            cpu += time.thread_time() - shown
        finally:
            self._building = False
            # The interpreter time the build took (its thread's and the panels' here), not its wall time:
            # the thread shares the interpreter with the loop, so its wall time grows with the loop's work,
            # and spacing builds by it kept the view up to 1.4 s behind at scale.
            self._build_cost = cpu
        if self._pending_keys:
            self._changed(set())

    def _show(self, keys: set[str] | None) -> None:
        """Re-render the panels whose sources changed (``None``: all of them, e.g. a new filter)."""
        if self.snapshot is None:
            return
        sources = {s.name: s for s in self.snapshot.sources}
        with self.batch_update(), contextlib.suppress(NoMatches):  # NoMatches: shutting down
            self._show_summary(self.snapshot)
            for panel in self.query(Panel):
                if keys is None or not panel.sources or any(s in keys for s in panel.sources):
                    panel.show(self.snapshot, sources, self.filter_text)

    def _show_summary(self, snap: Snapshot) -> None:
        from screens.panels import summary_text, verdict

        line = self.query_one(Summary)
        line.update(summary_text(snap), layout=False)
        state = verdict(snap)
        for name in ("critical", "degraded", "healthy"):
            line.set_class(state == name, f"-{name}")

    def on_resize(self, event: Any) -> None:
        with contextlib.suppress(NoMatches):
            self.query_one("#panels").set_class(event.size.width >= self.WIDE_COLUMNS, "-wide")

    def action_maximise(self) -> None:
        """``z``: the focused panel alone, as tall as the screen; ``z`` again brings the others back."""
        panels = self.query_one("#panels")
        focused = self.focused
        panel = next(
            (p for p in self.query(Panel) if focused is not None and p in focused.ancestors_with_self), None
        )
        if panels.has_class("-max") or panel is None:
            panels.remove_class("-max")
            for p in self.query(Panel):
                p.remove_class("-max")
            return
        panel.add_class("-max")
        panels.add_class("-max")

    def _ages(self) -> None:
        with contextlib.suppress(NoMatches):  # shutting down: the panels' children are already gone
            for panel in self.query(Panel):
                if panel.updated_at is not None:
                    panel.refresh_age()

    # ---- keys -----------------------------------------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.read_only))

    def action_panel(self, index: int) -> None:
        panels = list(self.query(Panel))
        if 0 <= index < len(panels):
            panels[index].table.focus()
            panels[index].scroll_visible()

    def action_filter(self) -> None:
        box = self.query_one(FilterInput)
        box.add_class("-shown")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one(FilterInput)
        if box.has_class("-shown") or self.filter_text:
            box.value = ""
            box.remove_class("-shown")
            self.filter_text = ""
            self._show(None)
            self.query(Panel).first().table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if not isinstance(event.input, FilterInput):  # a screen's own box (a runner's form, a drill's)
            return
        self.filter_text = event.value.strip().lower()
        self._show(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not isinstance(event.input, FilterInput):
            return
        if not event.value:
            event.input.remove_class("-shown")
        self.query(Panel).first().table.focus()

    def action_refresh(self) -> None:
        if self.live is not None:
            for name in ("borg", "postgres"):
                self.live.refresh(name)
            self.notify("looking again at Borg and PostgreSQL", timeout=3)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette: every action this session may run, and the panels."""
        yield from super().get_system_commands(screen)
        from actions.registry import ACTIONS

        for action in ACTIONS.values():
            if action.mutating and self.read_only:
                continue  # a read-only session neither shows nor runs it
            yield SystemCommand(action.title, action.description, lambda a=action.name: self.start_action(a))
        for i, (panel_id, spec) in enumerate(PANELS.items()):
            yield SystemCommand(
                f"Go to {spec[0].split(' (')[0]}",
                f"panel {i + 1} ({panel_id})",
                lambda i=i: self.action_panel(i),
            )
        yield SystemCommand("Drill reports", "every saved report; Enter reads one (D)", self.action_reports)
        yield SystemCommand("Filter rows", "type to filter every panel (/)", self.action_filter)
        yield SystemCommand(
            "Refresh slow sources", "look again at Borg and PostgreSQL now (r)", self.action_refresh
        )

    def start_action(self, name: str, initial: dict[str, Any] | None = None) -> None:
        """An action from the palette or a panel's row (``initial``: the row as its target): its runner
        screen, or the drill's or recovery's own."""
        from actions.registry import ACTIONS
        from console.runner import read_only_refusal

        cls = ACTIONS[name]
        reason = read_only_refusal(cls, self.read_only)
        if reason:
            self.notify(reason, severity="error", timeout=6)
            return
        if self.config is None:
            self.notify("still reading the config: try again in a moment", timeout=4)
            return
        if name == "status":
            self.action_refresh()
        elif name == "drill":
            if self.live is None:
                self.notify("the live sources are still starting: try again in a moment", timeout=4)
                return
            from screens.drill import DrillScreen

            self.push_screen(DrillScreen(self.config, self.live))
        elif name == "recover":
            work(self, self._recover_or_rebuild(), "recover", "recover")
        else:
            from screens.runner import RunnerScreen

            self.push_screen(RunnerScreen(self.config, cls, self.read_only, initial))

    def _kube_api(self) -> Any:
        api = getattr(self.live, "kube_api", None)
        if api is None:
            self.notify("the Kubernetes API is not connected yet: try again in a moment", timeout=4)
        return api

    def open_detail(self, panel: str, key: str) -> None:
        """Enter on a row: the object behind it (describe, events, YAML; a pod's logs)."""
        from console.detail import ref_for
        from screens.detail import DetailScreen

        db_ns = self.config.database.namespace if self.config is not None else ""
        ref = ref_for(panel, key, self.snapshot, db_ns)
        if ref is None:
            self.notify(f"{key}: no Kubernetes object behind this row", timeout=4)
            return
        api = self._kube_api()
        if api is None:
            return
        if not self.is_screen_installed("detail"):
            self.install_screen(DetailScreen(api, ref, self.snapshot, self.store.objects), "detail")
            self.push_screen("detail")
            return
        screen = self.get_screen("detail")
        assert isinstance(screen, DetailScreen)
        self.push_screen(screen)
        screen.show(api, ref, self.snapshot)

    def open_logs(self, panel: str, key: str) -> None:
        from console.detail import ref_for
        from screens.logs import LogScreen

        if self.config is None:
            return
        ref = ref_for(panel, key, self.snapshot, self.config.database.namespace)
        api = self._kube_api()
        if ref is not None and ref.kind == "Pod" and ref.namespace and api is not None:
            self.push_screen(LogScreen(api, ref.namespace, ref.name))

    def open_psql(self) -> None:
        """``p`` on the Database panel: psql on the primary, the terminal handed over until it exits."""
        api = self._kube_api()
        if api is not None and self.config is not None:
            work(self, self._psql(api), "psql", "psql on the primary")

    async def _psql(self, api: Any) -> None:
        import os

        from console.errors import OpsError
        from console.psql import open_psql

        try:
            session = await open_psql(api, self.config, dict(os.environ))
        except OpsError as exc:
            self.notify(exc.sentence(), severity="error", timeout=8)
            return
        try:
            with self.suspend():
                print(f"psql on {session.where} — \\q returns to the console", flush=True)
                proc = await asyncio.create_subprocess_exec(*session.argv, env=session.env)
                await proc.wait()  # the loop runs on: the SSH tunnel carries psql's traffic
        except SuspendNotSupported:
            self.notify("this terminal cannot be handed over (psql needs a real terminal)", severity="error")
        finally:
            await session.close()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            worker_failed(self, event.worker)

    # ---- drills and recovery --------------------------------------------------------------------------

    def show_last_drill(self) -> None:
        from actions.drill_report import latest_report

        report = latest_report()
        line = self.query_one(LastDrill)
        if report is None:
            return
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(report.get("started", 0)))
        line.update(
            f"last drill {when}: {report.get('verdict')} — {report.get('summary')} · {report.get('path')}"
        )
        line.add_class("-shown")
        line.set_class(report.get("verdict") != "PASS", "-fail")

    def _offer_recovery(self) -> bool:
        """The recovery screen when the journal holds unfinished actions (True: it was offered)."""
        from console.journal import Journal

        journal = Journal()
        try:
            unfinished = journal.unfinished()
        finally:
            journal.close()
        if unfinished:
            from screens.recover import RecoverScreen

            self.push_screen(RecoverScreen(self.config, unfinished, self.read_only))
        return bool(unfinished)

    async def _recover_or_rebuild(self) -> None:
        """Unfinished actions first (their recovery screen); else, when the cluster's server is gone from
        the project, the disaster recovery's runner screen; else say there is nothing to do."""
        if self._offer_recovery():
            return
        from actions.disaster import is_disaster

        try:
            gone = await asyncio.to_thread(is_disaster, self.config)
        except Exception as exc:  # no token, unreachable API: say so, do not guess
            self.notify(f"cannot ask the Hetzner API: {exc}", severity="error", timeout=8)
            return
        if gone:
            from actions.recover import Recover
            from screens.runner import RunnerScreen

            self.push_screen(RunnerScreen(self.config, Recover, self.read_only))
        else:
            self.notify(
                "nothing to recover: no unfinished action, and the cluster's server exists", timeout=5
            )

    def action_drill(self) -> None:
        self.start_action("drill")

    def action_reports(self) -> None:
        from screens.reports import ReportsScreen

        self.push_screen(ReportsScreen())

    async def on_unmount(self) -> None:
        self.store.unsubscribe(self._changed)
        if self._gc is not None:
            self._gc.uninstall()
        if self.live is not None:
            await self.live.stop()
