"""``--action upgrade --version vX.Y.Z+k3sN``: K3s upgraded node by node with the cluster up and its HA
patches in place (the seed: "runtime patches — may not survive K3s upgrades. Re-apply after updates").

* **Plan** — per node current → target, in K3s's order: the server first, then the agents one at a time.
  Refused before anything changes (exit 3): a minor-version skip, an agent newer than the server, a
  downgrade without ``--allow-downgrade`` (:func:`console.k3s.refusals`); a cluster not at steady state;
  a node whose install flags K3s did not record; and, from a drain simulation per node
  (:mod:`console.drain_sim`), a PodDisruptionBudget that would hold a drain forever, a primary with no
  replica to switch over to, or evicted pods the other nodes have no room for.
* **First** a cluster backup (``backup --what cluster``: a fresh etcd snapshot with the manifests, into
  Borg) — skipped only with ``--force``, which the journal records.
* **Per node** (``--route ssh``): cordon → the cockpit's drain (``actions/node.py``: switchover first,
  PDB-aware, a stalled drain stops and says why) → the official installer over SSH with
  ``INSTALL_K3S_VERSION`` and the flags read back from the Node (``k3s.io/node-args``) → Ready at the new
  kubelet version → uncordon → its pods back and the spread holding (``actions/steady.py``).
* **After the server**, whose start re-applies K3s's packaged manifests: the HA drift check, the HA action
  to re-apply what was lost, and its verification; the report lists what was lost and restored.  The HA
  state is checked again at the end (the packaged manifests may land after the API answers).
* **Probes** every 0.5 s throughout (prod and staging through the load balancer, a database write
  through the pooler), as the drills run them; the verdict is measured against ``[slo]``: PASS, or FAIL
  naming the outage (exit 1) with every node upgraded.
* **Failure**: the node that failed goes back to its previous version (the installer again, old version,
  same flags) and is uncordoned once Ready; nodes already upgraded stay; exit 4 with the report saying
  where it stopped.  Each node's change is journaled before it is made, so ``--action recover`` finishes
  a killed run the same way.
* ``--route suc``: the same preflight, backup, probes and HA re-check, with the per-node work left to
  system-upgrade-controller Plans (``actions/upgrade_suc.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from actions.drill_checks import steady_state
from actions.ha import Ha
from actions.ha import plan as ha_plan
from actions.node import Drain, DrainParams, primary_move
from actions.steady import until_steady
from actions.upgrade_node import install, journal_install, put_back, until_ready
from actions.upgrade_report import NodeStep, UpgradeReport, probe_counts, slo_rows
from console.action import Action, NoParams, Outcome, Plan, param
from console.clients import cnpg
from console.clients.kube import KubeError, answered, request, set_schedulable
from console.config import Config, NodeConfig
from console.drain_sim import DrainSimulation, simulate
from console.errors import ActionFailed, Refused, UsageError, Verdict
from console.events import Check, Log, PlanItem, ProbeSample, StepFinished, StepStarted
from console.k3s import K3sVersion, node_args, node_env, node_version, refusals
from console.kubeobj import is_ready
from console.probes import DbWriter, SteadyProbes
from console.runner import Run, run_sub
from console.snapshot import SnapshotBuilder


def node_names(config: Config) -> list[str]:
    return [n.name for n in config.nodes]


@dataclass(frozen=True)
class UpgradeParams:
    version: str | None = param("--version", "the K3s version to upgrade to (vX.Y.Z+k3sN)", required=True)
    route: str = param(
        "--route",
        "ssh: the installer over SSH, node by node; suc: system-upgrade-controller Plans",
        "ssh",
        choices=("ssh", "suc"),
    )
    nodes: str | None = param("--nodes", "only these nodes, comma-separated (default: all, the server first)")
    allow_downgrade: bool = param("--allow-downgrade", "allow a version older than a node runs", False)
    timeout: int = param("--timeout", "a drain that evicts nothing for this many seconds stops", 120)
    force: bool = param(
        "--force",
        "skip the cluster backup taken first, run past non-critical checks (logged)",
        False,
        tui=False,
    )


class Upgrade(Action[UpgradeParams]):
    name = "upgrade"
    title = "Upgrade K3s"
    description = (
        "upgrade K3s (--version) node by node: the server first, drains, the installer over SSH "
        "(or --route suc), HA re-applied, probes, rollback of a failing node"
    )
    Params = UpgradeParams
    guide = (
        "K3s upgrade: the server first, then each worker drained, upgraded and back before the next. "
        "Type the version to start."
    )

    def __init__(self, config: Config, params: UpgradeParams) -> None:
        super().__init__(config, params)
        self.target = params.version or ""
        self.order: list[str] = []  # the nodes to change, in K3s's order
        self.steps: dict[str, NodeStep] = {}
        self.objs: dict[str, dict[str, Any]] = {}
        self.sims: dict[str, DrainSimulation] = {}
        self.samples: list[ProbeSample] = []
        self.ha_lost: list[dict[str, Any]] = []
        self.ha_restored: list[str] = []
        self.ha_holds: bool | None = None
        self.backup: str | None = None
        self.stopped_at: str | None = None
        self.error: str | None = None
        self.started = 0.0
        self.action_id: str | None = None
        self.live: Any = None
        self.builder = SnapshotBuilder(config)

    # ---- metadata ---------------------------------------------------------------------------------------

    def confirm_word(self) -> str:
        return self.target

    def journal_params(self) -> dict[str, Any]:
        p = self.params
        return {
            "version": p.version,
            "route": p.route,
            "nodes": p.nodes,
            "force": p.force,
            "allow_downgrade": p.allow_downgrade,
        }

    @property
    def server(self) -> NodeConfig:
        return next(n for n in self.config.nodes if n.role == "server")

    def chosen(self) -> list[str]:
        names = node_names(self.config)
        if not self.params.nodes:
            return names
        return [n.strip() for n in self.params.nodes.split(",") if n.strip()]

    def validate(self) -> None:
        if not self.params.version:
            raise UsageError("--action upgrade needs --version vX.Y.Z+k3sN (e.g. v1.34.5+k3s1)")
        try:
            K3sVersion.parse(self.params.version)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        unknown = [n for n in self.chosen() if n not in node_names(self.config)]
        if unknown:
            known = ", ".join(node_names(self.config))
            raise UsageError(f"--nodes: {', '.join(unknown)} is not a node of this cluster ({known})")

    # ---- preflight and plan -----------------------------------------------------------------------------

    async def preflight(self, run: Run) -> list[Check]:
        api = await run.kube()
        self.live = await run.sources()
        items = (await request(api, "GET", "/api/v1/nodes")).get("items") or []
        self.objs = {n["metadata"]["name"]: n for n in items}
        missing = [n for n in self.chosen() if n not in self.objs]
        if missing:
            why = f"{', '.join(missing)}: no such Node in the cluster"
            return [Check("nodes-registered", False, True, why)]
        checks = [self._rules(await self._primary_node(api))]
        checks.append(self._flags())
        gaps = steady_state(self.builder.build(self.live.store), self.config)
        checks.append(Check("steady-state", not gaps, True, "; ".join(gaps) or "full steady state"))
        checks += await self._simulate(api)
        if self.params.route == "suc":
            from actions.upgrade_suc import controller_check

            checks.append(await controller_check(api))
        if self.params.force:
            checks.append(
                Check("backup-first", False, False, "--force: no cluster backup before the upgrade")
            )
        return checks

    async def _primary_node(self, api: Any) -> str | None:
        try:
            primary, pods = await cnpg.primary_and_instances(api, self.config)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        node = ((pods.get(primary) or {}).get("spec") or {}).get("nodeName")
        return str(node) if node else None

    def _rules(self, primary_node: str | None) -> Check:
        """The version rules, and the order: the server first — last for a downgrade, so that no agent
        ever runs newer than the server — and of the agents the one holding the CNPG primary last, so the
        database switches over once (draining it first would move the primary to the other worker, and
        draining that one would move it back)."""
        current = {name: node_version(obj) for name, obj in self.objs.items()}
        chosen, server = self.chosen(), self.server.name
        try:
            why = refusals(current, server, chosen, self.target, self.params.allow_downgrade)
            down = K3sVersion.parse(self.target) < K3sVersion.parse(current[server])
        except ValueError as exc:  # a kubelet version that is not K3s's
            return Check("version-rules", False, True, str(exc))
        agents = sorted((n for n in node_names(self.config) if n != server), key=lambda n: n == primary_node)
        ordered = [*agents, server] if down else [server, *agents]
        self.order = [n for n in ordered if n in chosen and current[n] != self.target]
        for name in ordered:
            if name in chosen:
                step = NodeStep(name, self.config.node(name).role, current[name], self.target)
                if name not in self.order:
                    step.state, step.after = "unchanged", current[name]
                self.steps[name] = step
        now = ", ".join(f"{n} {v}" for n, v in current.items())
        return Check("version-rules", not why, True, "; ".join(why) or f"{self.target} may follow {now}")

    def _flags(self) -> Check:
        """Every node's install flags read back from the Node; an agent also knows its server."""
        bad = []
        for name in self.order:
            try:
                args = node_args(self.objs[name])
            except ActionFailed as exc:
                bad.append(exc.sentence())
                continue
            if args[0] == "agent" and "K3S_URL" not in node_env(self.objs[name]) and "--server" not in args:
                bad.append(f"{name} records no K3S_URL (k3s.io/node-env) nor --server: its server is unknown")
        return Check("install-flags", not bad, True, "; ".join(bad) or "every node's K3s flags read back")

    async def _simulate(self, api: Any) -> list[Check]:
        pods = (await request(api, "GET", "/api/v1/pods")).get("items") or []
        budgets = (await request(api, "GET", "/apis/policy/v1/poddisruptionbudgets")).get("items") or []
        db_ns = self.config.database.namespace
        checks = []
        for name in self.order:
            primary, switch_to = await primary_move(api, self.config, name)
            sim = simulate(name, list(self.objs.values()), pods, budgets, primary, db_ns, switch_to)
            self.sims[name] = sim
            problems = list(sim.blocked)
            if sim.primary and not sim.switch_to:
                problems.append(
                    f"the primary {sim.primary} runs on {name} and no ready replica runs elsewhere"
                )
            if not sim.fits:
                problems.append(f"no other node has room for {', '.join(sim.short)}")
            checks.append(Check(f"drain-{name}", not problems, True, "; ".join(problems) or sim.lines()[0]))
        return checks

    async def plan(self, run: Run) -> Plan:
        if not self.order:
            return Plan(
                nothing_to_do=f"every chosen node runs {self.target} already", done_verdict=Verdict.CLEAN
            )
        items: list[PlanItem] = []
        if self.params.force:
            items.append(PlanItem("warning", "--force: no cluster backup first"))
        else:
            items.append(
                PlanItem("step", "first: a fresh etcd snapshot and a cluster backup (backup --what cluster)")
            )
        how = (
            "cordon, drain, the installer over SSH with the node's own flags, Ready at the new version, "
            "uncordon"
            if self.params.route == "ssh"
            else "system-upgrade-controller Plans (cordon, drain, upgrade Job), followed to completion"
        )
        for name in self.order:
            s = self.steps[name]
            items.append(PlanItem("change", f"{name} ({s.role}): {s.before} → {self.target}: {how}", name))
            for line in self.sims[name].lines():
                items.append(PlanItem("step", f"  {line}", name))
            if s.role == "server":
                items.append(
                    PlanItem(
                        "step",
                        "  then the HA drift check: what K3s re-applied is re-applied by the HA action",
                    )
                )
        d, slo = self.config.drill, self.config.slo
        items.append(
            PlanItem(
                "step",
                f"probes every {d.probe_interval_s:g} s: prod and staging through the load balancer, "
                f"a database write through the pooler; SLO: HTTP outage ≤ {slo.max_http_outage_s:g} s, "
                f"write outage ≤ {slo.max_db_write_outage_s:g} s",
            )
        )
        plan = {
            "target": self.target,
            "route": self.params.route,
            "order": [
                {
                    "node": n,
                    "role": self.steps[n].role,
                    "from": self.steps[n].before,
                    "drain": self.sims[n].lines(),
                }
                for n in self.order
            ],
        }
        return Plan(items, f"dry run: {len(self.order)} node(s) to {self.target}", {"plan": plan})

    # ---- execute ----------------------------------------------------------------------------------------

    async def execute(self, run: Run) -> Outcome:
        self.started, self.action_id = time.time(), run.action_id
        probes = await self._start_probes(run)
        try:
            if not self.params.force:
                await self._backup(run)
            if self.params.route == "suc":
                await self._by_plans(run)
            else:
                for name in self.order:
                    await self._upgrade_node(run, name)
                    if self.steps[name].role == "server":
                        await self._ha(run)
                    await self._settled(run, name)
            self.stopped_at = "the last HA check"
            await self._ha(run, again=True)  # K3s may apply its packaged manifests after the API answers
        except BaseException as exc:
            self.error = str(exc) or type(exc).__name__
            raise
        finally:
            await probes.stop()
        return self._outcome()

    async def _by_plans(self, run: Run) -> None:
        """``--route suc``: the server's Plan, the HA re-check, then the agents' Plan (its ``prepare``
        waits for the server's), each followed to completion; then the pods back and spread."""
        from actions.upgrade_suc import Follow

        follow = Follow(self, run)
        await follow.phase("server")
        if any(self.steps[n].role == "server" for n in self.order):
            await self._ha(run)
        await follow.phase("agent")
        await follow.finish()
        await self._settled(run, self.order[-1])

    def _outcome(self) -> Outcome:
        report = self.result()
        failed = [s for s in report.slos if s["verdict"] != "PASS"]
        if failed or self.ha_holds is False:
            said = [f"{s['slo']} {s['measured']} s > {s['bound']} s" for s in failed]
            if self.ha_holds is False:
                said.append("the HA patches do not hold")
            return Outcome(Verdict.FAIL, f"upgraded to {self.target}, but: {'; '.join(said)}", report)
        return Outcome(Verdict.PASS, report.summary, report)

    async def _start_probes(self, run: Run) -> SteadyProbes:
        d = self.config.drill
        writer = DbWriter(
            self.config, await run.kube(), self.config.database.tunnel_via, run.action_id or "upgrade"
        )
        try:
            await writer.prepare()
        except Exception as exc:
            await writer.close()
            raise ActionFailed(
                f"the database write probe cannot start: {type(exc).__name__}: {exc}"
            ) from None

        def on_sample(s: ProbeSample) -> None:
            self.samples.append(s)
            run.emit(s)

        probes = SteadyProbes(self.config, writer, on_sample, d.probe_interval_s, d.probe_timeout_s)
        probes.start()
        return probes

    async def _backup(self, run: Run) -> None:
        from actions.backup import Backup, BackupParams

        run.emit(StepStarted("backup", "a fresh etcd snapshot and a cluster backup"))
        done = await run_sub(run, Backup(self.config, BackupParams(what="cluster")))
        run.emit(StepFinished("backup", done.exit_code == 0, done.summary))
        if done.exit_code != 0:  # nothing has changed yet: a refusal (exit 3), as a failed preflight
            self.stopped_at = "the backup before the upgrade"
            raise Refused(f"the cluster backup before the upgrade failed: {done.summary}")
        self.backup = done.summary

    async def _upgrade_node(self, run: Run, name: str) -> None:
        step, api = self.steps[name], await run.kube()
        step.state = "upgrading"
        self.stopped_at = f"{name} ({step.role})"
        run.applied("cordon", f"cordon:{name}", node=name)
        t0 = time.monotonic()
        run.emit(StepStarted("drain", f"{name}: cordon and drain"))
        drained = await run_sub(
            run, Drain(self.config, DrainParams(target=name, timeout=self.params.timeout))
        )
        run.emit(StepFinished("drain", drained.exit_code == 0, drained.summary))
        if drained.exit_code != 0:
            step.state, step.error = "failed", drained.summary
            raise ActionFailed(f"the drain of {name} stopped: {drained.summary}")
        report = drained.report if isinstance(drained.report, dict) else {}
        step.evicted, step.timings["drain"] = int(report.get("evicted", 0)), round(time.monotonic() - t0, 2)
        args, env = journal_install(run, self.objs[name], step.before)
        t0 = time.monotonic()
        run.emit(StepStarted("install", f"{name}: the K3s installer with INSTALL_K3S_VERSION={self.target}"))
        try:
            said = await install(self.config, name, args, env, self.target)
            run.emit(StepFinished("install", True, said))
            run.step("install", "done", {"node": name, "version": self.target})
            step.timings["install"] = round(time.monotonic() - t0, 2)
            t0 = time.monotonic()
            await until_ready(self.config, api, name, step.role, self.target, run.emit)
        except ActionFailed as exc:
            step.state, step.error = "failed", exc.sentence()
            raise
        step.timings["ready"] = round(time.monotonic() - t0, 2)
        run.step("ready", "done", {"node": name, "version": self.target})
        await answered(lambda: set_schedulable(api, name, True))
        run.step("uncordon", "done", {"node": name})
        step.state, step.after = "done", self.target
        for key in (f"k3s:{name}", f"cordon:{name}"):  # this node is finished: a rollback leaves it
            run.step("node", "superseded", {"key": key})
        run.emit(Log("info", f"{name} runs {self.target} and is uncordoned"))

    async def _settled(self, run: Run, name: str) -> None:
        """The node's pods back and the spread holding (``back`` in the report)."""
        t0, self.stopped_at = time.monotonic(), f"{name}: its pods back"
        run.emit(StepStarted("back", f"{name}: pods back, spread holding"))

        def journal(deployment: str) -> None:
            run.step("respread", "done", {"deployment": deployment})

        timeout = self.config.drill.steady_timeout_s
        api = await run.kube()
        gaps = await until_steady(self.live, self.config, api, timeout, run.emit, self.builder, journal)
        run.emit(StepFinished("back", not gaps, "steady state" if not gaps else "still: " + "; ".join(gaps)))
        self.steps[name].timings["back"] = round(time.monotonic() - t0, 2)
        if gaps:
            raise ActionFailed(f"after {name}: not back to steady state: {'; '.join(gaps)}")

    async def _ha(self, run: Run, again: bool = False) -> None:
        """What K3s re-applied on the server's start, re-applied through the HA action and verified;
        ``again``: the last look, which says nothing when all holds."""
        api = await run.kube()
        rows = await ha_plan(self.config, api)
        lost = [{"name": r["name"], "subject": r["subject"], "drift": r["drift"]} for r in rows if r["drift"]]
        if again and not lost:
            return
        self.stopped_at = "the HA re-apply"
        run.emit(StepStarted("ha", "HA drift check after the server's restart"))
        self.ha_lost += [r for r in lost if r["name"] not in {x["name"] for x in self.ha_lost}]
        if lost:
            ha = Ha(self.config, NoParams())
            done = await run_sub(run, ha)
            if done.exit_code != 0:
                self.ha_holds = False
                raise ActionFailed(f"the HA patches could not be re-applied: {done.summary}")
            self.ha_restored += [p.name for p, _ in ha.changed if p.name not in self.ha_restored]
        self.ha_holds = True
        said = f"lost and restored: {', '.join(r['name'] for r in lost)}" if lost else "every HA item holds"
        run.emit(StepFinished("ha", True, said))

    async def verify(self, run: Run) -> str | None:
        """Every chosen node at the target and Ready, and the HA patches holding."""
        api = await run.kube()
        for name in self.order:
            obj = await answered(partial(request, api, "GET", f"/api/v1/nodes/{name}"))
            if node_version(obj) != self.target or not is_ready(obj):
                return f"{name} runs {node_version(obj)} ({'Ready' if is_ready(obj) else 'NotReady'})"
        drifted = [r["name"] for r in await ha_plan(self.config, api) if r["drift"]]
        return f"HA items drifted again: {', '.join(drifted)}" if drifted else None

    # ---- rollback ---------------------------------------------------------------------------------------

    async def rollback(self, run: Run) -> str:
        """Undo the node in flight (newest first), then wait for steady state again: the pods its drain
        moved are spread back, so the next action's preflight finds the cluster as it was."""
        said = await super().rollback(run)
        if self.live is None:
            return said
        gaps = await until_steady(
            self.live,
            self.config,
            await run.kube(),
            self.config.drill.steady_timeout_s,
            run.emit,
            self.builder,
        )
        return said + ("; steady state" if not gaps else f"; not yet steady: {'; '.join(gaps)}")

    async def undo(self, run: Run, data: dict[str, Any]) -> str:
        key = str(data.get("key") or "")
        api = await run.kube()
        node = str(data.get("node") or "")
        if key.startswith("cordon:"):
            try:
                await answered(lambda: set_schedulable(api, node, True))
            except KubeError as exc:
                if exc.status != 404:
                    raise
            return f"{node} uncordoned"
        if key.startswith("k3s:"):
            if data.get("plans"):  # SUC's: gone first, so the controller cannot start this node again
                from actions.upgrade_suc import delete_plans

                run.emit(Log("info", await delete_plans(api, list(data["plans"]))))
            env = dict(data.get("env") or {})
            if data.get("k3s_url"):  # journaled by the first version of this action
                env["K3S_URL"] = str(data["k3s_url"])
            said = await put_back(
                self.config, api, node, str(data["previous"]), list(data["args"]), env, run.emit
            )
            if node in self.steps:
                self.steps[node].state, self.steps[node].after = "rolled-back", str(data["previous"])
            return said
        if key == "suc-plans":
            from actions.upgrade_suc import delete_plans

            return await delete_plans(api, list(data.get("plans") or []))
        return ""

    def result(self) -> UpgradeReport:
        counts, windows = probe_counts(self.samples, self.started)
        slos = slo_rows(self.config, self.samples)
        done = [s for s in self.steps.values() if s.state == "done"]
        failed = [s for s in self.steps.values() if s.state in ("failed", "rolled-back")]
        stopped = self.stopped_at if failed or self.error else None
        summary = f"{len(done)} of {len(self.order)} node(s) upgraded to {self.target}" + (
            f"; stopped at {stopped}" if stopped else ""
        )
        http = next((s["measured"] for s in slos if s["slo"].endswith("(prod)")), 0.0)
        write = next((s["measured"] for s in slos if "write" in s["slo"]), 0.0)
        summary += f" — HTTP outage {http:.1f} s, database write outage {write:.1f} s"
        if self.ha_restored:
            summary += f"; HA restored: {', '.join(self.ha_restored)}"
        passed = not failed and not self.error and all(s["verdict"] == "PASS" for s in slos)
        verdict = "PASS" if passed else "FAIL"
        return UpgradeReport(
            kind_="upgrade",
            id=self.action_id,
            route=self.params.route,
            target=self.target,
            verdict=verdict,
            summary=summary,
            started=self.started,
            finished=time.time(),
            stopped_at=stopped,
            nodes=list(self.steps.values()),
            backup=self.backup,
            ha_lost=self.ha_lost,
            ha_restored=self.ha_restored,
            ha_holds=self.ha_holds,
            slos=slos,
            probes=counts,
            outages=windows,
        )
