"""What a drill judges from the live snapshot: its target, blast radius, preflight, recovery and steady state.

Pure functions of a :class:`~console.model.Snapshot` (plus probe samples), so the preflight shown in the
TUI, printed headless and written into the report is one computation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.config import Config
from console.events import Check, ProbeSample
from console.model import Snapshot

if TYPE_CHECKING:
    from actions.drill_scenarios import Scenario


def targets(scenario: Scenario, snap: Snapshot, config: Config) -> list[str]:
    """The valid targets of ``scenario`` right now, the default first."""
    return scenario.targets(snap, config)


def node_of(scenario: Scenario, target: str, snap: Snapshot) -> str | None:
    if scenario.target_kind == "node":
        return target
    return next((p.node for p in snap.pods if p.name == target), None)


def blast_radius(scenario: Scenario, target: str, snap: Snapshot, config: Config) -> str:
    """What the fault touches, in words ("k3s-w1 hosts main-db-1 (primary), docfast-… (prod), …")."""
    db = snap.database
    if scenario.target_kind != "node":
        node = node_of(scenario, target, snap) or "?"
        role = ""
        if db and target == db.primary:
            role = " (primary)"
        elif db and any(m.name == target for m in db.members):
            role = " (replica)"
        return f"{target}{role} on {node}"
    labels = {
        config.namespaces.prod: "prod",
        config.namespaces.staging: "staging",
        config.database.namespace: "database",
        config.namespaces.system: "system",
    }
    parts = []
    for p in snap.pods:
        if p.node != target or p.terminating:
            continue
        if db and p.name == db.primary:
            tag = "primary"
        elif db and any(m.name == p.name for m in db.members):
            tag = "replica"
        else:
            tag = labels.get(p.namespace, p.namespace)
        parts.append(f"{p.name} ({tag})")
    lb = config.hetzner.load_balancer
    if target in lb.targets:
        parts.append(f"load-balancer target of {lb.name}")
    return f"{target} hosts " + (", ".join(parts) if parts else "no pods")


def preflight(scenario: Scenario, target: str | None, snap: Snapshot, config: Config) -> list[Check]:
    """Every check of the cluster before a fault.  Critical ones refuse the drill; the others only yield to
    --force.  (The runner adds its own: no unfinished action, the cluster lock free.)"""
    out: list[Check] = []
    valid = targets(scenario, snap, config)
    out.append(
        Check(
            "target",
            target in valid,
            True,
            f"{target} is a valid {scenario.target_kind}"
            if target in valid
            else f"{target!r} is not one of: {', '.join(valid) or 'none'}",
        )
    )
    not_ready = [n.name for n in snap.nodes if not n.ready or n.unschedulable]
    out.append(
        Check(
            "nodes-ready",
            bool(snap.nodes) and not not_ready,
            True,
            f"all {len(snap.nodes)} nodes Ready and schedulable"
            if snap.nodes and not not_ready
            else f"not Ready or cordoned: {', '.join(not_ready) or 'no nodes seen'}",
        )
    )
    lb = snap.load_balancer
    bad = [
        f"{t.name}:{port} {state}"
        for t in (lb.targets if lb else ())
        for port, state in t.health
        if state != "healthy"
    ]
    out.append(
        Check(
            "lb-targets-healthy",
            lb is not None and not bad,
            True,
            ("all targets healthy" if lb and not bad else ", ".join(bad) or "load balancer not seen"),
        )
    )
    db = snap.database
    db_ok = db is not None and db.ready_instances == db.instances and "healthy" in db.phase.lower()
    out.append(
        Check(
            "cnpg-healthy",
            db_ok,
            True,
            f"{db.phase}, {db.ready_instances}/{db.instances} ready, primary {db.primary}"
            if db
            else "no Cluster seen",
        )
    )
    replicas = [r for r in (db.replication if db else ()) if r.role == "replica"]
    bound = config.database.max_replica_lag_bytes
    lagging = [
        f"{r.instance} {r.state}, {r.lag_bytes} bytes behind"
        for r in replicas
        if r.state != "streaming" or r.lag_bytes is None or r.lag_bytes > bound
    ]
    out.append(
        Check(
            "replica-streaming",
            bool(replicas) and not lagging,
            True,
            (
                f"{len(replicas)} replica(s) streaming within {bound} bytes"
                if replicas and not lagging
                else "; ".join(lagging) or "no replica reported by PostgreSQL"
            ),
        )
    )
    prod = next((p for p in snap.probes if p.name == "prod"), None)
    out.append(
        Check(
            "prod-healthy",
            prod is not None and prod.ok,
            True,
            "prod health answers"
            if prod and prod.ok
            else f"prod health: {prod.error or prod.status}"
            if prod
            else "not probed yet",
        )
    )
    db_backups = [b for b in snap.backups if b.what == "db"]
    fresh = [b for b in db_backups if not b.overdue and not b.error]
    out.append(
        Check(
            "backup-fresh",
            bool(fresh),
            False,
            (
                f"{fresh[0].name}: newest {fresh[0].age_hours:.1f} h old "
                f"(due every {fresh[0].max_age_hours:g} h)"
                if fresh and fresh[0].age_hours is not None
                else "; ".join(f"{b.name}: {b.error or 'overdue'}" for b in db_backups)
                or "no database backup seen"
            ),
        )
    )
    return out


def last_ok(samples: list[ProbeSample], probe: str, n: int = 3) -> bool:
    mine = sorted((s for s in samples if s.probe == probe), key=lambda s: s.at)[-n:]
    return len(mine) == n and all(s.ok for s in mine)


def spread_broken(snap: Snapshot, config: Config) -> list[str]:
    """Deployments from the HA patches whose ready pods share a node while enough nodes are Ready."""
    ready_nodes = sum(1 for n in snap.nodes if n.ready and not n.unschedulable)
    out = []
    for patch in config.ha.patches:
        if patch.kind != "Deployment" or not (patch.anti_affinity or patch.topology_spread):
            continue
        w = next(
            (w for w in snap.workloads if w.namespace == patch.namespace and w.name == patch.object), None
        )
        if w is None or not w.nodes:
            continue
        if len(set(w.nodes)) < min(len(w.nodes), ready_nodes - (1 if patch.topology_spread else 0)):
            out.append(f"{w.namespace}/{w.name}")
    return out


def steady_state(snap: Snapshot, config: Config) -> list[str]:
    """What keeps the cluster from full steady state (empty: steady)."""
    gaps = []
    for n in snap.nodes:
        if not n.ready:
            gaps.append(f"node {n.name} not Ready")
        if n.unschedulable:
            gaps.append(f"node {n.name} cordoned")
        if n.hetzner_status not in (None, "running"):
            gaps.append(f"server {n.name} {n.hetzner_status}")
    lb = snap.load_balancer
    for t in lb.targets if lb else ():
        for port, state in t.health:
            if state != "healthy":
                gaps.append(f"target {t.name}:{port} {state}")
    db = snap.database
    if db is None:
        gaps.append("database not seen")
    else:
        if db.ready_instances != db.instances or "healthy" not in db.phase.lower():
            gaps.append(f"database {db.phase}, {db.ready_instances}/{db.instances} ready")
        replicas = [r for r in db.replication if r.role == "replica" and r.instance != db.primary]
        streaming = [r for r in replicas if r.state == "streaming"]
        if len(streaming) < db.instances - 1:
            gaps.append("replica not streaming: " + ", ".join(f"{r.instance} {r.state}" for r in replicas))
    for w in snap.workloads:
        if w.ready < w.desired:
            gaps.append(f"{w.kind} {w.namespace}/{w.name} {w.ready}/{w.desired} ready")
    gaps += [f"{name} not spread" for name in spread_broken(snap, config)]
    return gaps
