"""Dashboard panels: each turns one part of the :class:`~console.model.Snapshot` into table rows.

A panel owns no I/O.  ``rows()`` is its fetch side (pure, from the snapshot); ``Panel.show()`` its render
side: rows are updated by key inside one batch — ``update_cell`` only where a value changed, stale rows
removed, new rows added — so one pod changing repaints one cell, never the table.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual.widgets.data_table import ColumnKey

from console.model import (
    Database,
    DbInstance,
    Pod,
    Replication,
    Severity,
    Snapshot,
    SourceState,
    SourceStatus,
)
from console.units import duration, share, size, usage_cell
from screens.plain_table import PlainTable

Row = tuple[str, ...]
RowsFn = Callable[[Snapshot], list[tuple[str, Row]]]


def _yn(value: bool | None) -> str:
    return "yes" if value else ("?" if value is None else "NO")


def nodes_rows(s: Snapshot) -> list[tuple[str, Row]]:
    rows: list[tuple[str, Row]] = []
    for n in s.nodes:
        used = s.node_usage.get(n.name)
        cpu, mem = (used.cpu_m, used.memory) if used else (None, None)
        rows.append(
            (
                n.name,
                (
                    n.name,
                    "Ready" if n.ready else "?" if n.ready is None else "NotReady",
                    f"{usage_cell(cpu, None, 'cpu')} {share(cpu, n.cpu_allocatable_m)}".strip(),
                    f"{usage_cell(mem, None, 'memory')} {share(mem, n.memory_allocatable)}".strip(),
                    ",".join(n.roles) or "-",
                    ",".join(t.split(":")[0].rsplit("/", 1)[-1] for t in n.taints) or "-",
                    n.version,
                    n.hetzner_status or "?",
                    n.internal_ip,
                    n.external_ip,
                    str(n.pods),
                ),
            )
        )
    return rows


# Up to this many nodes the spread column is a full node × workload matrix (zeros show where a replica is
# missing, as on the seed's three nodes); on larger clusters it lists only the nodes holding the workload —
# 500 "node:0" entries per row were unreadable and cost more to render than the rest of the screen.
MATRIX_MAX_NODES = 8


def _spread(node_names: list[str], on: tuple[str, ...]) -> str:
    counts: dict[str, int] = {}
    for nm in on:
        counts[nm] = counts.get(nm, 0) + 1
    shown = node_names if len(node_names) <= MATRIX_MAX_NODES else sorted(counts)
    return " ".join(f"{nm.rsplit('-', 1)[-1]}:{counts.get(nm, 0)}" for nm in shown)


def workloads_rows(s: Snapshot) -> list[tuple[str, Row]]:
    names = sorted({n.name for n in s.nodes})
    out: list[tuple[str, Row]] = []
    for w in s.workloads:
        spread = _spread(names, w.nodes)
        if w.kind == "daemonset" or w.desired < 2:
            holds = "-"
        else:
            holds = "spread" if len(set(w.nodes)) == len(w.nodes) and len(w.nodes) > 1 else "STACKED"
        out.append(
            (
                f"{w.namespace}/{w.name}",
                (w.namespace, w.name, w.kind, f"{w.ready}/{w.desired}", spread, holds),
            )
        )
    return out


def _known(value: object) -> str:
    return "?" if value is None else str(value)


def _image_tag(image: str | None) -> str:
    return "image ?" if not image else image.rsplit("/", 1)[-1]


def _cluster_row(db: Database, now: float) -> tuple[str, Row]:
    """The cluster as ``kubectl cnpg status`` heads it: what is out of the ordinary first (switchover,
    hibernation, fencing), then the phase, WAL file, system ID, image and how long the primary has held
    the role.  The WAL and position cells stay as narrow as the instances' (the lag must stay in view)."""
    notes = [f"SWITCHOVER to {db.target_primary}"] if db.switchover else []
    notes += ["HIBERNATED"] if db.hibernated else []
    notes += [f"FENCED {', '.join(db.fenced)}"] if db.fenced else []
    notes += [
        db.phase.removeprefix("Cluster in ").removesuffix(" state"),
        f"WAL {_known(db.wal_file)}",
        f"sysid {_known(db.system_id)}",
        _image_tag(db.image),
        f"primary {db.primary or '?'} for {_age(db.primary_since, now)}",
    ]
    return (
        db.cluster,
        (
            db.cluster,
            "cluster",
            "-",
            f"{db.ready_instances}/{db.instances} ready",
            f"timeline {_known(db.timeline)}",
            f"LSN {_known(db.current_lsn)}",
            " · ".join(notes),
        ),
    )


