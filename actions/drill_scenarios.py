"""The drill scenarios: each one's fault, its targets (the default first), what "recovered" means for it,
and the journal keys its rollback undoes.

A scenario sees the running drill through :class:`DrillState` (the config, the target, a fresh snapshot,
the marks and samples so far) and acts through it (journal the fault, then apply it).  Faults are journaled
*before* they are applied, under a ``key`` that :func:`undo` knows — which is also how a console killed
mid-drill is recovered later (``--action recover``), so the keys are an interface kept across versions:
``power``, ``cordon``, ``switchover``, ``kill``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from actions.drill_checks import last_ok
from console.clients.kube import delete, patch, set_schedulable
from console.config import Config
from console.events import Event, Log, ProbeSample, StepFinished, StepStarted
from console.model import Snapshot


class DrillState(Protocol):
    """What a scenario may read and do of the drill it runs in."""

    config: Config
    target: str | None
    mode: str
    marks: dict[str, float]
    before: dict[str, Any]
    samples: list[ProbeSample]

    def snapshot(self) -> Snapshot: ...

    def emit(self, event: Event) -> None: ...

    def applied(self, key: str, **data: Any) -> None: ...

    def evictable(self, node: str) -> list[tuple[str, str]]: ...

    async def api(self) -> Any: ...

    async def drain(self, node: str) -> None: ...


def _cnpg_status(config: Config) -> str:
    db = config.database
    return f"/apis/postgresql.cnpg.io/v1/namespaces/{db.namespace}/clusters/{db.cluster}/status"


class Scenario:
    """Base: the text the plan and the report show, and the behaviour the subclasses give."""

    name: ClassVar[str]
    title: ClassVar[str]
    target_kind: ClassVar[str]  # node | instance | pooler-pod
    fault: ClassVar[str]
    rollback: ClassVar[str]
    moves_primary: ClassVar[bool] = False  # a new primary is expected (its SLO is judged)

    def targets(self, snap: Snapshot, config: Config) -> list[str]:
        """The valid targets right now, the default first: for node scenarios the primary's node (the
        drill worth running is the one that moves the database)."""
        db = snap.database
        names = [n.name for n in config.nodes]
        home = next((m.node for m in db.members if m.name == db.primary), None) if db else None
        return sorted(names, key=lambda n: n != home)

    async def apply(self, d: DrillState) -> str:
        """Journal the fault, apply it; what was done, in words."""
        raise NotImplementedError

    def observed(self, d: DrillState, snap: Snapshot, at: float) -> None:
        """A look at the cluster after the fault (marks the moments the report measures from)."""

    def recovered(self, d: DrillState, snap: Snapshot) -> bool:
        raise NotImplementedError


def _serving(d: DrillState) -> bool:
    return last_ok(d.samples, "http-prod") and last_ok(d.samples, "db-write")


def _primary_ready(snap: Snapshot) -> bool:
    db = snap.database
    return db is not None and any(m.name == db.primary and m.ready for m in db.members)


def _prod_at_capacity(snap: Snapshot, config: Config) -> bool:
    """Production back at full capacity elsewhere, not merely answering: that is what the pods'
    NoExecute tolerations decide (10 s patched, 300 s stock)."""
    return all(w.ready >= w.desired for w in snap.workloads if w.namespace == config.namespaces.prod)


class NodeDown(Scenario):
    name = "node-down"
    title = "Node down (Hetzner power off / shutdown)"
    target_kind = "node"
    fault = "power the node's Hetzner server off (hard) or shut it down (graceful)"
    rollback = "power the server on; wait until the node is Ready"

    async def apply(self, d: DrillState) -> str:
        from console.clients.hetzner import server_action, server_id  # hcloud only where it is used

        target = d.target or ""
        action = "poweroff" if d.mode == "hard" else "shutdown"
        sid = await server_id(d.config, target)
        d.applied("power", node=target, server_id=sid)
        result = await server_action(d.config, sid, action)
        return f"server {target}: {action} {result}"

    def observed(self, d: DrillState, snap: Snapshot, at: float) -> None:
        node = next((n for n in snap.nodes if n.name == d.target), None)
        if "target_down" not in d.marks and node is not None and not node.ready:
            d.marks["target_down"] = at

    def recovered(self, d: DrillState, snap: Snapshot) -> bool:
        db = snap.database
        if not _serving(d) or db is None:
            return False
        # Not before the failure has shown: a node is recovered from only once it was seen lost.
        old = d.before.get("primary")
        on_target = old and any(m.name == old and m.node == d.target for m in db.members)
        seen_down = d.marks.get("target_down") is not None
        return (
            seen_down
            and _primary_ready(snap)
            and _prod_at_capacity(snap, d.config)
            and (not on_target or db.primary != old)
        )


class NodeDrain(Scenario):
    name = "node-drain"
    title = "Node drain (maintenance path)"
    target_kind = "node"
    fault = "cordon the node, let CNPG move the primary off it, evict its pods (PDBs honoured)"
    rollback = "uncordon the node"

    async def apply(self, d: DrillState) -> str:
        target = d.target or ""
        d.applied("cordon", node=target)
        await set_schedulable(await d.api(), target, False)
        d.emit(Log("info", f"cordoned {target}"))
        await d.drain(target)
        return f"{target} cordoned and drained"

    def recovered(self, d: DrillState, snap: Snapshot) -> bool:
        return (
            _serving(d)
            and _primary_ready(snap)
            and _prod_at_capacity(snap, d.config)
            and not d.evictable(d.target or "")
        )


class DbSwitchover(Scenario):
    name = "db-switchover"
    title = "Database switchover (planned)"
    target_kind = "instance"
    fault = "CNPG switchover: patch the Cluster's status.targetPrimary to the replica"
    rollback = "none needed: the old primary follows the new one as a replica"
    moves_primary = True

    def targets(self, snap: Snapshot, config: Config) -> list[str]:
        db = snap.database
        return [m.name for m in db.members if m.name != db.primary] if db else []

    async def apply(self, d: DrillState) -> str:
        d.applied("switchover", to=d.target)
        await patch(await d.api(), _cnpg_status(d.config), {"status": {"targetPrimary": d.target}})
        return f"switchover to {d.target} requested"

    def recovered(self, d: DrillState, snap: Snapshot) -> bool:
        db = snap.database
        return (
            _serving(d)
            and db is not None
            and db.primary == d.target
            and _primary_ready(snap)
            and "switchover" not in db.phase.lower()
        )


class DbPrimaryKill(Scenario):
    name = "db-primary-kill"
    title = "Database primary killed"
    target_kind = "instance"
    fault = "delete the primary's pod with a 1 s grace period (CNPG fails over)"
    rollback = "none needed: CNPG re-creates the pod, which rejoins as a replica"
    moves_primary = True

    def targets(self, snap: Snapshot, config: Config) -> list[str]:
        db = snap.database
        return [db.primary] if db and db.primary else []

    async def apply(self, d: DrillState) -> str:
        ns = d.config.database.namespace
        d.applied("kill", pod=d.target)
        await delete(await d.api(), f"/api/v1/namespaces/{ns}/pods/{d.target}", grace_period_s=1)
        return f"pod {d.target} deleted (grace 1 s)"

    def recovered(self, d: DrillState, snap: Snapshot) -> bool:
        db = snap.database
        return (
            _serving(d) and db is not None and db.primary != d.before.get("primary") and _primary_ready(snap)
        )


class PoolerKill(Scenario):
    name = "pooler-kill"
    title = "Pooler pod killed"
    target_kind = "pooler-pod"
    fault = "delete one pooler pod"
    rollback = "none needed: its Deployment replaces it"

    def targets(self, snap: Snapshot, config: Config) -> list[str]:
        db = snap.database
        return [p.name for p in db.poolers if not p.terminating] if db else []

    async def apply(self, d: DrillState) -> str:
        ns = d.config.database.namespace
        d.applied("kill", pod=d.target)
        await delete(await d.api(), f"/api/v1/namespaces/{ns}/pods/{d.target}")
        return f"pod {d.target} deleted"

    def recovered(self, d: DrillState, snap: Snapshot) -> bool:
        db = d.config.database
        pooler = next(
            (w for w in snap.workloads if w.namespace == db.namespace and w.name == db.pooler), None
        )
        return (
            _serving(d)
            and pooler is not None
            and pooler.ready >= pooler.desired
            and d.target not in {p.name for p in snap.pods}
        )


SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (NodeDown(), NodeDrain(), DbSwitchover(), DbPrimaryKill(), PoolerKill())
}


async def undo(config: Config, api: Any, data: dict[str, Any], emit: Callable[[Event], None]) -> str:
    """Undo one journaled fault; safe to repeat (the recovery after a killed console calls it too)."""
    key = data.get("key")
    if key == "power":
        from console.clients.hetzner import server_action

        emit(StepStarted("rollback", f"power on {data['node']}"))
        result = await server_action(config, int(data["server_id"]), "poweron")
        emit(StepFinished("rollback", True, f"server {data['node']}: poweron {result}"))
        return f"{data['node']} powered on"
    if key == "cordon":
        emit(StepStarted("rollback", f"uncordon {data['node']}"))
        await set_schedulable(api, data["node"], True)
        emit(StepFinished("rollback", True, f"{data['node']} uncordoned"))
        return f"{data['node']} uncordoned"
    emit(Log("info", f"{key}: nothing to undo (the cluster heals itself)"))
    return ""
