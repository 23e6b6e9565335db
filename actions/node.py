"""``cordon`` and ``uncordon`` a node (``--target NODE``), from the Nodes panel or headless.

Cordoning marks the node unschedulable: its pods stay, nothing new lands there.  Each is journaled
before it is made and undone by the other (a failed verification, a killed console's recovery).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from console.action import Action, Outcome, Plan, param
from console.clients import cnpg
from console.clients.kube import KubeError, pods_on, request, set_schedulable
from console.config import Config
from console.drain import evict_all, evictable, held_by_budgets
from console.errors import ActionFailed, Refused, UsageError, Verdict
from console.events import Check, Log, PlanItem, Progress
from console.kubeobj import is_ready
from console.runner import Run


def node_names(config: Config) -> list[str]:
    return [n.name for n in config.nodes]


@dataclass(frozen=True)
class NodeParams:
    target: str | None = param("--target", "the node", choices=node_names, required=True)


class _Schedulable(Action[NodeParams]):
    """What cordon and uncordon share: the node read once, the one write, its verification."""

    Params = NodeParams
    cordoned: ClassVar[bool]  # what the action makes the node

    def __init__(self, config: Config, params: NodeParams) -> None:
        super().__init__(config, params)
        self.pods = 0
        self.now: bool | None = None

    @property
    def node(self) -> str:
        return self.params.target or ""

    def confirm_word(self) -> str:
        return self.node

    def validate(self) -> None:
        if not self.params.target:
            names = ", ".join(node_names(self.config))
            raise UsageError(f"--action {self.name} needs --target NODE ({names})")

    async def preflight(self, run: Run) -> list[Check]:
        api = await run.kube()
        try:
            obj = await request(api, "GET", f"/api/v1/nodes/{self.node}")
        except KubeError as exc:
            if exc.status == 404:
                raise Refused(f"there is no node {self.node}") from None
            raise
        self.now = bool((obj.get("spec") or {}).get("unschedulable"))
        self.pods = len(await pods_on(api, self.node))
        return [Check("node-exists", True, True, f"{self.node}: {'cordoned' if self.now else 'schedulable'}")]

    async def plan(self, run: Run) -> Plan:
        verb = "cordon" if self.cordoned else "uncordon"
        if self.now is self.cordoned:
            state = "cordoned" if self.cordoned else "schedulable"
            return Plan(nothing_to_do=f"{self.node} is {state} already", done_verdict=Verdict.CLEAN)
        what = (
            f"its {self.pods} pods stay; nothing new is scheduled there"
            if self.cordoned
            else "new pods may be scheduled there again"
        )
        return Plan([PlanItem("change", f"{verb} {self.node}: {what}", self.node)])

    async def execute(self, run: Run) -> Outcome:
        run.applied(self.name, self.name, node=self.node)
        await set_schedulable(await run.kube(), self.node, not self.cordoned)
        return Outcome(Verdict.DONE, f"{self.node} {'cordoned' if self.cordoned else 'uncordoned'}")

    async def verify(self, run: Run) -> str | None:
        obj = await request(await run.kube(), "GET", f"/api/v1/nodes/{self.node}")
        now = bool((obj.get("spec") or {}).get("unschedulable"))
        return None if now is self.cordoned else f"{self.node} is {'not ' if self.cordoned else ''}cordoned"

    async def undo(self, run: Run, data: dict[str, Any]) -> str:
        node = str(data.get("node") or self.node)
        back = data.get("key") == "cordon"  # undoing a cordon uncordons, and the other way round
        try:
            await set_schedulable(await run.kube(), node, back)
        except KubeError as exc:
            if exc.status != 404:
                raise
            return f"{node} is gone: nothing to undo"
        return f"{node} {'uncordoned' if back else 'cordoned'} again"


class Cordon(_Schedulable):
    name = "cordon"
    title = "Cordon a node"
    description = "mark a node (--target) unschedulable: its pods stay, nothing new lands there"
    cordoned = True


class Uncordon(_Schedulable):
    name = "uncordon"
    title = "Uncordon a node"
    description = "make a cordoned node (--target) schedulable again"
    cordoned = False


@dataclass(frozen=True)
class DrainParams(NodeParams):
    timeout: int = param("--timeout", "stop when no pod could be evicted for this many seconds", 60)
    force: bool = param("--force", "drain although a PodDisruptionBudget holds pods (waits --timeout)", False)


DB_MOVE_TIMEOUT_S = 120.0


async def primary_move(api: Any, config: Config, node: str) -> tuple[str | None, str | None]:
    """(the CNPG primary if it runs on ``node``, the ready replica elsewhere a drain switches over to)."""
    try:
        primary, pods = await cnpg.primary_and_instances(api, config)
    except KubeError as exc:
        if exc.status == 404:
            return None, None  # no database cluster (yet): nothing to move
        raise
    where = {name: (p.get("spec") or {}).get("nodeName") for name, p in pods.items()}
    if where.get(primary) != node:
        return None, None
    replicas = [n for n, p in pods.items() if n != primary and where[n] != node and is_ready(p)]
    return primary, replicas[0] if replicas else None


def _successor(owner: dict[str, Any] | None) -> str:
    """Who makes the evicted pod again, and where, in the plan's words."""
    if owner is None:
        return "no controller: it is gone for good"
    if owner.get("kind") == "Cluster":  # CNPG: the instance's volume is on this node (local storage)
        return f"CNPG Cluster {owner['name']} starts it again here once the node is uncordoned"
    return f"its {owner['kind']} {owner['name']} makes a new one elsewhere"


