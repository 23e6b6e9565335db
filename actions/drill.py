"""Failover drills: preflight, steady-state probes, one fault, observation, recovery, rollback, verdict.

One :class:`Drill` action serves the TUI's drill screen and ``--action drill`` through the runner
(``console/runner.py``): the preflight and the plan are shown live, the operator confirms (the target's
name typed in the TUI, ``--yes`` headless), the runner journals and takes the lock, then
:meth:`Drill.execute` does the rest.  The scenarios (what breaks, what "recovered" means) are objects in
``actions/drill_scenarios.py``; the report is built in ``actions/drill_report.py``.

Safety, in order: the preflight refuses an unhealthy cluster; the Lease lock refuses a second console; the
journal records each fault *before* it is applied, so a console killed at any moment leaves enough for
``--action recover`` to undo it; an abort (Escape, ``a``, Ctrl-C, a lost lock) skips straight to the
rollback.  Every rollback step is idempotent (power on a running server, uncordon a schedulable node).
Unlike other actions the drill always rolls back — a fault is undone whether the service recovered or not
— and then waits for full steady state before it judges.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actions.drill_checks import blast_radius, node_of, preflight, targets
from actions.drill_report import build_report, save_report, state_summary
from actions.drill_scenarios import SCENARIOS, Scenario, undo
from actions.steady import until_steady
from console.action import Action, Outcome, Plan, param
from console.clients.kube import patch
from console.config import Config
from console.drain import evict_all, evictable
from console.errors import Aborted, ActionFailed, OpsError, UsageError, Verdict
from console.events import Check, Event, Log, Observation, PlanItem, ProbeSample, StepFinished, StepStarted
from console.model import Snapshot
from console.probes import DbWriter, SteadyProbes
from console.runner import Run
from console.snapshot import SnapshotBuilder


@dataclass
class Timeline:
    entries: list[dict[str, Any]]

    def add(self, at: float, subject: str, what: str) -> None:
        self.entries.append({"at": at, "subject": subject, "what": what})


@dataclass(frozen=True)
class DrillParams:
    scenario: str | None = param("--scenario", "what to break", choices=tuple(SCENARIOS), required=True)
    target: str | None = param("--target", "node, instance or pooler pod (default: the scenario's usual one)")
    mode: str = param(
        "--mode", "node-down: power off (hard) or shut down (graceful)", "hard", choices=("hard", "graceful")
    )
    force: bool = param("--force", "run past failed non-critical checks (logged)", False, tui=False)
    baseline_s: float = 2.0  # probes before the fault (not a flag)


def _facts(snap: Snapshot, config: Config) -> dict[str, str]:
    """The observable facts a drill's timeline is made of; a change in one is an Observation."""
    facts: dict[str, str] = {}
    for n in snap.nodes:
        facts[f"node {n.name}"] = ("Ready" if n.ready else "NotReady") + (
            " cordoned" if n.unschedulable else ""
        )
        if n.hetzner_status:
            facts[f"server {n.name}"] = n.hetzner_status
    if snap.load_balancer:
        for t in snap.load_balancer.targets:
            for port, state in t.health:
                facts[f"target {t.name}:{port}"] = state
    db = snap.database
    if db:
        facts["cnpg phase"] = db.phase
        facts["cnpg primary"] = db.primary
        for m in db.members:
            facts[f"instance {m.name}"] = f"{m.role} on {m.node}, {'ready' if m.ready else 'not ready'}"
    watched = {config.namespaces.prod, config.namespaces.staging, config.database.namespace}
    for p in snap.pods:
        if p.namespace in watched and not (db and any(m.name == p.name for m in db.members)):
            state = "terminating" if p.terminating else ("ready" if p.ready else p.phase.lower())
            facts[f"pod {p.namespace}/{p.name}"] = f"{state} on {p.node or 'no node'}"
    for w in snap.workloads:
        if w.namespace in watched:
            facts[f"{w.kind} {w.namespace}/{w.name}"] = f"{w.ready}/{w.desired} ready"
    return facts