def _instance_detail(m: DbInstance, r: Replication | None, now: float) -> str:
    """An instance's CNPG status, QoS and restarts; a replica's sync state and slot; its PostgreSQL's age."""
    parts = ["FENCED"] if m.fenced else []
    if r is not None and r.role == "replica":
        parts.append(_known(r.sync_state))
        if r.receiver not in (None, r.state):
            parts.append(f"receiver {r.receiver}")
        parts.append(f"slot {size(r.slot_retained_bytes)}" if r.slot else "slot ?")
    restarts = "? restarts" if m.restarts is None else f"{m.restarts} restarts"
    parts += [_known(m.status), _known(m.qos), restarts]
    if r is not None and r.role != "unreachable":
        parts.append(f"pg up {_age(r.started_at, now)}")
    return " · ".join(parts)


def _instance_row(db: Database, m: DbInstance, r: Replication | None, now: float) -> tuple[str, Row]:
    if r is None:
        wal, lag = "", ""
    elif r.role == "primary":
        wal, lag = f"primary, timeline {db.timeline}", f"LSN {r.lsn}"
    elif r.role == "replica":
        secs = "" if r.lag_seconds is None else f", {r.lag_seconds:.1f} s"
        wal, lag = r.state, f"{size(r.lag_bytes)}{secs}"
    else:
        wal, lag = "unreachable", r.error or ""
    pod = "ready" if m.ready else "NOT READY"
    return m.name, (m.name, m.role, m.node or "-", pod, wal, lag, _instance_detail(m, r, now))


def _pooler_row(db: Database) -> tuple[str, Row]:
    pooler = db.pooler
    ready = sum(1 for p in db.poolers if p.ready and not p.terminating)
    if pooler is None:
        return f"pooler:{db.cluster}", (
            "pooler",
            "pooler",
            "-",
            f"{ready}/? ready",
            "",
            "",
            "Pooler not seen",
        )
    mode = f"{_known(pooler.type)} · {_known(pooler.mode)} · {'PAUSED' if pooler.paused else 'not paused'}"
    return (
        f"pooler:{pooler.name}",
        (pooler.name, "pooler", "-", f"{ready}/{_known(pooler.instances)} ready", "", "", mode),
    )


def _budget_rows(db: Database) -> list[tuple[str, Row]]:
    if db.disruption_budgets is None:
        return [(f"pdb:{db.cluster}", ("PDBs", "pdb", "-", "?", "", "", "PodDisruptionBudgets not listed"))]
    return [
        (
            f"pdb:{b.name}",
            (
                b.name,
                "pdb",
                "-",
                f"{_known(b.disruptions_allowed)} allowed",
                "",
                "",
                f"minAvailable {b.min_available}"
                if b.min_available is not None
                else f"maxUnavailable {_known(b.max_unavailable)}",
            ),
        )
        for b in db.disruption_budgets
    ] or [(f"pdb:{db.cluster}", ("PDBs", "pdb", "-", "none", "", "", "no PodDisruptionBudget"))]


def _certificates_row(db: Database) -> tuple[str, Row]:
    certs = db.certificates
    days = [c.days_left for c in certs or () if c.days_left is not None]
    soonest = f"{min(days):g} d" if days else "?"
    said = " · ".join(
        f"{c.name.removeprefix(db.cluster + '-')} {'?' if c.days_left is None else f'{c.days_left:g}'} d"
        for c in certs or ()
    )
    return f"certs:{db.cluster}", (
        "certificates",
        "certs",
        "-",
        soonest,
        "",
        "",
        said or "expiry not reported",
    )


