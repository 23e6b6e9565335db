"""The database's own actions, from the Database panel or headless: ``switchover [--target INSTANCE]``
with the pooler paused while the primary moves, and ``fence`` / ``unfence --target INSTANCE``.

A switchover asks CNPG to promote a replica (``status.targetPrimary``, as ``kubectl cnpg promote``); the
Pooler is paused first (``spec.pgbouncer.paused``) so clients wait instead of failing while the primary
moves, and resumed after — always, a failed switchover included.  The write outage is measured by a
writer through the pooler, one INSERT a beat, and reported (``--no-pause`` measures without the pause).

A fence stops an instance's PostgreSQL (CNPG's ``cnpg.io/fencedInstances``), a primary's included — the
plan says so; unfence starts it again.  Each is journaled and undone by the other.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from console.action import Action, Outcome, Plan, param
from console.clients import cnpg
from console.config import Config
from console.errors import ActionFailed, Refused, UsageError, Verdict
from console.events import Check, Log, PlanItem, Progress
from console.kubeobj import is_ready
from console.outages import longest
from console.probes import DbWriter, SteadyProbes
from console.runner import Run

SWITCHOVER_TIMEOUT_S = 120.0


def instance_names(config: Config) -> list[str]:
    return [f"{config.database.cluster}-{i + 1}" for i in range(config.database.instances)]


@dataclass(frozen=True)
class SwitchoverParams:
    target: str | None = param("--target", "the instance to promote (default: the most ready replica)")
    no_pause: bool = param("--no-pause", "leave the pooler running during the promotion", False)


@dataclass(frozen=True)
class InstanceParams:
    target: str | None = param("--target", "the database instance", choices=instance_names, required=True)


class _OnDatabase(Action[Any]):
    def __init__(self, config: Config, params: Any) -> None:
        super().__init__(config, params)
        self.primary = ""
        self.pods: dict[str, dict[str, Any]] = {}
        self.fenced: list[str] = []

    async def _read(self, run: Run) -> None:
        api = await run.kube()
        cl = await cnpg.cluster(api, self.config)
        self.primary = cnpg.current_primary(cl)
        self.fenced = cnpg.fenced(cl)
        self.pods = {p["metadata"]["name"]: p for p in await cnpg.instances(api, self.config)}

    async def _healthy_primary(self, run: Run, want: str, timeout: float) -> None:
        if not await cnpg.until_healthy_primary(await run.kube(), self.config, want, timeout):
            raise ActionFailed(f"{want} is not the healthy primary after {timeout:.0f} s")


class Switchover(_OnDatabase):
    name = "switchover"
    title = "Database switchover"
    description = "promote a replica (--target), the pooler paused meanwhile; the write outage measured"
    Params = SwitchoverParams

    def __init__(self, config: Config, params: Any) -> None:
        super().__init__(config, params)
        self.target = ""
        self.outage: dict[str, Any] = {}

    def confirm_word(self) -> str:
        return self.target or str(self.params.target or "")

    def validate(self) -> None:
        t = self.params.target
        if t and t not in instance_names(self.config):
            raise UsageError(f"--target is one of {', '.join(instance_names(self.config))}, not {t!r}")

    async def preflight(self, run: Run) -> list[Check]:
        await self._read(run)
        ready = [
            n for n, p in self.pods.items() if n != self.primary and is_ready(p) and n not in self.fenced
        ]
        self.target = self.params.target or (ready[0] if ready else "")
        if self.target == self.primary:
            raise Refused(f"{self.target} is the primary already")
        ok = self.target in ready
        why = (
            f"{self.target} is a ready replica"
            if ok
            else f"{self.target or 'no replica'} is not a ready replica"
        )
        return [
            Check("replica-ready", ok, True, why),
            Check("primary", bool(self.primary), True, f"now {self.primary}"),
        ]

    async def plan(self, run: Run) -> Plan:
        paused = "" if self.params.no_pause else "; the pooler paused meanwhile (clients wait, none fail)"
        return Plan(
            [
                PlanItem(
                    "change",
                    f"promote {self.target}; {self.primary} becomes its replica{paused}",
                    self.target,
                ),
                PlanItem("info", "the write outage is measured through the pooler and reported"),
            ]
        )

    async def execute(self, run: Run) -> Outcome:
        api = await run.kube()
        paused = not self.params.no_pause
        probes = await self._write_probe(run)
        probes.start()
        try:
            if paused:
                run.applied("pause", "pause")
                await cnpg.set_pooler_paused(api, self.config, True)
                run.emit(Progress("switchover", "the pooler is paused"))
            await cnpg.request_switchover(api, self.config, self.target)
            run.emit(Progress("switchover", f"promoting {self.target}"))
            await self._healthy_primary(run, self.target, SWITCHOVER_TIMEOUT_S)
        finally:
            if paused:
                await cnpg.set_pooler_paused(api, self.config, False)
                run.emit(Log("info", "the pooler is resumed"))
            await asyncio.sleep(self.config.drill.probe_interval_s * 2)  # the writes after it, too
            await probes.stop()
        writes = [s for s in probes.samples if s.probe == "db-write"]
        slowest = max((s.latency_ms or 0.0 for s in writes if s.ok), default=0.0)
        self.outage = {
            "writes": len(writes),
            "failed": sum(1 for s in writes if not s.ok),
            "longest_failure_s": round(longest(writes, "db-write"), 2),
            "slowest_write_ms": round(slowest, 1),
        }
        o = self.outage
        said = (
            f"{self.target} is the primary (was {self.primary}); "
            f"{o['failed']} of {o['writes']} writes failed "
            f"(longest {o['longest_failure_s']:.1f} s), the slowest took {o['slowest_write_ms']:.0f} ms — "
            f"pooler {'paused' if paused else 'not paused'}"
        )
        report = {"primary": self.target, "was": self.primary, "paused": paused, **self.outage}
        return Outcome(Verdict.DONE, said, report)

    async def _write_probe(self, run: Run) -> SteadyProbes:
        """One INSERT a beat through the pooler, as the application writes (console/probes.py)."""
        d = self.config.drill
        writer = DbWriter(self.config, await run.kube(), self.config.database.tunnel_via, "switchover")
        try:
            await writer.prepare()
        except Exception as exc:
            await writer.close()
            raise ActionFailed(f"the write probe cannot start: {type(exc).__name__}: {exc}") from None
        # A client that waits as PgBouncer lets it (query_wait_timeout), not the drills' 3 s: the stall is the
        # measure, a failure is a write that could not be made at all.
        wait = max(d.probe_timeout_s, 10.0)
        probes = SteadyProbes(self.config, writer, lambda _: None, d.probe_interval_s, wait)
        probes.http = False
        return probes

    async def undo(self, run: Run, data: dict[str, Any]) -> str:
        if data.get("key") == "pause":
            await cnpg.set_pooler_paused(await run.kube(), self.config, False)
            return "the pooler resumed"
        return ""


class _Fencing(_OnDatabase):
    Params = InstanceParams
    fence: bool

    @property
    def instance(self) -> str:
        return str(self.params.target or "")

    def confirm_word(self) -> str:
        return self.instance

    def validate(self) -> None:
        if self.instance not in instance_names(self.config):
            raise UsageError(
                f"--action {self.name} needs --target, one of {', '.join(instance_names(self.config))}"
            )

    async def preflight(self, run: Run) -> list[Check]:
        await self._read(run)
        return [Check("instance", self.instance in self.pods, True, f"{self.instance} exists")]

    async def plan(self, run: Run) -> Plan:
        if (self.instance in self.fenced) is self.fence:
            state = "fenced" if self.fence else "not fenced"
            return Plan(nothing_to_do=f"{self.instance} is {state} already", done_verdict=Verdict.CLEAN)
        if not self.fence:
            return Plan(
                [PlanItem("change", f"unfence {self.instance}: PostgreSQL starts again", self.instance)]
            )
        role = "the PRIMARY: writes stop until it is unfenced (CNPG does not fail over from a fenced primary)"
        what = (
            role if self.instance == self.primary else "a replica: it stops streaming; the primary carries on"
        )
        return Plan([PlanItem("change", f"fence {self.instance}, {what}", self.instance)])

    async def execute(self, run: Run) -> Outcome:
        run.applied(self.name, self.name, instance=self.instance)
        names = [n for n in self.fenced if n != self.instance] + ([self.instance] if self.fence else [])
        await cnpg.set_fenced(await run.kube(), self.config, names)
        return Outcome(Verdict.DONE, f"{self.instance} {'fenced' if self.fence else 'unfenced'}")

    async def verify(self, run: Run) -> str | None:
        await self._read(run)
        ok = (self.instance in self.fenced) is self.fence
        return None if ok else f"{self.instance} is {'not ' if self.fence else ''}fenced"

    async def undo(self, run: Run, data: dict[str, Any]) -> str:
        await self._read(run)
        instance = str(data.get("instance") or self.instance)
        back = data.get("key") == "unfence"  # undoing a fence unfences, and the other way round
        names = [n for n in self.fenced if n != instance] + ([instance] if back else [])
        await cnpg.set_fenced(await run.kube(), self.config, names)
        return f"{instance} {'fenced' if back else 'unfenced'} again"


class Fence(_Fencing):
    name = "fence"
    title = "Fence a database instance"
    description = "stop an instance's PostgreSQL (--target), CNPG's fencing"
    fence = True


class Unfence(_Fencing):
    name = "unfence"
    title = "Unfence a database instance"
    description = "start a fenced instance's PostgreSQL again (--target)"
    fence = False
