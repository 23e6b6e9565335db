"""``--action status``: the dashboard's snapshot, once, for scripts and cron.

Starts the same sources the dashboard uses (:class:`~console.live.LiveSources`), waits until each has
answered once (or a deadline passes — a silent source is reported, not waited for forever), builds the
snapshot, stops the sources.  Headless it prints the report alone (``output = "report"``): the snapshot as
text, or as one JSON document with ``--json``; exit 1 when a critical finding holds.

What a source could not see is printed as unknown, never as good: an HA item whose object the
Kubernetes source never listed is "unknown", not "holds".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from console.action import Inspection, NoParams, Outcome
from console.config import Config
from console.errors import Verdict
from console.model import (
    BackupRepo,
    Database,
    DbCertificate,
    DbInstance,
    DbPooler,
    DisruptionBudget,
    LoadBalancer,
    Node,
    Replication,
    ReplicationSlot,
    Snapshot,
)
from console.report import Block, Report, Section, to_document
from console.runner import Run
from console.units import duration

T = TypeVar("T")


async def collect(config: Config, timeout: float = 10.0) -> Snapshot:
    from console.live import LiveSources
    from console.snapshot import build
    from console.store import ClusterStore

    store = ClusterStore()
    live = LiveSources(store, config, postgres_first=True)
    try:
        await live.start()
        await live.synced(timeout)
        return build(store, config, config.kubernetes.context)
    finally:
        await live.stop()


def _count(what: str, values: list[bool | None]) -> str:
    """``3/4 hold`` — with what could not be judged said as unknown, never counted as good."""
    good = sum(1 for v in values if v is True)
    unknown = sum(1 for v in values if v is None)
    text = f"{good}/{len(values)} {what}"
    return text + (f", {unknown} unknown (not seen)" if unknown else "")


def _each(label: str, items: Sequence[T], say: Callable[[T], str], unknown: str) -> list[str]:
    """A line per item, or one line saying the fact is unknown (and why): never an empty, good-looking
    section."""
    head = f"{label + ':':<11}"
    return [head + say(i) for i in items] or [f"{head}unknown ({unknown})"]


def _listed(label: str, items: Sequence[T] | None, say: Callable[[T], str], unknown: str) -> list[str]:
    """As :func:`_each`, for a fact that can be known to be empty: None is unknown, empty is "none"."""
    if items is not None and not items:
        return [f"{label + ':':<11}none"]
    return _each(label, items or (), say, unknown)


def _node(n: Node) -> str:
    state = "Ready" if n.ready else "unknown" if n.ready is None else "NotReady"
    server = "" if n.hetzner_status in (None, "running") else f" server {n.hetzner_status}"
    return f"{n.name} {state}{server}"


def _database(db: Database | None) -> list[str]:
    """The database at ``kubectl cnpg status -v`` depth, a line per fact (instance, replica, slot, PDB,
    certificate, pooler); what was not seen says so."""
    if db is None:
        return _each("database", [], str, "no CNPG cluster seen")
    seen = [db] if db.system_id or db.current_lsn else []
    slots = [(r.instance, s) for r in db.replication for s in r.slots] if seen else None
    replicas = [r for r in db.replication if r.role != "primary"]
    return [
        _database_head(db),
        *_each("postgres", seen, _server, "PostgreSQL did not answer"),
        *_each("instance", db.members, _instance, "no instance listed"),
        *_each("replica", replicas, _replica, "PostgreSQL did not answer"),
        *_listed("slot", slots, _slot, "PostgreSQL did not answer"),
        *_listed("pdb", db.disruption_budgets, _budget, "PodDisruptionBudgets not listed"),
        *_listed("db-cert", db.certificates, _db_cert, "the Cluster's status names none"),
        *_each(
            "pooler", [db.pooler] if db.pooler else [], lambda p: _pooler(p, db), "the Pooler was not seen"
        ),
    ]


def _database_head(db: Database) -> str:
    flags = [f"SWITCHOVER to {db.target_primary}"] if db.switchover else []
    flags += ["HIBERNATED"] if db.hibernated else []
    flags += [f"fenced {', '.join(db.fenced)}"] if db.fenced else []
    return (
        f"database:  {db.cluster} {db.phase}, primary {db.primary}, timeline {db.timeline}, "
        f"{db.ready_instances}/{db.instances} ready, image {db.image or '?'}, primary since "
        f"{db.primary_since or '?'} (uptime {duration(db.primary_uptime_s)})"
        + "".join(f", {f}" for f in flags)
    )


def _server(db: Database) -> str:
    return (
        f"system id {db.system_id or '?'}, WAL {db.wal_file or '?'} at {db.current_lsn or '?'}, "
        f"primary's PostgreSQL started {db.primary_started_at or '?'}"
    )


def _instance(m: DbInstance) -> str:
    restarts = "?" if m.restarts is None else m.restarts
    fenced = ", FENCED" if m.fenced else ""
    return (
        f"{m.name} {m.role} {m.status or '?'}, {'ready' if m.ready else 'NOT ready'} on {m.node or '?'}, "
        f"QoS {m.qos or '?'}, {restarts} restarts{fenced}"
    )


def _replica(r: Replication) -> str:
    if r.role == "unreachable":
        return f"{r.instance} unreachable: {r.error}"
    lag_s = "" if r.lag_seconds is None else f", {r.lag_seconds:.1f} s"
    lsns = " ".join(
        f"{k} {v or '?'}"
        for k, v in zip(
            ("sent", "write", "flush", "replay"),
            (r.sent_lsn, r.write_lsn, r.flush_lsn, r.replay_lsn),
            strict=True,
        )
    )
    slot = f"slot {r.slot} retains {r.slot_retained_bytes} bytes" if r.slot else "slot ?"
    return (
        f"{r.instance} {r.state}, {r.lag_bytes} bytes behind{lag_s}; receiver {r.receiver or '?'}, "
        f"{r.sync_state or '?'}, {lsns}; {slot}"
    )


def _slot(item: tuple[str, ReplicationSlot]) -> str:
    on, s = item
    retained = "?" if s.retained_bytes is None else f"{s.retained_bytes} bytes"
    return f"{s.name} on {on} {'active' if s.active else 'INACTIVE'}, retains {retained}"


def _budget(b: DisruptionBudget) -> str:
    allowed = "?" if b.disruptions_allowed is None else b.disruptions_allowed
    bound = f"minAvailable {b.min_available}" if b.min_available else f"maxUnavailable {b.max_unavailable}"
    return f"{b.name} {allowed} disruptions allowed ({bound})"


def _db_cert(c: DbCertificate) -> str:
    return f"{c.name} expires {c.not_after} ({'?' if c.days_left is None else f'{c.days_left:g}'} days)"


def _pooler(p: DbPooler, db: Database) -> str:
    ready = sum(1 for x in db.poolers if x.ready)
    paused = "PAUSED" if p.paused else "not paused"
    return f"{p.name} {p.type or '?'} {p.mode or '?'}, {paused}, {ready}/{p.instances or '?'} pods ready"


def _backup(b: BackupRepo) -> str:
    if b.error:
        return f"{b.name} unreadable: {b.error}"
    age = "never" if b.age_hours is None else f"{b.age_hours:.1f} h ago"
    overdue = " OVERDUE" if b.overdue else ""
    return f"{b.name} newest {b.latest} ({age}, due every {b.max_age_hours:g} h){overdue}; {b.retention}"


def _lb(lb: LoadBalancer) -> str:
    targets = ", ".join(f"{t.name} {'/'.join(s for _, s in t.health)}" for t in lb.targets)
    budget = f" (API budget {lb.budget_remaining}/{lb.budget_limit})" if lb.budget_limit else ""
    return f"{lb.name} {targets}{budget}"


def status_lines(snap: Snapshot) -> list[str]:
    """The snapshot as the text ``--action status`` prints, one line per fact."""
    out = [f"{'LAB' if snap.lab else 'CLUSTER'} {snap.cluster} (context {snap.context})"]
    out += _each("nodes", [", ".join(map(_node, snap.nodes))] if snap.nodes else [], str, "no node seen")
    out += _database(snap.database)
    out += _each("backup", snap.backups, _backup, "no repository read")
    out += [f"release:   {r.environment} {r.tag} ({r.ready}/{r.desired} {r.rollout})" for r in snap.releases]
    out += [f"release:   staging differs: {d}" for d in snap.release_diff]
    out.append("ha:        " + _count("patches hold", [h.holds for h in snap.ha]))
    lbs = [snap.load_balancer] if snap.load_balancer else []
    out += _each("lb", lbs, _lb, "the load balancer was not seen")
    out += _each("probe", snap.probes, lambda p: f"{p.name} {p.url} -> {p.status or p.error}",
                 "no health URL probed")  # fmt: skip
    out += _each("dns", snap.dns, lambda d: f"{d.name} {d.type} -> {', '.join(d.answers) or d.error}",
                 "no record resolved")  # fmt: skip
    out += [
        f"source:    {s.name} {s.state.value}{': ' + s.error if s.error else ''}"
        for s in snap.sources
        if s.state.value != "ok"
    ]
    out += [f"{f.severity.value:<9}  {f.code} {f.subject}: {f.message}" for f in snap.findings]
    out.append("verdict:   " + _verdict(snap))
    return out


def _verdict(snap: Snapshot) -> str:
    unseen = unseen_sources(snap)
    if snap.critical:
        return "CRITICAL"
    if unseen:
        return f"UNKNOWN — no critical finding in what was seen; not seen: {', '.join(unseen)}"
    return "healthy"


def unseen_sources(snap: Snapshot) -> list[str]:
    """The sources whose last answer is not a good one (their part of the snapshot is unknown or old)."""
    return [s.name for s in snap.sources if s.essential and s.state.value != "ok"]


@dataclass(frozen=True)
class StatusReport(Report):
    """The snapshot: its JSON document is the snapshot's, plus ``healthy``."""

    snapshot: Snapshot

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = to_document(self.snapshot)
        doc["healthy"] = not self.snapshot.critical
        doc["unseen"] = unseen_sources(self.snapshot)  # "healthy" speaks only for what was seen
        return doc

    def sections(self, full: bool) -> list[Section]:
        return [Block("", "\n".join(status_lines(self.snapshot)))]


class Status(Inspection[NoParams]):
    name = "status"
    title = "Status snapshot"
    description = "the dashboard's snapshot; exit 1 when a critical finding holds"
    output = "report"

    async def execute(self, run: Run) -> Outcome:
        snap = await collect(self.config)
        critical = [f for f in snap.findings if f.severity.value == "critical"]
        if not critical:
            return Outcome(Verdict.DONE, "healthy", StatusReport(snap))
        said = ", ".join(f"{f.code} {f.subject}" for f in critical[:4]) + (" …" if len(critical) > 4 else "")
        return Outcome(Verdict.FAIL, f"critical: {said}", StatusReport(snap))
