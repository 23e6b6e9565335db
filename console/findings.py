"""Findings: what an operator of this cluster would want flagged, judged from a snapshot.

Pure functions of a :class:`~console.model.Snapshot` (and the few store facts it does not carry: whether
PodDisruptionBudgets and NetworkPolicies were listed at all, the weak-credentials check), so the
dashboard's Findings panel and ``--action status`` judge alike, and the rules are unit-tested without a
lab (``tests/unit/test_findings.py``).  Not seeing something is never good: a source that cannot answer is
a finding of its own.
"""

from __future__ import annotations

from datetime import datetime

from console.config import Config
from console.model import (
    BackupRepo,
    Database,
    DbInstance,
    DnsCheck,
    Finding,
    LoadBalancer,
    Pod,
    Replication,
    Severity,
    Snapshot,
)
from console.store import ClusterStore
from console.units import size


def _replication_findings(replication: tuple[Replication, ...], config: Config) -> list[Finding]:
    out = []
    bound = config.database.max_replica_lag_bytes
    for r in replication:
        if r.role == "unreachable":
            out.append(
                Finding(Severity.WARNING, "db-instance-unreachable", r.instance, r.error or "unreachable")
            )
        elif r.role == "replica" and (r.state != "streaming" or r.receiver not in (None, "streaming")):
            out.append(Finding(Severity.CRITICAL, "replica-not-streaming", r.instance, _not_streaming(r)))
        if r.role == "replica" and r.lag_bytes is not None and r.lag_bytes > bound:
            out.append(
                Finding(
                    Severity.WARNING,
                    "replica-lag",
                    r.instance,
                    f"{r.lag_bytes / 1048576:.1f} MiB behind the primary (bound {bound / 1048576:g} MiB)",
                )
            )
        out.extend(_slot_findings(r, config.database.max_slot_retained_bytes))
    if replication and not any(r.role == "primary" for r in replication):
        out.append(
            Finding(Severity.CRITICAL, "no-primary", config.database.cluster, "no instance is primary")
        )
    return out


def _not_streaming(r: Replication) -> str:
    """Why a replica is not streaming, in the words of the side that says so: its own WAL receiver
    (pg_stat_wal_receiver: "WAL receiver down") first, else the primary's WAL sender for it.  One finding
    for both: they are two views of one stream."""
    if r.receiver not in (None, "streaming"):
        return f"WAL receiver is {r.receiver}"
    return f"WAL receiver is {r.state}" if r.receiver is None else f"the primary's WAL sender is {r.state}"


def _slot_findings(r: Replication, bound: int) -> list[Finding]:
    """A slot on the primary holding back more WAL than ``bound``: the WAL stays on the primary's volume
    until the slot's consumer catches up, or the slot is dropped."""
    return [
        Finding(
            Severity.WARNING,
            "db-slot-retention",
            s.name,
            f"slot {s.name} ({'active' if s.active else 'inactive'}) on {r.instance} retains "
            f"{size(s.retained_bytes)} of WAL (bound {size(bound)})",
        )
        for s in r.slots
        if r.role == "primary" and s.retained_bytes is not None and s.retained_bytes > bound
    ]


def _database_findings(db: Database, config: Config, now: datetime) -> list[Finding]:
    out = []
    if db.phase != "Cluster in healthy state":
        sev = Severity.CRITICAL if db.ready_instances == 0 or db.phase == "Failing over" else Severity.WARNING
        out.append(Finding(sev, "database-degraded", db.cluster, f"{db.cluster}: {db.phase}"))
    shared = _shared_nodes(db.members)
    if shared:
        out.append(
            Finding(Severity.WARNING, "db-single-node", db.cluster, f"instances share a node: {shared}")
        )
    for name in db.fenced:
        role = next((m.role for m in db.members if m.name == name), "instance")
        out.append(
            Finding(
                Severity.CRITICAL if role == "primary" else Severity.WARNING,
                "db-instance-fenced",
                name,
                f"{name} ({role}) is fenced: its PostgreSQL is stopped until it is unfenced",
            )
        )
    out.extend(_primary_restarted(db, now))
    out.extend(_replication_findings(db.replication, config))
    return out