def database_rows(s: Snapshot) -> list[tuple[str, Row]]:
    """The cluster, its instances, certificates, PDBs, the Pooler and its pods: ``kubectl cnpg status -v``."""
    db = s.database
    if db is None:
        return []
    now = time.time()
    repl = {r.instance: r for r in db.replication}
    rows = [_cluster_row(db, now), *(_instance_row(db, m, repl.get(m.name), now) for m in db.members)]
    rows += [_certificates_row(db), *_budget_rows(db), _pooler_row(db)]
    rows += [
        (p.name, (p.name, "pooler", p.node or "-", "ready" if p.ready else "NOT READY", "", "", ""))
        for p in db.poolers
    ]
    return rows


# The pods panel shows this many, worst first (the filter searches all of them first): past a few dozen
# rows nobody reads on, and every row is rebuilt when the order changes (at scale, several times a second).
PODS_SHOWN = 50


def _age(stamp: str | None, now: float) -> str:
    if not stamp:
        return "?"
    try:
        secs = now - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "?"
    return duration(secs)


def _pod_badness(p: Pod) -> int:
    """Worst first: waiting (crash loop, image pull), unschedulable, not ready, restarted, fine."""
    if p.waiting:
        return 0
    if p.phase == "Pending":
        return 1
    if not p.ready and p.phase not in ("Succeeded",):
        return 2
    return 3 if p.restarts else 4


def pods_rows(s: Snapshot, filter_text: str = "", namespace: str | None = None) -> list[tuple[str, Row]]:
    """The worst ``PODS_SHOWN`` pods of those in ``namespace`` (None: every one) that match the filter."""
    now = time.time()
    pods = [
        p
        for p in s.pods
        if (namespace is None or p.namespace == namespace)
        and (
            not filter_text or filter_text in f"{p.namespace} {p.name} {p.node} {p.phase} {p.waiting}".lower()
        )
    ]
    worst = heapq.nsmallest(PODS_SHOWN, pods, key=lambda p: (_pod_badness(p), p.namespace, p.name))
    rows: list[tuple[str, Row]] = []
    for p in worst:
        reason = (
            p.waiting or (f"Pending: {p.unschedulable}" if p.unschedulable else "") or p.last_terminated or ""
        )
        restarts = (
            f"{p.restarts} ({_age(p.last_terminated_at, now)} ago)"
            if p.restarts and p.last_terminated_at
            else str(p.restarts)
        )
        state = "Terminating" if p.terminating else p.phase
        used = s.pod_usage.get(f"{p.namespace}/{p.name}")
        rows.append(
            (
                f"{p.namespace}/{p.name}",
                (
                    p.namespace,
                    p.name,
                    p.node or "-",
                    state,
                    f"{p.containers_ready}/{p.containers}",
                    usage_cell(used.cpu_m if used else None, p.cpu_request_m, "cpu"),
                    usage_cell(used.memory if used else None, p.memory_limit, "memory"),
                    restarts,
                    reason,
                    _age(p.created, now),
                ),
            )
        )
    return rows


def backups_rows(s: Snapshot) -> list[tuple[str, Row]]:
    out: list[tuple[str, Row]] = []
    for b in s.backups:
        if b.error:
            out.append((b.name, (b.name, b.schedule, "?", "?", b.error)))
            continue
        age = "never" if b.age_hours is None else f"{b.age_hours:.1f} h"
        state = "OVERDUE" if b.overdue else "ok"
        notes = (
            b.retention
            + (f"; check {b.checked}" if b.checked else "")
            + (f"; restore verified {b.verified}" if b.verified else "")
        )
        out.append((b.name, (b.name, b.schedule, f"{age} / {b.max_age_hours:g} h", state, notes)))
    return out


