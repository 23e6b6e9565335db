"""The drill screen: choose, preflight live, arm, type the target to confirm, watch, abort, read the verdict.

Keys: ↑/↓ scenario, ←/→ target, Enter arms (then type the target's name and Enter to start), Escape or
``a`` aborts a running drill (rollback at once) or closes the screen otherwise.  The screen owns no drill
logic: it renders the events of the :class:`actions.drill.Drill` action run by the same
:class:`~console.runner.Runner` as ``--action drill`` — its preflight re-run on every change of the
cluster (``Runner.check``) until the operator confirms.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input, OptionList, RichLog, Static
from textual.widgets.option_list import Option

from actions.drill import Drill, DrillParams
from actions.drill_checks import targets
from actions.drill_scenarios import SCENARIOS
from console.action import Action, Plan
from console.config import Config
from console.events import Check, Event, Finished, Observation, PlanItem, ProbeSample
from console.report import render
from console.runner import Runner
from console.snapshot import SnapshotBuilder
from screens.base import OpsScreen, work
from screens.event_text import line

STRIP_PROBES = ("http-prod", "db-write", "http-staging")


class DrillScreen(OpsScreen):
    DEFAULT_CSS = """
    DrillScreen { layout: vertical; }
    #drill-top { height: 12; }
    #scenarios { width: 44; height: 100%; }
    #drill-side { width: 1fr; padding: 0 1; }
    #target { height: 1; }
    #preflight { height: auto; }
    #plan { height: auto; color: $text-muted; }
    #confirm { display: none; margin: 0 1; }
    #confirm.-shown { display: block; }
    #strip { height: 3; padding: 0 1; }
    #counters { height: 1; padding: 0 1; }
    #verdict { height: auto; padding: 0 1; }
    #verdict.-pass { background: $success-darken-2; }
    #verdict.-fail { background: $error-darken-2; }
    #events { height: 1fr; border: round $panel; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "escape", "abort / back"),
        Binding("a", "abort", "abort", show=False),
        Binding("left", "target(-1)", "target", show=False),
        Binding("right", "target(1)", "target", show=False),
        Binding("enter", "arm", "arm"),
    ]

    def __init__(self, config: Config, live: Any) -> None:
        super().__init__()
        self.config = config
        self.live = live
        self.scenario = next(iter(SCENARIOS))
        self.target_index = 0
        self.drill: Drill | None = None
        self.runner: Runner | None = None
        self.builder = SnapshotBuilder(config)
        self.running = False
        self.done = False
        self.allowed = False
        self.checks: dict[str, Check] = {}
        self.samples: dict[str, list[bool]] = {p: [] for p in STRIP_PROBES}
        self.failed_writes = 0
        self.down_since: float | None = None
        self.downtime = 0.0
        self.result: Finished | None = None
        self._recheck: Any = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="drill-top"):
            yield OptionList(
                *[Option(f"{s.name}  {s.title}", id=s.name) for s in SCENARIOS.values()], id="scenarios"
            )
            with Vertical(id="drill-side"):
                yield Static(id="target")
                yield Static(id="preflight")
                yield Static(id="plan")
        yield Input(placeholder="type the target's name to start (Escape: back)", id="confirm")
        yield Static(id="strip")
        yield Static(id="counters")
        yield Static(id="verdict")
        yield RichLog(id="events", wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = 0
        options.focus()
        self.live.store.subscribe(self._store_changed)
        self._preflight()

    def _store_changed(self, changed: set[str]) -> None:
        """The preflight is live: any change re-runs the checks (coalesced to one run per 0.5 s)."""
        if self.running or self.done or self._recheck is not None or self.drill is None:
            return
        self._recheck = self.set_timer(0.5, self._run_recheck)

    def _run_recheck(self) -> None:
        self._recheck = None
        if not self.running and not self.done and self.drill is not None:
            work(self, self._checks_only(), "preflight", "preflight")

    async def _checks_only(self) -> None:
        assert self.runner is not None
        self.allowed = await self.runner.check()
        self._render_plan()

    # ---- choosing -------------------------------------------------------------------------------------

    def _targets(self) -> list[str]:
        snap = self.builder.build(self.live.store)
        return targets(SCENARIOS[self.scenario], snap, self.config)

    @property
    def target(self) -> str | None:
        choices = self._targets()
        return choices[self.target_index % len(choices)] if choices else None

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if self.running or event.option.id is None or event.option.id == self.scenario:
            return
        self.scenario = event.option.id
        self.target_index = 0
        self._preflight()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter on the list (which owns Enter while focused) arms, as Enter elsewhere does."""
        event.stop()
        self.action_arm()

    def action_target(self, step: int) -> None:
        if self.running:
            return
        self.target_index += step
        self._preflight()

    def _preflight(self) -> None:
        """Run the preflight for the current choice, live (a new choice cancels the previous run)."""
        self.allowed = False
        self.checks.clear()
        self.query_one("#target", Static).update(
            Text.assemble(("target ◀ ", "bold"), (str(self.target), "bold cyan"), " ▶")
        )
        self.query_one("#preflight", Static).update("preflight: running…")
        work(self, self._run_preflight(), "preflight", "preflight")

    async def _run_preflight(self) -> None:
        if self.drill is not None:
            await self.drill.close()
        self.drill = Drill(self.config, DrillParams(self.scenario, self.target))
        self.runner = Runner(self.drill, self._event, live=self.live)
        self.allowed = await self.runner.check()
        self._render_plan()

    def _render_plan(self) -> None:
        assert self.drill is not None
        plan = self.drill.plan_info
        self.query_one("#plan", Static).update(
            f"blast radius: {plan.get('blast_radius')}\nfault: {plan.get('fault')}\n"
            f"rollback: {plan.get('rollback')}\n"
            + ("Enter arms the drill." if self.allowed else "Refused: fix the failed checks first.")
        )

    def _render_checks(self) -> None:
        text = Text()
        for c in self.checks.values():
            mark, style = ("✔", "green") if c.ok else (("✘", "bold red") if c.critical else ("!", "yellow"))
            text.append(f"{mark} ", style)
            text.append(f"{c.name}: ", "bold")
            text.append(f"{c.why}\n")
        self.query_one("#preflight", Static).update(text)

    # ---- arming and running ---------------------------------------------------------------------------

    def action_arm(self) -> None:
        if self.running or self.done:
            return
        if not self.allowed or self.drill is None:
            self.notify("the preflight refused this drill", severity="error")
            return
        box = self.query_one("#confirm", Input)
        box.placeholder = f"type {self.drill.target} to start the drill (Escape: back)"
        box.add_class("-shown")
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.drill is None or event.value.strip() != self.drill.target:
            self.notify("that is not the target's name: nothing started", severity="warning")
            return
        event.input.remove_class("-shown")
        event.input.disabled = True
        self.running = True
        self.query_one(OptionList).disabled = True
        work(self, self._execute(), "drill", "drill")

    async def _execute(self) -> None:
        assert self.runner is not None

        async def typed(action: Action[object], plan: Plan) -> bool:
            return True  # the target's name was typed

        try:
            self.result = await self.runner.run(typed)
        finally:
            self.running = False
            self.done = True

    def action_abort(self) -> None:
        if self.running and self.runner is not None:
            self.runner.abort()
            self.query_one(RichLog).write("ABORT requested: rolling back now")

    def action_escape(self) -> None:
        box = self.query_one("#confirm", Input)
        if self.running:
            self.action_abort()
        elif box.has_class("-shown"):
            box.remove_class("-shown")
            box.value = ""
            self.query_one(OptionList).focus()
        else:
            self.dismiss(None)

    async def on_unmount(self) -> None:
        self.live.store.unsubscribe(self._store_changed)
        if self.drill is not None and not self.running:
            await self.drill.close()

    # ---- events ---------------------------------------------------------------------------------------

    def _event(self, e: Event) -> None:
        log = self.query_one(RichLog)
        stamp = time.strftime("%H:%M:%S", time.localtime(e.at))
        if isinstance(e, Check):
            self.checks[e.name] = e
            self._render_checks()
        elif isinstance(e, PlanItem) and not self.running:
            pass  # the plan box shows it (the live preflight re-plans on every change)
        elif isinstance(e, ProbeSample):
            self._sample(e)
        elif isinstance(e, Observation):
            log.write(f"{stamp}  {e.subject}: {e.what}")
            self._counters()
        elif isinstance(e, Finished):
            self._finished(e)
        elif (text := line(e)) is not None:
            log.write(text)

    def _sample(self, s: ProbeSample) -> None:
        if s.probe in self.samples:
            self.samples[s.probe].append(s.ok)
        if s.probe == "db-write" and not s.ok:
            self.failed_writes += 1
        if s.probe == "http-prod":
            if not s.ok and self.down_since is None:
                self.down_since = s.at
            elif s.ok and self.down_since is not None:
                self.downtime += s.at - self.down_since
                self.down_since = None
        width = max(10, self.size.width - 16)
        text = Text()
        for probe in STRIP_PROBES:
            text.append(f"{probe:<13}", "bold")
            for ok in self.samples[probe][-width:]:
                text.append("█" if ok else "▁", "green" if ok else "bold red")
            text.append("\n")
        self.query_one("#strip", Static).update(text)
        self._counters()

    def _counters(self) -> None:
        snap = self.builder.build(self.live.store)
        down = self.downtime + ((time.time() - self.down_since) if self.down_since else 0.0)
        nodes = " ".join(f"{n.name}:{'Ready' if n.ready else 'NotReady'}" for n in snap.nodes)
        primary = snap.database.primary if snap.database else "?"
        self.query_one("#counters", Static).update(
            f"HTTP downtime {down:.1f} s · failed writes {self.failed_writes} · primary {primary} · {nodes}"
        )

    def _finished(self, e: Finished) -> None:
        box = self.query_one("#verdict", Static)
        lines = [f"{e.verdict}: {e.summary}"]
        brief = render(e.report, "text")  # the SLO table, as the runner screen and headless print it
        if brief:
            lines.append(brief)
        if e.report_path:
            lines.append(f"report: {e.report_path}")
        lines.append("Escape: back to the dashboard")
        box.update("\n".join(lines))
        box.set_class(e.verdict == "PASS", "-pass")
        box.set_class(e.verdict not in ("PASS", "PLAN"), "-fail")
        app = self.app
        if hasattr(app, "show_last_drill"):
            app.show_last_drill()