class Drain(_Schedulable):
    """``kubectl drain --ignore-daemonsets``, with the cluster's one stateful rule first: a node holding the
    CNPG primary gets a switchover to a replica elsewhere (said in the plan) before any eviction, so the
    database moves cleanly instead of failing over.  Then every pod is evicted through the Eviction API,
    PodDisruptionBudgets honoured, one progress line per pod; a drain that evicts nothing for
    ``--timeout`` seconds stops and names the pods held and the budget holding each.

    Journaled: the cordon (undone by an uncordon on a failure or a rollback).  Evicted pods are their
    controllers' to recreate elsewhere, and a switchover is not undone."""

    name = "drain"
    title = "Drain a node"
    description = (
        "cordon a node (--target), switch the database primary off it, evict its pods (PDBs honoured)"
    )
    Params = DrainParams
    cordoned = True

    def __init__(self, config: Config, params: Any) -> None:
        super().__init__(config, params)
        self.evict: list[tuple[str, str]] = []
        self.owners: dict[tuple[str, str], str] = {}
        self.primary_here: str | None = None
        self.switch_to: str | None = None
        self.held: list[str] = []

    async def preflight(self, run: Run) -> list[Check]:
        checks = await super().preflight(run)
        api = await run.kube()
        items = await pods_on(api, self.node)
        self.evict = evictable(items, self.node)
        for p in items:
            owner = next((o for o in p["metadata"].get("ownerReferences") or [] if o.get("controller")), None)
            key = (p["metadata"]["namespace"], p["metadata"]["name"])
            self.owners[key] = _successor(owner)
        await self._database(run)
        # The primary is held by CNPG's <cluster>-primary budget until the switchover moves it: not a hold.
        moved = (self.config.database.namespace, self.primary_here) if self.switch_to else None
        staying = [p for p in items if (p["metadata"]["namespace"], p["metadata"]["name"]) != moved]
        self.held = await self._held_by_budgets(api, staying)
        if self.primary_here and not self.switch_to:
            why = (
                f"the primary {self.primary_here} runs on {self.node} and no ready replica runs elsewhere: "
                "a drain would take the database down"
            )
            checks.append(Check("replica-elsewhere", False, True, why))
        for h in self.held:
            checks.append(Check("disruption-budget", False, False, h))
        return checks

    async def _held_by_budgets(self, api: Any, pods: list[dict[str, Any]]) -> list[str]:
        """The pods a PodDisruptionBudget would refuse to evict now, and which budget."""
        budgets = (await request(api, "GET", "/apis/policy/v1/poddisruptionbudgets")).get("items") or []
        return [
            f"{name.split('/')[0]}/{pod} is held by the PodDisruptionBudget {name.split('/')[1]} "
            "(0 disruptions allowed now)"
            for name, held in held_by_budgets(budgets, pods)
            for pod in held
        ]

    async def _database(self, run: Run) -> None:
        self.primary_here, self.switch_to = await primary_move(await run.kube(), self.config, self.node)

    async def plan(self, run: Run) -> Plan:
        items = []
        if not self.now:
            items.append(PlanItem("change", f"cordon {self.node}: nothing new is scheduled there", self.node))
        if self.primary_here:
            move = f"switch over to {self.switch_to} first (a clean promotion, not a failover)"
            items.append(PlanItem("change", f"the database primary {self.primary_here} runs here: {move}"))
        for ns, name in self.evict:
            items.append(PlanItem("change", f"evict {ns}/{name} — {self.owners.get((ns, name))}", name))
        if not items:
            return Plan(
                nothing_to_do=f"{self.node} is cordoned and empty already", done_verdict=Verdict.CLEAN
            )
        return Plan(items)

    async def execute(self, run: Run) -> Outcome:
        api = await run.kube()
        assert isinstance(self.params, DrainParams)
        if not self.now:
            run.applied("cordon", "cordon", node=self.node)
            await set_schedulable(api, self.node, False)
        if self.primary_here and self.switch_to:
            await self._switch_over(run)
        total = len(self.evict)
        done: list[str] = []

        def said(message: str) -> None:
            done.append(message)
            run.emit(
                Progress(
                    "evict", f"{message} ({len(done)}/{total})", len(done) / max(total, 1), items=len(done)
                )
            )

        await evict_all(api, self.evict, float(self.params.timeout), said)
        await self._until_gone(run)
        return Outcome(
            Verdict.DONE, f"{self.node} drained: {total} pods evicted", {"node": self.node, "evicted": total}
        )

    async def _switch_over(self, run: Run) -> None:
        api = await run.kube()
        run.emit(Progress("switchover", f"switching the primary over to {self.switch_to}"))
        await cnpg.request_switchover(api, self.config, str(self.switch_to))
        if await cnpg.until_healthy_primary(api, self.config, str(self.switch_to), DB_MOVE_TIMEOUT_S):
            run.emit(Log("info", f"{self.switch_to} is the primary now"))
            return
        raise ActionFailed(f"the switchover to {self.switch_to} did not finish in {DB_MOVE_TIMEOUT_S:.0f} s")

    async def _until_gone(self, run: Run) -> None:
        """Evicted pods terminate (their grace period); the drain ends when none is left on the node."""
        api = await run.kube()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            left = [
                p
                for p in await pods_on(api, self.node)
                if (p["metadata"]["namespace"], p["metadata"]["name"]) in set(self.evict)
            ]
            if not left:
                return
            await asyncio.sleep(1.0)
        raise ActionFailed(f"evicted pods still terminating on {self.node} after 120 s")

    async def verify(self, run: Run) -> str | None:
        why = await super().verify(run)
        if why:
            return why
        left = evictable(await pods_on(await run.kube(), self.node), self.node)
        return (
            None
            if not left
            else f"{len(left)} pods still on {self.node}: {', '.join(f'{n}/{p}' for n, p in left[:5])}"
        )