def ha_rows(s: Snapshot) -> list[tuple[str, Row]]:
    return [
        (
            h.name,
            (
                h.name,
                h.subject,
                "holds"
                if h.holds
                else (
                    "?"
                    if h.holds is None
                    else f"DRIFTED since {datetime.fromtimestamp(h.since).strftime('%H:%M:%S')}"
                    if h.since
                    else "DRIFTED"
                ),
                "; ".join(h.drift) or h.description,
            ),
        )
        for h in s.ha
    ]


def release_rows(s: Snapshot) -> list[tuple[str, Row]]:
    from console.releases import short, tag

    rows: list[tuple[str, Row]] = []
    for r in s.releases:
        per_node: dict[str, list[str]] = {}
        for p in r.pods:
            node = p.node.rsplit("-", 1)[-1] or "?"
            per_node.setdefault(node, []).append(p.tag + ("" if p.ready else " (not ready)"))
        pods = " ".join(f"{n}:{','.join(v)}" for n, v in sorted(per_node.items())) or "-"
        past = " ".join(f"r{h.revision} {tag(h.image)}" for h in r.history[1:4]) or "-"
        rollout = f"{r.ready}/{r.desired} {r.rollout}"
        rows.append((r.environment, (r.environment, r.tag, short(r.digests), rollout, past, pods)))
    if s.releases:
        diff = s.release_diff or ("nothing: production runs what staging runs",)
        rows += [
            (f"diff:{i}", ("staging ≠ prod" if i == 0 else "", "", "", "", "", d)) for i, d in enumerate(diff)
        ]
    return rows


def timeline_rows(s: Snapshot) -> list[tuple[str, Row]]:
    return [
        (
            f"{t.at}:{t.subject}:{t.reason}:{i}",
            (t.at[11:19] or t.at, t.source, t.subject, ("! " if t.warning else "") + t.reason, t.message),
        )
        for i, t in enumerate(s.timeline)
    ]


def lb_rows(s: Snapshot) -> list[tuple[str, Row]]:
    lb = s.load_balancer
    if lb is None:
        return []
    return [
        (str(t.server_id), (t.name, *(f"{port}:{status}" for port, status in t.health))) for t in lb.targets
    ]


def cert_rows(s: Snapshot) -> list[tuple[str, Row]]:
    return [
        (
            f"{c.namespace}/{c.name}",
            (
                c.namespace,
                ",".join(c.dns_names),
                "?" if c.days_left is None else f"{c.days_left:g}",
                _yn(c.ready),
            ),
        )
        for c in s.certificates
    ]


def endpoints_rows(s: Snapshot) -> list[tuple[str, Row]]:
    rows: list[tuple[str, Row]] = []
    for p in s.probes:
        state = f"HTTP {p.status}" if p.status else (p.error or "no answer")
        latency = "" if p.latency_ms is None else f"{p.latency_ms:.0f} ms"
        rows.append(
            (f"probe:{p.name}", (p.name, p.url, "ok" if p.ok else "FAILING", f"{state} {latency}".strip()))
        )
    lb_ip = s.load_balancer.public_ipv4 if s.load_balancer else None
    for d in s.dns:
        answers = ", ".join(d.answers) or d.error or "no answer"
        # An A record is right when it points at the live load balancer (a rebuilt one has a new address;
        # see console/snapshot.py _dns_findings); before the balancer is seen, when it matches config.
        ok = lb_ip in d.answers if d.type == "A" and lb_ip else d.ok
        note = " (the load balancer)" if d.type == "A" and lb_ip in d.answers else ""
        rows.append(
            (f"dns:{d.name}:{d.type}", (f"DNS {d.type}", d.name, "ok" if ok else "WRONG", answers + note))
        )
    return rows


def verdict(s: Snapshot) -> str:
    """healthy, degraded (a warning, or a source not seen) or critical."""
    if s.critical:
        return "critical"
    if any(f.severity is Severity.WARNING for f in s.findings) or any(
        x.essential and x.state is not SourceState.OK for x in s.sources
    ):
        return "degraded"
    return "healthy"