class Drill(Action[DrillParams]):
    name = "drill"
    title = "Failover drill"
    description = (
        "a failover drill (--scenario, --target): preflight, probes, fault, recovery, rollback, report"
    )
    Params = DrillParams
    abortable = True  # an interrupt sets the abort flag; the drill rolls back on its own

    def __init__(self, config: Config, params: DrillParams) -> None:
        super().__init__(config, params)
        self.scenario: Scenario | None = SCENARIOS.get(params.scenario or "")
        self.target: str | None = params.target
        self.mode = params.mode
        self.checks: list[Check] = []
        self.plan_info: dict[str, Any] = {}
        self.timeline = Timeline([])
        self.samples: list[ProbeSample] = []
        self.marks: dict[str, float] = {}
        self.before: dict[str, Any] = {}
        self.forced: list[str] = []
        self.builder = SnapshotBuilder(config)
        self.action_id: str | None = None
        self.live: Any = None
        self._run: Run | None = None
        self._changed: asyncio.Event | None = None

    # ---- what the runner and the screens ask --------------------------------------------------------

    @property
    def lock_label(self) -> str:
        return f"drill {self.params.scenario}"

    def confirm_word(self) -> str | None:
        return self.target

    def unconfirmed(self) -> str:
        return f"{self.params.scenario} on {self.target} changes the cluster: add --yes to run it"

    def journal_params(self) -> dict[str, Any]:
        return {
            "scenario": self.params.scenario,
            "target": self.target,
            "mode": self.mode,
            "forced": self.forced,
        }

    def validate(self) -> None:
        if not self.params.scenario:
            raise UsageError("--action drill needs --scenario (see --help)")
        if self.scenario is None:
            raise UsageError(f"unknown scenario {self.params.scenario!r}: one of {', '.join(SCENARIOS)}")

    # ---- DrillState: what the scenarios read and do -------------------------------------------------

    def snapshot(self) -> Snapshot:
        assert self.live is not None
        return self.builder.build(self.live.store)

    def emit(self, event: Event) -> None:
        assert self._run is not None
        self._run.emit(event)

    def applied(self, key: str, **data: Any) -> None:
        assert self._run is not None
        self._run.applied("fault", key, **data)

    def evictable(self, node: str) -> list[tuple[str, str]]:
        return evictable(self.live.store.items("pods"), node)

    async def api(self) -> Any:
        assert self._run is not None
        return await self._run.kube()

    @property
    def aborted(self) -> bool:
        return self._run is not None and self._run.aborted

    # ---- preflight and plan -------------------------------------------------------------------------

    async def _sources(self, run: Run) -> None:
        self._run = run
        if self.live is None:
            self.live = await run.sources()
            self._changed = asyncio.Event()
            self.live.store.subscribe(self._on_store)

    def _on_store(self, changed: set[str]) -> None:
        if self._changed is not None:
            self._changed.set()

    async def preflight(self, run: Run) -> list[Check]:
        assert self.scenario is not None
        await self._sources(run)
        snap = self.snapshot()
        if self.target is None:
            valid = targets(self.scenario, snap, self.config)
            self.target = valid[0] if valid else None
        self.checks = preflight(self.scenario, self.target, snap, self.config)
        self.forced = [c.name for c in self.checks if not c.ok and not c.critical]
        return self.checks

    async def plan(self, run: Run) -> Plan:
        assert self.scenario is not None
        snap, s = self.snapshot(), self.scenario
        radius = blast_radius(s, self.target, snap, self.config) if self.target else ""
        self.plan_info = {
            "scenario": s.name,
            "title": s.title,
            "target": self.target,
            "mode": self.mode if s.name == "node-down" else None,
            "blast_radius": radius,
            "fault": s.fault,
            "rollback": s.rollback,
            "probes": f"every {self.config.drill.probe_interval_s:g} s: prod and staging health, "
            "a database write",
            "slo": self.config.slo.model_dump(),
        }
        item = PlanItem(
            "step", f"plan: {s.fault} on {self.target}; blast radius: {radius}", self.target or ""
        )
        return Plan([item], report={"plan": self.plan_info})

    # ---- execute ------------------------------------------------------------------------------------

    async def _until(
        self, what: str, pred: Callable[[], bool], timeout: float, abortable: bool = True
    ) -> bool:
        """Wait until ``pred()`` holds (re-checked on every store change and at least twice a second)."""
        assert self._changed is not None
        deadline = time.monotonic() + timeout
        while True:
            if pred():
                return True
            if abortable and self.aborted:
                raise Aborted(what)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(0.5, left))

    async def execute(self, run: Run) -> Outcome:
        """Probe, fault, observe, recover, roll back, judge, report.  Never raises: the verdict says."""
        assert self.scenario is not None and self.target is not None
        self._run, self.action_id = run, run.action_id
        t0 = time.time()
        hetzner = self.live.sources.get("hetzner")
        if hetzner is not None and hasattr(hetzner, "boost"):
            hetzner.boost(self.config.drill.hetzner_poll_s)
        self.before = state_summary(self.snapshot(), self.config)
        observer = asyncio.ensure_future(self._observe())
        probes: SteadyProbes | None = None
        verdict, summary = Verdict.FAIL, ""
        try:
            probes = await self._start_probes()
            await self._until("baseline", lambda: False, self.params.baseline_s)
            self.marks["fault"] = time.time()
            self.emit(StepStarted("fault", f"{self.scenario.fault} ({self.target})"))
            self.emit(StepFinished("fault", True, await self.scenario.apply(self)))
            await self._recovery()
        except Aborted as exc:
            verdict, summary = Verdict.ABORTED, f"aborted ({exc}); rolled back"
            self.emit(Log("warning", f"abort: {exc} — rolling back now"))
        except Exception as exc:  # a failed step: roll back, then report FAIL with the reason
            summary = f"{type(exc).__name__}: {exc}"
            self.emit(Log("error", f"drill step failed: {summary} — rolling back"))
        try:
            await self.rollback(run)
            ok = await self._steady(run)
            self.marks["steady"] = time.time()
            if not ok:
                summary = summary or "the cluster did not return to steady state in time"
            await self._until("tail", lambda: False, 1.0, abortable=False)
        except Exception as exc:
            summary = (summary + "; " if summary else "") + f"rollback: {type(exc).__name__}: {exc}"
            ok = False
        finally:
            if probes is not None:
                await probes.stop()
            observer.cancel()
            if hetzner is not None and hasattr(hetzner, "boost"):
                hetzner.boost(None)
        report = build_report(self, t0, verdict_hint=verdict)
        if verdict is not Verdict.ABORTED:
            verdict = Verdict.PASS if report.verdict == "PASS" and ok and not summary else Verdict.FAIL
            summary = summary or report.summary
        report = report.with_verdict(verdict.value)
        path = save_report(report)
        await self._bill(report.outages.get("http-prod", []))
        return Outcome(verdict, summary or report.summary, report, str(path))

    async def _bill(self, windows: list[dict[str, float]]) -> None:
        """The production outage the drill measured, into the month's SLO ledger (a ledger that cannot be
        written is said, never the drill's failure)."""
        from console import slo_ledger

        seconds = sum(w["seconds"] for w in windows)
        try:
            await slo_ledger.add(await self.api(), self.config.drill.lock_namespace, {"drill": seconds})
        except OpsError as exc:
            self.emit(Log("warning", f"the SLO ledger was not updated: {exc.sentence()}"))

    async def _start_probes(self) -> SteadyProbes:
        assert self.scenario is not None
        d = self.config.drill
        fault_node = node_of(self.scenario, self.target or "", self.snapshot())
        aliases = {n.name: n.ssh_host for n in self.config.nodes}
        via = self.config.database.tunnel_via
        if fault_node and aliases.get(fault_node) == via:
            via = next(a for n, a in aliases.items() if n != fault_node)
        writer = DbWriter(self.config, await self.api(), via, self.action_id or "drill")
        try:
            await writer.prepare()
        except Exception as exc:
            await writer.close()
            raise ActionFailed(
                f"the database write probe cannot start: {type(exc).__name__}: {exc}"
            ) from None

        def on_sample(s: ProbeSample) -> None:
            self.samples.append(s)
            self.emit(s)
            if self._changed is not None:
                self._changed.set()

        probes = SteadyProbes(self.config, writer, on_sample, d.probe_interval_s, d.probe_timeout_s)
        probes.start()
        return probes

    async def _observe(self) -> None:
        assert self._changed is not None and self.scenario is not None
        prev = _facts(self.snapshot(), self.config)
        old_primary = self.before.get("primary")
        while True:
            self._changed.clear()
            await self._changed.wait()
            await asyncio.sleep(0.05)  # coalesce a burst of watch events into one look
            snap = self.snapshot()
            now = _facts(snap, self.config)
            at = time.time()
            for key in sorted(set(prev) | set(now)):
                if prev.get(key) != now.get(key):
                    what = now.get(key, "gone")
                    self.timeline.add(at, key, what)
                    self.emit(Observation(key, what))
            prev = now
            if "fault" not in self.marks:
                continue
            self.scenario.observed(self, snap, at)
            db = snap.database
            if (
                "new_primary" not in self.marks
                and db is not None
                and db.primary
                and old_primary
                and db.primary != old_primary
                and any(m.name == db.primary and m.ready for m in db.members)
            ):
                self.marks["new_primary"] = at
                self.emit(Observation("cnpg primary", f"{db.primary} is the new primary (was {old_primary})"))

    async def drain(self, node: str) -> None:
        """The maintenance path: CNPG moves a primary off the cordoned node (asked to, if it does not), then
        every pod is evicted through the Eviction API (PodDisruptionBudgets honoured)."""
        db = self.config.database

        def primary_here() -> bool:
            snap = self.snapshot()
            return snap.database is not None and any(
                m.name == snap.database.primary and m.node == node for m in snap.database.members
            )

        if primary_here():
            self.emit(Log("info", f"the primary runs on {node}: waiting for CNPG to switch over"))
            if not await self._until("primary off the node", lambda: not primary_here(), 60):
                database = self.snapshot().database
                members = database.members if database else ()
                replica = next((m.name for m in members if m.node != node), None)
                if replica is None:
                    raise ActionFailed(f"no instance off {node} to switch over to")
                self.emit(
                    Log("warning", f"CNPG did not move the primary: requesting a switchover to {replica}")
                )
                await patch(
                    await self.api(),
                    f"/apis/postgresql.cnpg.io/v1/namespaces/{db.namespace}/clusters/{db.cluster}/status",
                    {"status": {"targetPrimary": replica}},
                )
                if not await self._until("switchover", lambda: not primary_here(), 60):
                    raise ActionFailed(f"the primary is still on {node} after a switchover request")

        def stop() -> bool:
            if self.aborted:
                raise Aborted("drain")
            return False

        await evict_all(
            await self.api(), self.evictable(node), 120, lambda m: self.emit(Log("info", m)), stop
        )
        await self._until("pods gone", lambda: not self.evictable(node), 120)

    async def rollback(self, run: Run) -> str:
        """Undo every applied fault of this drill (idempotent), journaling each."""
        done = []
        for data in reversed(run.applied_steps()):
            done.append(await undo(self.config, await run.kube(), data, run.emit))
            run.step("rollback", "rolled-back", {"key": data.get("key")})
        return "; ".join(d for d in done if d) or "nothing to undo"

    async def undo(self, run: Run, data: dict[str, Any]) -> str:
        return await undo(self.config, await run.kube(), data, run.emit)

    async def _recovery(self) -> None:
        assert self.scenario is not None
        scenario = self.scenario
        self.emit(StepStarted("recovery", "waiting for the service to recover"))
        limit = self.config.slo.recovered_within_min * 60
        ok = await self._until("recovery", lambda: scenario.recovered(self, self.snapshot()), limit)
        self.marks["recovered"] = time.time()
        self.emit(
            StepFinished("recovery", ok, "service recovered" if ok else f"not recovered within {limit:g} s")
        )
        if not ok:
            raise ActionFailed(f"the service did not recover within {limit:g} s")

    async def _steady(self, run: Run) -> bool:
        self.emit(StepStarted("steady", "waiting for full steady state"))

        def journal(name: str) -> None:
            run.step("respread", "done", {"deployment": name})

        gaps = await until_steady(
            self.live, self.config, await run.kube(), self.config.drill.steady_timeout_s, run.emit,
            self.builder, journal,
        )  # fmt: skip
        self.emit(
            StepFinished("steady", not gaps, "steady state" if not gaps else "still: " + "; ".join(gaps))
        )
        return not gaps

    async def close(self) -> None:
        if self.live is not None:
            self.live.store.unsubscribe(self._on_store)