def _shared_nodes(members: tuple[DbInstance, ...]) -> str:
    """``main-db-1, main-db-2 on k3s-w1`` for each node holding more than one instance (losing that node
    loses them all, and the local-path volumes with them); empty when every instance has a node of its
    own."""
    on: dict[str, list[str]] = {}
    for m in members:
        if m.node:
            on.setdefault(m.node, []).append(m.name)
    return "; ".join(f"{', '.join(names)} on {node}" for node, names in sorted(on.items()) if len(names) > 1)


RECENT_RESTART_S = 3600  # a primary that started within the hour restarted (or was just created)


def _primary_restarted(db: Database, now: datetime) -> list[Finding]:
    """The primary's PostgreSQL (its postmaster start time) or its pod's postgres container started
    within the hour; neither known is no finding (the Database panel shows it as unknown)."""
    member = next((m for m in db.members if m.name == db.primary), None)
    stamps = [db.primary_started_at, member.started_at if member else None]
    ago = min((a for s in stamps if (a := _ago_s(s, now)) is not None), default=None)
    if ago is None or ago >= RECENT_RESTART_S:
        return []
    return [
        Finding(
            Severity.WARNING,
            "db-primary-restarted",
            db.primary,
            f"the primary {db.primary} started {ago / 60:.0f} min ago (PostgreSQL restarted or the pod was "
            "re-created)",
        )
    ]


def _backup_findings(backups: tuple[BackupRepo, ...]) -> list[Finding]:
    out = []
    for b in backups:
        if b.error:
            out.append(Finding(Severity.WARNING, "backup-unreadable", b.name, b.error))
        elif b.overdue:
            age = "never" if b.age_hours is None else f"{b.age_hours:.1f} h ago"
            out.append(
                Finding(
                    Severity.CRITICAL if b.what == "db" else Severity.WARNING,
                    "backup-overdue",
                    b.name,
                    f"newest archive {age}; due every {b.max_age_hours:g} h ({b.schedule})",
                )
            )
        if b.retention_ok is False and not b.error:
            out.append(Finding(Severity.WARNING, "backup-retention", b.name, b.retention))
        if b.checked and not b.checked.startswith("ok"):
            out.append(
                Finding(Severity.WARNING, "backup-check-failed", b.name, f"last borg check: {b.checked}")
            )
        if b.verified and b.verified.startswith("FAILED"):
            out.append(
                Finding(
                    Severity.CRITICAL, "restore-verify-failed", b.name, f"last restore test: {b.verified}"
                )
            )
    return out


def _dns_findings(dns: tuple[DnsCheck, ...], lb: LoadBalancer | None, seed_lb_ip: str) -> list[Finding]:
    """A record configured as the load balancer's address (``seed_lb_ip``) means "points at the load
    balancer": once the live one is seen, that is what it is checked against — after a rebuild the new
    balancer has a new address, and updating DNS to it is right, not a mismatch with config."""
    out = []
    for d in dns:
        follows_lb = d.type == "A" and lb is not None and d.expected == seed_lb_ip
        if follows_lb and lb is not None and lb.public_ipv4 in d.answers:
            continue
        if not d.ok and not follows_lb:
            got = ", ".join(d.answers) or d.error or "no answer"
            out.append(
                Finding(Severity.WARNING, "dns-mismatch", f"{d.name} {d.type}", f"{got} (want {d.expected})")
            )
        elif d.type == "A" and lb is not None and lb.public_ipv4 not in d.answers:
            out.append(
                Finding(
                    Severity.CRITICAL,
                    "dns-not-load-balancer",
                    d.name,
                    f"resolves to {', '.join(d.answers)}, the load balancer is {lb.public_ipv4}",
                )
            )
    return out