def summary_text(s: Snapshot) -> str:
    """The line under the banner — the verdict and the figures an operator looks for first:
    ``CRITICAL │ nodes 3/3 │ db main-db-1 lag 16 MiB │ lb 2/2 │ …`` (two lines on an 80-column terminal)."""
    ready = sum(1 for n in s.nodes if n.ready)
    parts = [verdict(s).upper(), f"nodes {ready}/{len(s.nodes)}" if s.nodes else "nodes ?"]
    db = s.database
    lags = (
        [r.lag_bytes for r in db.replication if r.role == "replica" and r.lag_bytes is not None] if db else []
    )
    parts.append(f"db {db.primary or '?'} lag {size(max(lags)) if lags else '?'}" if db else "db ?")
    lb = s.load_balancer
    healthy = sum(1 for t in lb.targets if t.health and all(h == "healthy" for _, h in t.health)) if lb else 0
    parts.append(f"lb {healthy}/{len(lb.targets)}" if lb else "lb ?")
    ages = [b.age_hours for b in s.backups if b.age_hours is not None]
    parts.append(f"backup {min(ages):.1f} h" if ages else "backup ?")
    days = [c.days_left for c in s.certificates if c.days_left is not None]
    parts.append(f"cert {min(days):g} d" if days else "cert ?")
    marks = {Severity.CRITICAL: "!!", Severity.WARNING: "!", Severity.INFO: "i"}
    counts = [
        f"{marks[sev]}{n}" for sev in Severity if (n := sum(1 for f in s.findings if f.severity is sev))
    ]
    parts.append(" ".join(counts) or "no findings")
    return " │ ".join(parts)


def findings_rows(s: Snapshot) -> list[tuple[str, Row]]:
    marks = {Severity.CRITICAL: "!!", Severity.WARNING: "!", Severity.INFO: "i"}
    return [(f"{f.code}:{f.subject}", (marks[f.severity], f.code, f.subject, f.message)) for f in s.findings]


# Panel id -> (title, columns, rows function, sources it depends on).  One table, as Dolphie's PANEL_MAPPING.
PANELS: dict[str, tuple[str, Sequence[str], RowsFn, tuple[str, ...]]] = {
    "findings": ("Findings", ("", "code", "subject", "message"), findings_rows, ()),
    "nodes": (
        "Nodes",
        (
            "node",
            "status",
            "cpu",
            "mem",
            "roles",
            "taints",
            "version",
            "hetzner",
            "private",
            "public",
            "pods",
        ),
        nodes_rows,
        ("kube:nodes", "hetzner", "kube:pods", "metrics"),
    ),
    "database": (
        "Database",
        ("instance", "role", "node", "state", "WAL", "lag / position", "detail"),
        database_rows,
        ("kube:clusters", "kube:pods", "kube:poddisruptionbudgets", "kube:poolers", "postgres"),
    ),
    "pods": (
        "Pods (worst first)",
        ("namespace", "pod", "node", "phase", "ready", "cpu/req", "mem/lim", "restarts", "why", "age"),
        pods_rows,
        ("kube:pods", "metrics"),
    ),
    "workloads": (
        "Workloads (ready/desired, pods per node)",
        ("namespace", "name", "kind", "ready", "pods per node", "HA"),
        workloads_rows,
        ("kube:deployments", "kube:daemonsets", "kube:pods", "kube:nodes"),
    ),
    "lb": ("Load balancer", ("target", "port 80", "port 443"), lb_rows, ("hetzner",)),
    "endpoints": (
        "Endpoints (health URLs and DNS)",
        ("check", "target", "state", "answer"),
        endpoints_rows,
        ("http", "dns", "hetzner"),
    ),
    "backups": (
        "Backups (Borg on the Storage Box)",
        ("repository", "schedule", "newest / due", "state", "retention"),
        backups_rows,
        ("borg",),
    ),
    "certs": (
        "Certificates",
        ("namespace", "hosts", "days left", "ready"),
        cert_rows,
        ("kube:certificates",),
    ),
    "ha": (
        "HA drift (the seed's runtime patches)",
        ("patch", "object", "state", "detail"),
        ha_rows,
        ("kube:deployments", "kube:poolers", "kube:poddisruptionbudgets", "kube:networkpolicies"),
    ),
    "releases": (
        "Releases (DocFast per environment)",
        ("env", "tag", "digest", "rollout", "earlier revisions", "pods per node / what differs"),
        release_rows,
        ("kube:deployments", "kube:replicasets", "kube:pods"),
    ),
    "timeline": (
        "Timeline (events and console actions)",
        ("time", "from", "subject", "reason", "message"),
        timeline_rows,
        ("kube:events",),
    ),
}


