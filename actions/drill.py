"""Failover drills: preflight, steady-state probes, one fault, observation, recovery, rollback, verdict.

One :class:`Drill` serves the TUI's drill screen and ``--action drill``: :meth:`Drill.prepare` resolves the
target and runs the preflight (shown live), :meth:`Drill.execute` does the rest once the operator confirmed
(typed target name in the TUI, ``--yes`` headless).  Everything it learns is emitted as events
(:mod:`console.events`); the report is written at the end.

Safety, in order: the preflight refuses an unhealthy cluster; the Lease lock refuses a second console; the
journal records each fault *before* it is applied, so a console killed at any moment leaves enough for
:func:`actions.recover.recover` to undo it; :meth:`Drill.abort` (Escape, ``a``, Ctrl-C) skips straight to
the rollback.  Every rollback step is idempotent (power on a running server, uncordon a schedulable node).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actions.drill_checks import (
    SCENARIOS,
    CheckResult,
    Scenario,
    blast_radius,
    last_ok,
    node_of,
    preflight,
    spread_broken,
    steady_state,
    targets,
)
from actions.drill_report import build_report, save_report, state_summary
from console.clients.kube import STRATEGIC_PATCH, KubeError, delete, patch, rollout_restart
from console.config import Config
from console.drain import evict_all, evictable
from console.events import Check, Event, Finished, Log, Observation, ProbeSample, StepFinished, StepStarted
from console.journal import Journal, operator
from console.live import LiveSources
from console.lock import ClusterLock, LockHeld, holder_identity
from console.model import Snapshot
from console.probes import DbWriter, SteadyProbes
from console.snapshot import build
from console.store import ClusterStore

EXIT_OK, EXIT_FAIL, EXIT_REFUSED, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 3, 4, 130


class Aborted(Exception):
    """The operator aborted (or the lock was lost): go straight to the rollback."""


@dataclass
class DrillRequest:
    scenario: str
    target: str | None = None
    mode: str = "hard"  # node-down: hard (poweroff) | graceful (shutdown)
    force: bool = False  # run past failed non-critical checks (logged)
    baseline_s: float = 2.0  # probes before the fault


@dataclass
class Timeline:
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, at: float, subject: str, what: str) -> None:
        self.entries.append({"at": at, "subject": subject, "what": what})


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


class Drill:
    def __init__(
        self,
        config: Config,
        request: DrillRequest,
        emit: Callable[[Event], None],
        live: LiveSources | None = None,
        journal: Journal | None = None,
    ) -> None:
        if request.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {request.scenario!r}: one of {', '.join(SCENARIOS)}")
        self.config = config
        self.request = request
        self.scenario: Scenario = SCENARIOS[request.scenario]
        self.emit = emit
        self.live = live
        self._own_live = live is None
        self._own_journal = journal is None
        self.journal = journal or Journal()
        self.target: str | None = request.target
        self.checks: list[CheckResult] = []
        self.plan: dict[str, Any] = {}
        self.timeline = Timeline()
        self.samples: list[ProbeSample] = []
        self._abort = asyncio.Event()
        self._changed = asyncio.Event()
        self.action_id: str | None = None
        self.lock: ClusterLock | None = None
        self.marks: dict[str, float] = {}
        self.before: dict[str, Any] = {}
        self.forced: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- shared plumbing ------------------------------------------------------------------------------

    @property
    def store(self) -> ClusterStore:
        assert self.live is not None
        return self.live.store

    @property
    def api(self) -> Any:
        assert self.live is not None
        if self.live.kube_api is None:
            raise RuntimeError("the Kubernetes API is not reachable (kubeconfig)")
        return self.live.kube_api

    def snapshot(self) -> Snapshot:
        return build(self.store, self.config, self.config.kubernetes.context)

    def abort(self) -> None:
        """Stop at once and roll back (safe to call from a key binding or a signal handler)."""
        self._abort.set()
        self._changed.set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def _on_store(self, changed: set[str]) -> None:
        self._changed.set()

    async def _until(
        self, what: str, pred: Callable[[], bool], timeout: float, abortable: bool = True
    ) -> bool:
        """Wait until ``pred()`` holds (re-checked on every store change and at least twice a second)."""
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

    def _step(self, step: str, status: str, data: dict[str, Any] | None = None) -> None:
        if self.action_id is not None:
            self.journal.step(self.action_id, step, status, data)

    # ---- prepare: sources, target, plan, preflight ----------------------------------------------------

    async def start_sources(self) -> None:
        if self.live is None:
            self.live = LiveSources(ClusterStore(), self.config)
            await self.live.start()
            await self.live.synced(20.0)
        self.store.subscribe(self._on_store)

    async def lock_holder(self) -> str | None:
        """Who holds the cluster lock (None: free or expired)."""
        lock = self._lock()
        try:
            lease = await lock.peek()
        except KubeError as exc:
            return f"cannot read the cluster lock: {exc.message}"
        if lease is None or ClusterLock.expired(lease):
            return None
        return ClusterLock.describe(lease)

    def _lock(self) -> ClusterLock:
        d = self.config.drill
        holder = holder_identity(operator(), self.action_id or "preflight")
        return ClusterLock(
            self.api, d.lock_namespace, d.lock_name, holder, f"drill {self.scenario.name}", d.lease_duration_s
        )

    async def prepare(self) -> bool:
        """Sources up, target resolved, plan and preflight emitted; True when the drill may run."""
        await self.start_sources()
        return await self.check()

    async def check(self) -> bool:
        """The preflight and the plan, from the live state now (the TUI calls it again on every change)."""
        snap = self.snapshot()
        if self.target is None:
            valid = targets(self.scenario, snap, self.config)
            self.target = valid[0] if valid else None
        unfinished = self.journal.unfinished()
        holder = await self.lock_holder()
        self.checks = preflight(self.scenario, self.target, snap, self.config, holder)
        if unfinished:
            self.checks.append(
                CheckResult(
                    "no-unfinished-action",
                    False,
                    True,
                    f"{unfinished[0].action} {unfinished[0].id} did not finish: run `--action recover --yes`",
                )
            )
        for c in self.checks:
            self.emit(Check(c.name, c.ok, c.critical, c.why))
        self.plan = {
            "scenario": self.scenario.name,
            "title": self.scenario.title,
            "target": self.target,
            "mode": self.request.mode if self.scenario.name == "node-down" else None,
            "blast_radius": blast_radius(self.scenario, self.target or "", snap, self.config)
            if self.target
            else "",
            "fault": self.scenario.fault,
            "rollback": self.scenario.rollback,
            "probes": f"every {self.config.drill.probe_interval_s:g} s: prod and staging health, "
            "a database write",
            "slo": self.config.slo.model_dump(),
        }
        self.emit(
            Log(
                "info",
                f"plan: {self.plan['fault']} on {self.target}; blast radius: {self.plan['blast_radius']}",
            )
        )
        return self.allowed()

    def allowed(self) -> bool:
        critical = [c for c in self.checks if not c.ok and c.critical]
        soft = [c for c in self.checks if not c.ok and not c.critical]
        if critical:
            return False
        if soft and not self.request.force:
            return False
        self.forced = [c.name for c in soft]
        return True

    def refusal(self) -> str:
        failed = [c for c in self.checks if not c.ok]
        hint = "" if any(c.critical for c in failed) else " (non-critical: --force runs anyway, logged)"
        return "preflight refused the drill: " + "; ".join(f"{c.name}: {c.why}" for c in failed) + hint

    # ---- execute --------------------------------------------------------------------------------------

    async def execute(self) -> Finished:
        """Lock, probe, fault, observe, recover, roll back, judge, report.  Never raises."""
        assert self.target is not None
        t0 = time.time()
        self.action_id = self.journal.begin(
            "drill",
            {
                "scenario": self.scenario.name,
                "target": self.target,
                "mode": self.request.mode,
                "forced": self.forced,
            },
            operator(),
        )
        if self.forced:
            self._step("preflight", "forced", {"checks": self.forced})
            self.emit(Log("warning", f"--force: running past failed checks {', '.join(self.forced)}"))
        self.lock = self._lock()
        try:
            await self.lock.acquire()
        except (LockHeld, KubeError) as exc:
            text = str(exc) if isinstance(exc, LockHeld) else f"cannot take the cluster lock: {exc.message}"
            self.journal.finish(self.action_id, "refused", {"reason": text})
            return self._finish("REFUSED", EXIT_REFUSED, text, t0)
        self._step("lock", "acquired", {"holder": self.lock.holder})
        hetzner = self.live.sources.get("hetzner") if self.live else None
        if hetzner is not None and hasattr(hetzner, "boost"):
            hetzner.boost(self.config.drill.hetzner_poll_s)
        self.before = state_summary(self.snapshot(), self.config)
        observer = asyncio.ensure_future(self._observe())
        lost = asyncio.ensure_future(self._watch_lock())
        probes: SteadyProbes | None = None
        verdict, code, summary = "FAIL", EXIT_FAIL, ""
        try:
            probes = await self._start_probes()
            await self._until("baseline", lambda: False, self.request.baseline_s)
            self.marks["fault"] = time.time()
            await self._fault()
            await self._recovery()
        except Aborted as exc:
            verdict, code = "ABORTED", EXIT_ABORTED
            summary = f"aborted ({exc}); rolled back"
            self.emit(Log("warning", f"abort: {exc} — rolling back now"))
        except Exception as exc:  # a failed step: roll back, then report FAIL with the reason
            summary = f"{type(exc).__name__}: {exc}"
            self.emit(Log("error", f"drill step failed: {summary} — rolling back"))
        try:
            await self.rollback()
            ok = await self._steady()
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
            lost.cancel()
            if hetzner is not None and hasattr(hetzner, "boost"):
                hetzner.boost(None)
        report = build_report(self, t0, verdict_hint=verdict)
        if verdict != "ABORTED":
            verdict = "PASS" if report["verdict"] == "PASS" and ok and not summary else "FAIL"
            code = EXIT_OK if verdict == "PASS" else EXIT_FAIL
            summary = summary or report["summary"]
        report["verdict"] = verdict
        path = save_report(report)
        self.journal.finish(
            self.action_id,
            "done" if verdict != "ABORTED" else "aborted",
            {"verdict": verdict, "report": str(path)},
        )
        await self.lock.release()
        return self._finish(verdict, code, summary or report["summary"], t0, report, str(path))

    def _finish(
        self,
        verdict: str,
        code: int,
        summary: str,
        t0: float,
        report: dict[str, Any] | None = None,
        path: str | None = None,
    ) -> Finished:
        event = Finished(verdict, code, summary, report or {}, path)
        self.emit(event)
        return event

    async def _watch_lock(self) -> None:
        assert self.lock is not None
        await self.lock.lost.wait()
        self.emit(Log("error", "the cluster lock was lost: aborting"))
        self.abort()

    async def _start_probes(self) -> SteadyProbes:
        d = self.config.drill
        fault_node = node_of(self.scenario, self.target or "", self.snapshot())
        aliases = {n.name: n.ssh_host for n in self.config.nodes}
        via = self.config.database.tunnel_via
        if fault_node and aliases.get(fault_node) == via:
            via = next(a for n, a in aliases.items() if n != fault_node)
        writer = DbWriter(self.config, self.api, via, self.action_id or "drill")
        try:
            await writer.prepare()
        except Exception as exc:
            await writer.close()
            raise RuntimeError(
                f"the database write probe cannot start: {type(exc).__name__}: {exc}"
            ) from None

        def on_sample(s: ProbeSample) -> None:
            self.samples.append(s)
            self.emit(s)
            self._changed.set()

        probes = SteadyProbes(self.config, writer, on_sample, d.probe_interval_s, d.probe_timeout_s)
        probes.start()
        return probes

    async def _observe(self) -> None:
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
            if (
                "target_down" not in self.marks
                and "fault" in self.marks
                and self.scenario.name == "node-down"
            ):
                node = next((n for n in snap.nodes if n.name == self.target), None)
                if node is not None and not node.ready:
                    self.marks["target_down"] = at
            db = snap.database
            if (
                "new_primary" not in self.marks
                and "fault" in self.marks
                and db is not None
                and db.primary
                and old_primary
                and db.primary != old_primary
                and any(m.name == db.primary and m.ready for m in db.members)
            ):
                self.marks["new_primary"] = at
                self.emit(Observation("cnpg primary", f"{db.primary} is the new primary (was {old_primary})"))

    # ---- the faults and their rollbacks ---------------------------------------------------------------

    async def _fault(self) -> None:
        from console.clients.hetzner import server_action, server_id  # hcloud only where it is used

        s, target = self.scenario.name, self.target or ""
        self.emit(StepStarted("fault", f"{self.scenario.fault} ({target})"))
        db = self.config.database
        if s == "node-down":
            action = "poweroff" if self.request.mode == "hard" else "shutdown"
            sid = await server_id(self.config, target)
            self._step("fault", "fault-applied", {"key": "power", "node": target, "server_id": sid})
            result = await server_action(self.config, sid, action)
            self.emit(StepFinished("fault", True, f"server {target}: {action} {result}"))
        elif s == "node-drain":
            self._step("fault", "fault-applied", {"key": "cordon", "node": target})
            await patch(
                self.api, f"/api/v1/nodes/{target}", {"spec": {"unschedulable": True}}, STRATEGIC_PATCH
            )
            self.emit(Log("info", f"cordoned {target}"))
            await self._drain(target)
            self.emit(StepFinished("fault", True, f"{target} cordoned and drained"))
        elif s == "db-switchover":
            self._step("fault", "fault-applied", {"key": "switchover", "to": target})
            await patch(
                self.api,
                f"/apis/postgresql.cnpg.io/v1/namespaces/{db.namespace}/clusters/{db.cluster}/status",
                {"status": {"targetPrimary": target}},
            )
            self.emit(StepFinished("fault", True, f"switchover to {target} requested"))
        elif s == "db-primary-kill":
            self._step("fault", "fault-applied", {"key": "kill", "pod": target})
            await delete(self.api, f"/api/v1/namespaces/{db.namespace}/pods/{target}", grace_period_s=1)
            self.emit(StepFinished("fault", True, f"pod {target} deleted (grace 1 s)"))
        elif s == "pooler-kill":
            self._step("fault", "fault-applied", {"key": "kill", "pod": target})
            await delete(self.api, f"/api/v1/namespaces/{db.namespace}/pods/{target}")
            self.emit(StepFinished("fault", True, f"pod {target} deleted"))

    def _evictable(self, node: str) -> list[tuple[str, str]]:
        return evictable(self.store.items("pods"), node)

    async def _drain(self, node: str) -> None:
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
                    raise RuntimeError(f"no instance off {node} to switch over to")
                self.emit(
                    Log("warning", f"CNPG did not move the primary: requesting a switchover to {replica}")
                )
                await patch(
                    self.api,
                    f"/apis/postgresql.cnpg.io/v1/namespaces/{db.namespace}/clusters/{db.cluster}/status",
                    {"status": {"targetPrimary": replica}},
                )
                if not await self._until("switchover", lambda: not primary_here(), 60):
                    raise RuntimeError(f"the primary is still on {node} after a switchover request")

        def stop() -> bool:
            if self.aborted:
                raise Aborted("drain")
            return False

        await evict_all(self.api, self._evictable(node), 120, lambda m: self.emit(Log("info", m)), stop)
        await self._until("pods gone", lambda: not self._evictable(node), 120)

    async def rollback(self) -> None:
        """Undo every applied fault of this drill (idempotent), journaling each."""
        if self.action_id is None:
            return
        entry = self.journal.get(self.action_id)
        for step in reversed(entry.applied() if entry else []):
            await undo(self.config, self.api, step["data"], self.emit)
            self._step("rollback", "rolled-back", {"key": step["data"].get("key")})

    # ---- recovery and steady state --------------------------------------------------------------------

    def _recovered(self) -> bool:
        if not (last_ok(self.samples, "http-prod") and last_ok(self.samples, "db-write")):
            return False
        snap = self.snapshot()
        db = snap.database
        s, target = self.scenario.name, self.target
        old_primary = self.before.get("primary")
        if db is None:
            return False
        primary_ready = any(m.name == db.primary and m.ready for m in db.members)
        # Node scenarios recover when production is back at full capacity elsewhere, not merely answering:
        # that is what the pods' NoExecute tolerations decide (10 s patched, 300 s stock).
        prod = self.config.namespaces.prod
        capacity = all(w.ready >= w.desired for w in snap.workloads if w.namespace == prod)
        if s == "node-down":
            # Not before the failure has shown: a node is recovered from only once it was seen lost.
            seen_down = self.marks.get("target_down") is not None
            on_target = old_primary and any(m.name == old_primary and m.node == target for m in db.members)
            return seen_down and primary_ready and capacity and (not on_target or db.primary != old_primary)
        if s == "node-drain":
            return primary_ready and capacity and not self._evictable(target or "")
        if s == "db-switchover":
            return db.primary == target and primary_ready and "switchover" not in db.phase.lower()
        if s == "db-primary-kill":
            return db.primary != old_primary and primary_ready
        pooler = next(
            (
                w
                for w in snap.workloads
                if w.namespace == self.config.database.namespace and w.name == self.config.database.pooler
            ),
            None,
        )
        return (
            pooler is not None
            and pooler.ready >= pooler.desired
            and target not in {p.name for p in snap.pods}
        )

    async def _recovery(self) -> None:
        self.emit(StepStarted("recovery", "waiting for the service to recover"))
        limit = self.config.slo.recovered_within_min * 60
        ok = await self._until("recovery", self._recovered, limit)
        self.marks["recovered"] = time.time()
        self.emit(
            StepFinished("recovery", ok, "service recovered" if ok else f"not recovered within {limit:g} s")
        )
        if not ok:
            raise RuntimeError(f"the service did not recover within {limit:g} s")

    async def _steady(self) -> bool:
        self.emit(StepStarted("steady", "waiting for full steady state"))
        timeout = self.config.drill.steady_timeout_s
        deadline = time.monotonic() + timeout
        restarted: set[str] = set()
        last_refresh = 0.0

        def gaps() -> list[str]:
            nonlocal last_refresh
            if time.monotonic() - last_refresh > 1.0 and self.live is not None:
                last_refresh = time.monotonic()
                self.live.refresh("postgres")
            snap = self.snapshot()
            for name in spread_broken(snap, self.config):
                if name not in restarted and not [
                    g for g in steady_state(snap, self.config) if "not spread" not in g
                ]:
                    restarted.add(name)
                    self._tasks.add(asyncio.ensure_future(self._respread(name)))
            return steady_state(snap, self.config)

        ok = await self._until(
            "steady state", lambda: not gaps(), max(0.0, deadline - time.monotonic()), abortable=False
        )
        self.emit(StepFinished("steady", ok, "steady state" if ok else "still: " + "; ".join(gaps())))
        return ok

    async def _respread(self, name: str) -> None:
        """Pods of a spread workload share a node after the fault: a rolling restart places them again."""
        ns, deploy = name.split("/", 1)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.emit(Log("info", f"{name}: pods share a node; rolling restart to spread them"))
        self._step("respread", "done", {"deployment": name})
        try:
            await rollout_restart(self.api, ns, deploy, stamp)
        except KubeError as exc:
            self.emit(Log("warning", f"{name}: restart refused: {exc.message}"))

    async def close(self) -> None:
        if self.live is not None:
            self.live.store.unsubscribe(self._on_store)
            if self._own_live:
                await self.live.stop()
        for task in self._tasks:
            task.cancel()
        if self._own_journal:
            self.journal.close()


async def undo(config: Config, api: Any, data: dict[str, Any], emit: Callable[[Event], None]) -> None:
    """Undo one journaled fault; safe to repeat (the recovery after a killed console calls it too)."""
    key = data.get("key")
    if key == "power":
        from console.clients.hetzner import server_action

        emit(StepStarted("rollback", f"power on {data['node']}"))
        result = await server_action(config, int(data["server_id"]), "poweron")
        emit(StepFinished("rollback", True, f"server {data['node']}: poweron {result}"))
    elif key == "cordon":
        emit(StepStarted("rollback", f"uncordon {data['node']}"))
        await patch(api, f"/api/v1/nodes/{data['node']}", {"spec": {"unschedulable": None}}, STRATEGIC_PATCH)
        emit(StepFinished("rollback", True, f"{data['node']} uncordoned"))
    else:
        emit(Log("info", f"{key}: nothing to undo (the cluster heals itself)"))


async def run_headless(
    config: Config, request: DrillRequest, emit: Callable[[Event], None], yes: bool, dry_run: bool
) -> int:
    """``--action drill``: the exit code per DESIGN.md (0 PASS, 1 FAIL, 3 refused, 4 aborted, 130 Ctrl-C)."""
    import signal

    drill = Drill(config, request, emit)
    loop = asyncio.get_running_loop()
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        drill.abort()

    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, on_sigint)
    try:
        allowed = await drill.prepare()
        if dry_run:
            drill._finish(
                "PLAN",
                EXIT_OK if allowed else EXIT_REFUSED,
                "dry run: preflight and plan only",
                time.time(),
                {"plan": drill.plan, "preflight": [c.__dict__ for c in drill.checks]},
            )
            return EXIT_OK if allowed else EXIT_REFUSED
        if not allowed:
            drill._finish("REFUSED", EXIT_REFUSED, drill.refusal(), time.time())
            return EXIT_REFUSED
        if not yes:
            drill._finish(
                "REFUSED",
                2,
                f"{drill.scenario.name} on {drill.target} changes the cluster: add --yes to run it",
                time.time(),
            )
            return 2
        result = await drill.execute()
        return EXIT_INTERRUPTED if interrupted else result.exit_code
    finally:
        await drill.close()
