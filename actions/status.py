"""``--action status``: the dashboard's snapshot, once, for scripts and cron.

Starts the same sources the dashboard uses (:class:`~console.live.LiveSources`), waits until each has
answered once (or a deadline passes — a silent source is reported, not waited for forever), builds the
snapshot, stops the sources.  Headless it prints the report alone (``output = "report"``): the snapshot as
text, or as one JSON document with ``--json``; exit 1 when a critical finding holds.

What a source could not see is printed as unknown, never as good: an HA item whose object the
Kubernetes source never listed is "unknown", not "holds".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from console.action import Action, NoParams, Outcome
from console.config import Config
from console.errors import Verdict
from console.model import Snapshot
from console.report import Block, Report, Section, to_document
from console.runner import Run


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


def status_lines(snap: Snapshot) -> list[str]:
    """The snapshot as the text ``--action status`` prints, one line per fact."""
    out = [f"{'LAB' if snap.lab else 'CLUSTER'} {snap.cluster} (context {snap.context})"]
    nodes = ", ".join(
        f"{n.name} {'Ready' if n.ready else 'unknown' if n.ready is None else 'NotReady'}"
        f"{'' if n.hetzner_status in (None, 'running') else ' server ' + n.hetzner_status}"
        for n in snap.nodes
    )
    out.append("nodes:     " + (nodes or "unknown (no node seen)"))
    db = snap.database
    if db:
        out.append(
            f"database:  {db.cluster} {db.phase}, primary {db.primary}, timeline {db.timeline}, "
            f"{db.ready_instances}/{db.instances} ready"
        )
        if not db.replication:
            out.append("replica:   unknown (PostgreSQL did not answer)")
        for r in db.replication:
            if r.role == "replica":
                lag_s = "" if r.lag_seconds is None else f", {r.lag_seconds:.1f} s"
                out.append(f"replica:   {r.instance} {r.state}, {r.lag_bytes} bytes behind{lag_s}")
            elif r.role == "unreachable":
                out.append(f"replica:   {r.instance} unreachable: {r.error}")
    else:
        out.append("database:  unknown (no CNPG cluster seen)")
    for b in snap.backups:
        if b.error:
            out.append(f"backup:    {b.name} unreadable: {b.error}")
        else:
            age = "never" if b.age_hours is None else f"{b.age_hours:.1f} h ago"
            out.append(
                f"backup:    {b.name} newest {b.latest} ({age}, due every "
                f"{b.max_age_hours:g} h){' OVERDUE' if b.overdue else ''}; {b.retention}"
            )
    if not snap.backups:
        out.append("backup:    unknown (no repository read)")
    for rel in snap.releases:
        out.append(f"release:   {rel.environment} {rel.tag} ({rel.ready}/{rel.desired} {rel.rollout})")
    for d in snap.release_diff:
        out.append(f"release:   staging differs: {d}")
    out.append("ha:        " + _count("patches hold", [h.holds for h in snap.ha]))
    lb = snap.load_balancer
    if lb:
        out.append(
            f"lb:        {lb.name} "
            + ", ".join(f"{t.name} {'/'.join(s for _, s in t.health)}" for t in lb.targets)
            + (f" (API budget {lb.budget_remaining}/{lb.budget_limit})" if lb.budget_limit else "")
        )
    else:
        out.append("lb:        unknown (the load balancer was not seen)")
    for p in snap.probes:
        out.append(f"probe:     {p.name} {p.url} -> {p.status or p.error}")
    if not snap.probes:
        out.append("probe:     unknown (no health URL probed)")
    for d in snap.dns:
        out.append(f"dns:       {d.name} {d.type} -> {', '.join(d.answers) or d.error or 'no answer'}")
    if not snap.dns:
        out.append("dns:       unknown (no record resolved)")
    for s in snap.sources:
        if s.state.value != "ok":
            out.append(f"source:    {s.name} {s.state.value}{': ' + s.error if s.error else ''}")
    for f in snap.findings:
        out.append(f"{f.severity.value:<9}  {f.code} {f.subject}: {f.message}")
    unseen = unseen_sources(snap)
    if snap.critical:
        verdict = "CRITICAL"
    elif unseen:
        verdict = f"UNKNOWN — no critical finding in what was seen; not seen: {', '.join(unseen)}"
    else:
        verdict = "healthy"
    out.append("verdict:   " + verdict)
    return out


def unseen_sources(snap: Snapshot) -> list[str]:
    """The sources whose last answer is not a good one (their part of the snapshot is unknown or old)."""
    return [s.name for s in snap.sources if s.state.value != "ok"]


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


class Status(Action[NoParams]):
    name = "status"
    title = "Status snapshot"
    description = "the dashboard's snapshot; exit 1 when a critical finding holds"
    mutating = takes_lock = journaled = needs_yes = False
    output = "report"

    async def execute(self, run: Run) -> Outcome:
        snap = await collect(self.config)
        critical = [f for f in snap.findings if f.severity.value == "critical"]
        if not critical:
            return Outcome(Verdict.DONE, "healthy", StatusReport(snap))
        said = ", ".join(f"{f.code} {f.subject}" for f in critical[:4]) + (" …" if len(critical) > 4 else "")
        return Outcome(Verdict.FAIL, f"critical: {said}", StatusReport(snap))