# The actions a panel's rows take, by key: (key, action name, footer label).  The row's key is the
# action's --target (a node's name, a Deployment's NS/NAME).  Shown in the footer for the focused panel
# only; a read-only session hides the ones that change the cluster.
ROW_ACTIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "nodes": (
        ("c", "cordon", "cordon"),
        ("u", "uncordon", "uncordon"),
        ("e", "drain", "drain (evict)"),
        ("P", "power-cycle", "power-cycle"),
        ("K", "upgrade", "upgrade K3s"),
    ),
    "database": (("S", "switchover", "switchover"), ("F", "fence", "fence"), ("U", "unfence", "unfence")),
    "workloads": (("R", "restart", "restart"), ("s", "scale", "scale")),
    "pods": (("x", "delete-pod", "delete"),),
    "backups": (("b", "backup", "back up now"),),
    "certs": (("n", "renew", "renew"),),
}


def _as_target(row: str, _snapshot: Snapshot | None) -> dict[str, Any]:
    return {"target": row}


# How a row becomes its action's parameters where it is not simply the target, by action (a repository's
# row asks for a backup of what that repository holds; an upgrade is the whole cluster's, the server first,
# whichever node's row it starts from).
ROW_PARAMS: dict[str, Callable[[str, Snapshot | None], dict[str, Any]]] = {
    "backup": lambda row, s: {
        "what": next((b.what for b in (s.backups if s else ()) if b.name == row), "all")
    },
    "upgrade": lambda row, s: {},
}


# Panels whose rows are pods: ``l`` opens the row's log (the database's instances and poolers are pods).
LOG_PANELS = {"pods", "database"}

# Panels whose rows function takes the filter itself (it shows only the worst part of what matches).
FILTERED_INSIDE: dict[str, Callable[[Snapshot, str, str | None], list[tuple[str, Row]]]] = {"pods": pods_rows}

# Panels whose row order carries meaning (severity, time): rebuilt when it changes; the rest update in place.
ORDERED = {"findings", "timeline", "pods"}

# What a panel's rows are made from, where that is cheaper to compare than the rows are to make: at scale
# every build (several a second) carries new pods, but the 500 nodes' rows change only when a node or its
# pod count does — the snapshot builder reuses unchanged Node objects, so the comparison is by identity.
INPUTS: dict[str, Callable[[Snapshot], object]] = {
    "nodes": lambda s: (s.nodes, s.node_usage),
    "workloads": lambda s: (s.workloads, s.nodes),
}


def source_status(name: str, sources: dict[str, SourceStatus]) -> SourceStatus | None:
    """A panel source's status; a Kubernetes kind that never reported takes the API's own (a kubeconfig
    that fails before any list is one ``kubernetes`` status: its kinds are as unreachable as it is)."""
    status = sources.get(name)
    if status is None and name.startswith("kube:"):
        api = sources.get("kubernetes")
        if api is not None and api.state is not SourceState.OK:
            return api
    return status


def _row_bindings() -> list[BindingType]:
    keys = {key: (label, name) for actions in ROW_ACTIONS.values() for key, name, label in actions}
    return [Binding(key, f"row_action('{key}')", label) for key, (label, _) in keys.items()]