NODE_BACK_TIMEOUT_S = 600.0


def _boot_id(node: dict[str, Any]) -> str:
    """The kubelet's ``nodeInfo.bootID``: a new one after every boot (how a reset is seen through)."""
    return str(((node.get("status") or {}).get("nodeInfo") or {}).get("bootID") or "")


@dataclass(frozen=True)
class PowerCycleParams(NodeParams):
    force: bool = param("--force", "reset although the database primary runs there (it fails over)", False)


class PowerCycle(Action[PowerCycleParams]):
    """A hard reset of the node's server through Hetzner — the reset button, for a node that hangs.

    No clean shutdown: its pods restart where they are (or are evicted after their tolerations if it
    stays down), and a database primary on it fails over — the plan says so, and that check asks for
    ``--force`` (drain or switch over first, where the node still answers).  It cannot be undone; the
    action waits for the node to be Ready again."""

    name = "power-cycle"
    title = "Power-cycle a node"
    description = "hard reset a node's server (--target) through Hetzner and wait for it to be Ready again"
    Params = PowerCycleParams

    def __init__(self, config: Config, params: PowerCycleParams) -> None:
        super().__init__(config, params)
        self.server_id = 0
        self.primary_here: str | None = None

    @property
    def node(self) -> str:
        return self.params.target or ""

    def confirm_word(self) -> str:
        return self.node

    def can_roll_back(self) -> bool:
        return False  # a reset happened or it did not: there is nothing to put back

    def validate(self) -> None:
        if not self.params.target:
            names = ", ".join(node_names(self.config))
            raise UsageError(f"--action {self.name} needs --target NODE ({names})")

    async def preflight(self, run: Run) -> list[Check]:
        from console.clients.hetzner import server_id, server_status

        self.server_id = await server_id(self.config, self.node)
        status = await server_status(self.config, self.server_id)
        where = f"{self.node} (server {self.server_id}): {status}"
        checks = [Check("server-running", status == "running", True, where)]
        api = await run.kube()
        try:
            primary, pods = await cnpg.primary_and_instances(api, self.config)
            if ((pods.get(primary) or {}).get("spec") or {}).get("nodeName") == self.node:
                self.primary_here = primary
        except KubeError as exc:
            if exc.status != 404:
                raise
        if self.primary_here:
            why = f"the primary {self.primary_here} runs here: a reset makes CNPG fail over (drain first)"
            checks.append(Check("primary-here", False, False, why))
        return checks

    async def plan(self, run: Run) -> Plan:
        what = "no clean shutdown; its pods restart, the node is NotReady until it boots"
        items = [
            PlanItem("change", f"hard reset {self.node} (Hetzner server {self.server_id}): {what}", self.node)
        ]
        if self.primary_here:
            items.append(
                PlanItem("warning", f"{self.primary_here} is the primary: CNPG fails over to a replica")
            )
        return Plan(items)

    async def execute(self, run: Run) -> Outcome:
        from console.clients.hetzner import server_action

        api = await run.kube()
        boot = _boot_id(await request(api, "GET", f"/api/v1/nodes/{self.node}"))
        run.emit(Progress("reset", f"resetting {self.node}"))
        await server_action(self.config, self.server_id, "reset")
        run.emit(Progress("reset", f"{self.node} is booting"))
        deadline = time.monotonic() + NODE_BACK_TIMEOUT_S
        while time.monotonic() < deadline:
            node = await request(api, "GET", f"/api/v1/nodes/{self.node}")
            if is_ready(node) and _boot_id(node) != boot:  # the kubelet of the new boot reports Ready
                report = {"node": self.node, "boot_id": _boot_id(node)}
                return Outcome(Verdict.DONE, f"{self.node} reset and Ready again (a new boot)", report)
            await asyncio.sleep(1.0)
        raise ActionFailed(f"{self.node} is not back from its reset after {NODE_BACK_TIMEOUT_S:.0f} s")

    async def verify(self, run: Run) -> str | None:
        ok = is_ready(await request(await run.kube(), "GET", f"/api/v1/nodes/{self.node}"))
        return None if ok else f"{self.node} is not Ready"