def _firewall_findings(store: ClusterStore, config: Config) -> list[Finding]:
    """The API port's exposure, from the live firewall (Hetzner) when seen, else from config."""
    live = (store.extra.get("hetzner") or {}).get("firewall")
    rules = live["rules"] if live else [r.model_dump() for r in config.hetzner.firewall.rules]
    name = live["name"] if live else config.hetzner.firewall.name
    out = []
    for rule in rules:
        if rule.get("direction") != "in" or rule.get("port") != "6443":
            continue
        sources = rule.get("source_ips") or []
        if any(ip in ("0.0.0.0/0", "::/0") for ip in sources):
            out.append(Finding(Severity.CRITICAL, "api-port-exposed", name, "6443 is open to the Internet"))
            continue
        public = [ip for ip in sources if not ip.startswith(("10.", "192.168.", "172.", "fd", "fc"))]
        if public:
            out.append(
                Finding(
                    Severity.INFO,
                    "api-port-exposed",
                    name,
                    f"6443 open to {', '.join(public)} (the CI runner) besides the private network",
                )
            )
    return out


PULL_FAILING = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")
RESTARTS_OFTEN = 5  # restarts, the last within the hour: restarting often


def _ago_s(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    try:
        return (now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return None


def pod_findings(pods: tuple[Pod, ...], prod: str, now: datetime) -> list[Finding]:
    """A pod that crash-loops, cannot pull its image, was OOM-killed in the last hour, cannot be scheduled
    or restarts often — each naming the pod (``NS/NAME``); production's are critical."""
    out = []
    for p in pods:
        if p.terminating:
            continue
        subject = f"{p.namespace}/{p.name}"
        sev = Severity.CRITICAL if p.namespace == prod else Severity.WARNING
        recent = _ago_s(p.last_terminated_at, now)
        if p.waiting == "CrashLoopBackOff":
            why = f"; last exit {p.last_terminated}" if p.last_terminated else ""
            out.append(
                Finding(sev, "pod-crash-looping", subject, f"crash-looping, {p.restarts} restarts{why}")
            )
        elif p.waiting in PULL_FAILING:
            out.append(
                Finding(sev, "pod-image-pull-failing", subject, f"cannot pull its image ({p.waiting})")
            )
        elif p.waiting == "CreateContainerConfigError":
            out.append(
                Finding(sev, "pod-config-error", subject, "its container cannot be created (config error)")
            )
        elif p.restarts >= RESTARTS_OFTEN and recent is not None and recent < 3600:
            out.append(
                Finding(
                    Severity.WARNING,
                    "pod-restarting-often",
                    subject,
                    f"{p.restarts} restarts, the last {recent / 60:.0f} min ago",
                )
            )
        if (
            p.last_terminated
            and p.last_terminated.startswith("OOMKilled")
            and recent is not None
            and recent < 3600
        ):
            out.append(
                Finding(
                    Severity.WARNING,
                    "pod-oom-killed",
                    subject,
                    f"OOM-killed {recent / 60:.0f} min ago (over its memory limit)",
                )
            )
        if p.phase == "Pending" and p.unschedulable:
            out.append(Finding(sev, "pod-unschedulable", subject, f"cannot be scheduled: {p.unschedulable}"))
    return out


def _own_budgets(store: ClusterStore) -> list[dict[str, object]]:
    """The PodDisruptionBudgets the cluster's owners wrote — not those an operator keeps for its own pods
    (CNPG's ``<cluster>-primary``, owned by the Cluster): those guard the database alone, while the
    workloads, the pooler and CoreDNS stay without one."""
    return [
        b
        for b in store.items("poddisruptionbudgets")
        if not any(o.get("kind") == "Cluster" for o in (b.get("metadata") or {}).get("ownerReferences") or [])
    ]


def findings(snap: Snapshot, store: ClusterStore, config: Config, now: datetime) -> tuple[Finding, ...]:
    """What an operator of this cluster would want flagged, computed from live state."""
    out: list[Finding] = []
    add = out.append
    for n in snap.nodes:
        if n.ready is not True:
            add(Finding(Severity.CRITICAL, "node-not-ready", n.name, f"node {n.name} is not Ready"))
        if n.hetzner_status not in (None, "running"):
            add(
                Finding(
                    Severity.CRITICAL, "server-not-running", n.name, f"Hetzner server is {n.hetzner_status}"
                )
            )
        if n.unschedulable:
            add(Finding(Severity.WARNING, "node-cordoned", n.name, f"node {n.name} is cordoned"))
    for p in snap.probes:
        if not p.ok:
            sev = Severity.CRITICAL if p.name == "prod" else Severity.WARNING
            add(Finding(sev, "health-check-failing", p.url, f"{p.url} answered {p.status or p.error}"))
    lb = snap.load_balancer
    if lb is not None:
        unhealthy = [t for t in lb.targets if any(status != "healthy" for _, status in t.health)]
        if lb.targets and len(unhealthy) == len(lb.targets):
            add(
                Finding(
                    Severity.CRITICAL, "lb-no-healthy-target", lb.name, "no load-balancer target is healthy"
                )
            )
        for t in unhealthy:
            if len(unhealthy) < len(lb.targets):
                add(
                    Finding(
                        Severity.WARNING, "lb-target-unhealthy", t.name, f"{t.name} is unhealthy at {lb.name}"
                    )
                )
    if snap.database is not None:
        out.extend(_database_findings(snap.database, config, now))
    out.extend(_backup_findings(snap.backups))
    out.extend(_dns_findings(snap.dns, snap.load_balancer, config.hetzner.load_balancer.public_ipv4))
    for h in snap.ha:
        if h.holds is False:
            add(Finding(Severity.WARNING, "ha-drift", h.subject, f"{h.name}: {'; '.join(h.drift)}"))
    for c in snap.certificates:
        if c.days_left is not None and c.days_left < 7:
            add(
                Finding(
                    Severity.CRITICAL,
                    "certificate-expiring",
                    c.name,
                    f"{c.name} expires in {c.days_left:g} days",
                )
            )
        elif c.days_left is not None and c.days_left < 21:
            add(
                Finding(
                    Severity.WARNING,
                    "certificate-expiring",
                    c.name,
                    f"{c.name} expires in {c.days_left:g} days",
                )
            )
    out.extend(pod_findings(snap.pods, config.namespaces.prod, now))
    for w in snap.workloads:
        if w.ready < w.desired:
            sev = (
                Severity.CRITICAL
                if w.ready == 0 and w.namespace == config.namespaces.prod
                else Severity.WARNING
            )
            add(Finding(sev, "workload-degraded", f"{w.namespace}/{w.name}", f"{w.ready}/{w.desired} ready"))
        if w.namespace == config.namespaces.prod and w.desired > 1 and len(set(w.nodes)) == 1:
            add(
                Finding(
                    Severity.WARNING,
                    "single-point-of-failure",
                    f"{w.namespace}/{w.name}",
                    f"all ready replicas run on {w.nodes[0]}",
                )
            )
    if "poddisruptionbudgets" in store.objects and not _own_budgets(store):
        add(
            Finding(
                Severity.INFO, "no-pdbs", "cluster", "no PodDisruptionBudgets: a drain may take every replica"
            )
        )
    if "networkpolicies" in store.objects and not store.items("networkpolicies"):
        add(
            Finding(
                Severity.INFO,
                "no-networkpolicies",
                "cluster",
                "no NetworkPolicies: every pod may reach the database",
            )
        )
    if store.extra.get("weak_db_credentials"):
        add(
            Finding(
                Severity.WARNING,
                "weak-db-credentials",
                config.database.credentials_secret,
                f"the password in {config.database.credentials_secret} is trivially guessable",
            )
        )
    out.extend(_firewall_findings(store, config))
    for s in snap.sources:
        if (
            s.essential
            and s.state.value in ("stale", "unreachable", "pending")
            and not s.name.startswith("kube:")
        ):
            # Not seeing the cluster at all is not "healthy".
            sev = Severity.CRITICAL if s.name == "kubernetes" else Severity.WARNING
            add(Finding(sev, "source-unavailable", s.name, f"{s.name}: {s.error or s.state.value}"))
    order = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return tuple(sorted(out, key=lambda f: (order[f.severity], f.code, f.subject)))