class Panel(Vertical):
    """A titled table with its data's age and its sources' state.

    Tables are as tall as their rows (up to 12 lines), except the findings': findings come and go with the
    cluster (a pod flapping Ready raises and clears one each time), and a table that grows or shrinks
    re-lays out the whole screen (dear at scale), and the panels below jump.  It keeps a fixed height of
    seven findings and scrolls past them.
    """

    DEFAULT_CSS = """
    Panel { height: auto; max-height: 16; border: round $primary; padding: 0 1; }
    Panel.-stale { border: round $warning; }
    Panel.-unreachable { border: round $error; }
    Panel.-forbidden { border: round $secondary; }
    Panel > .panel-meta { color: $text-muted; height: 1; }
    Panel DataTable { height: auto; max-height: 12; }
    Panel#panel-findings DataTable { height: 8; }
    """

    def __init__(self, panel_id: str) -> None:
        super().__init__(id=f"panel-{panel_id}")
        self.panel_id = panel_id
        self.title_text, self.columns, self.rows_fn, self.sources = PANELS[panel_id]
        self.border_title = self.title_text
        self.namespace: str | None = None  # the Pods panel's namespace filter (N cycles it)
        self.updated_at: float | None = None
        self.state = SourceState.PENDING
        self.error: str | None = None
        self._meta_text = ""
        self._shown: dict[str, Row] = {}  # what the table holds, by row key: unchanged rows skip cheaply
        self._made_from: object = None  # INPUTS' value (and the filter) the rows were last made from

    BINDINGS: ClassVar[list[BindingType]] = [
        *_row_bindings(),
        Binding("l", "logs", "logs"),
        Binding("p", "psql", "psql"),
        Binding("N", "namespace", "namespace"),
    ]

    def _row_action(self, key: str) -> str | None:
        return next((name for k, name, _ in ROW_ACTIONS.get(self.panel_id, ()) if k == key), None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Only this panel's row keys are live (and shown); none that change the cluster when read-only."""
        if action == "logs":
            return self.panel_id in LOG_PANELS
        if action == "psql":
            return self.panel_id == "database"
        if action == "namespace":
            return self.panel_id in FILTERED_INSIDE
        if action != "row_action":
            return True
        name = self._row_action(str(parameters[0]))
        return name is not None and not getattr(self.app, "read_only", False)

    def action_row_action(self, key: str) -> None:
        """The action for the row under the cursor, with the row as its target (the runner screen asks
        for the typed confirmation)."""
        name = self._row_action(key)
        row = self._cursor_key()
        if name is None:
            return
        start = getattr(self.app, "start_action", None)
        if row and start is not None:
            params = ROW_PARAMS.get(name, _as_target)
            start(name, params(row, getattr(self.app, "snapshot", None)))

    def _cursor_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        value = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return str(value) if value else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row: its object's details (events, YAML, logs)."""
        event.stop()
        key = event.row_key.value
        opener = getattr(self.app, "open_detail", None)
        if key and opener is not None:
            opener(self.panel_id, str(key))

    def action_logs(self) -> None:
        key = self._cursor_key()
        opener = getattr(self.app, "open_logs", None)
        if key and opener is not None and self.panel_id in LOG_PANELS:
            opener(self.panel_id, key)

    def action_namespace(self) -> None:
        """The next namespace of the pods the cluster runs, then every namespace again."""
        snapshot = getattr(self.app, "snapshot", None)
        names: list[str | None] = [None, *sorted({p.namespace for p in (snapshot.pods if snapshot else ())})]
        self.namespace = (
            names[(names.index(self.namespace) + 1) % len(names)] if self.namespace in names else None
        )
        self.border_title = self.title_text + (f" — namespace {self.namespace}" if self.namespace else "")
        if snapshot is not None:
            self._made_from = None
            self._show_rows(snapshot, getattr(self.app, "filter_text", ""))

    def action_psql(self) -> None:
        opener = getattr(self.app, "open_psql", None)
        if opener is not None:
            opener()

    def compose(self) -> ComposeResult:
        yield Static("waiting for data…", classes="panel-meta")
        table = PlainTable(cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for i, col in enumerate(self.columns):
            table.add_column(col, key=str(i))

    @property
    def table(self) -> DataTable[str]:
        return self.query_one(DataTable)

    def show(self, snapshot: Snapshot, sources: dict[str, SourceStatus], filter_text: str = "") -> None:
        inputs = INPUTS.get(self.panel_id)
        made_from = None if inputs is None else (inputs(snapshot), filter_text)
        if made_from is None or made_from != self._made_from:
            self._show_rows(snapshot, filter_text)
            self._made_from = made_from
        self._show_state(snapshot, sources)

    def _show_rows(self, snapshot: Snapshot, filter_text: str) -> None:
        table = self.table
        if self.panel_id in FILTERED_INSIDE:  # it filters before it cuts its rows short
            rows = dict(FILTERED_INSIDE[self.panel_id](snapshot, filter_text, self.namespace))
        else:
            rows = dict(self.rows_fn(snapshot))
            if filter_text:
                rows = {k: v for k, v in rows.items() if filter_text in " ".join(v).lower()}
        present = {k.value for k in table.rows}
        keep: str | None = None
        if self.panel_id in ORDERED and list(rows) != [k.value for k in table.rows]:
            keep = self._cursor_key() if table.cursor_row > 0 or table.has_focus else None
            table.clear()  # order matters more than keeping rows: a few rows, rebuilt on change
            present = set()
            self._shown.clear()
        for stale in [k for k in table.rows if k.value not in rows]:
            table.remove_row(stale)
        ncols = len(self.columns)
        for row_key, cells in rows.items():
            padded = (cells + ("",) * ncols)[:ncols]
            if row_key in present:
                if self._shown.get(row_key) == padded:
                    continue  # one tuple comparison for an unchanged row, not a lookup per cell
                for i, value in enumerate(padded):
                    if table.get_cell(row_key, str(i)) != value:
                        self._update_cell(table, row_key, str(i), value)
            else:
                table.add_row(*padded, key=row_key)
            self._shown[row_key] = padded
        for gone in [k for k in self._shown if k not in rows]:
            del self._shown[gone]
        if keep is not None and keep in rows:  # the cursor stays on its row, wherever the order put it
            table.move_cursor(row=list(rows).index(keep), animate=False, scroll=False)

    def _show_state(self, snapshot: Snapshot, sources: dict[str, SourceStatus]) -> None:
        states = [
            st for st in (source_status(s, sources) for s in self.sources) if st is not None and st.essential
        ]
        worst = next((s for s in states if s.state is SourceState.FORBIDDEN), None) or next(
            (s for s in states if s.state in (SourceState.UNREACHABLE, SourceState.STALE)), None
        )
        self.state = (
            worst.state if worst else (SourceState.OK if states or not self.sources else SourceState.PENDING)
        )
        self.error = worst.error if worst else None
        times = [s.updated_at for s in states if s.updated_at]
        self.updated_at = min(times) if times else (snapshot.taken_at if not self.sources else None)
        for cls in ("-stale", "-unreachable", "-forbidden"):
            self.set_class(self.state.value == cls[1:], cls)
        self.refresh_age()

    @staticmethod
    def _update_cell(table: DataTable[str], row: str, column: str, value: str) -> None:
        """Change one cell; its column grows to fit, but never shrinks in place.

        ``update_width=True`` for a value narrower than its column makes DataTable re-measure every cell
        of that column on its next idle: 500 nodes with changing pod counts turned that into tens of
        thousands of measurements a second at scale (and key presses waited behind them).  A column
        keeps its widest width until the panel is rebuilt, which costs one blank cell at most.
        """
        wider = cell_len(value) > table.columns[ColumnKey(column)].content_width
        table.update_cell(row, column, value, update_width=wider)

    def refresh_age(self) -> None:
        if self.updated_at is None:
            text = f"{self.state.value}" + (f": {self.error}" if self.error else "")
        else:
            age = max(0, int(time.time() - self.updated_at))
            text = f"{age} s ago" + ("" if self.state is SourceState.OK else f" — {self.state.value}")
            if self.error:
                text += f": {self.error}"
        if text != self._meta_text:  # height is fixed (1 line): no layout pass for a changed age
            self._meta_text = text
            self.query_one(".panel-meta", Static).update(text, layout=False)
