"""Build the typed :class:`~console.model.Snapshot` from the store, and judge it (findings).

Pure functions of the store's contents: the dashboard and ``--action status`` call the same code, so a
script sees exactly what the screen shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from console.config import Config, HaPatch
from console.ha import drift
from console.ha_policy import OwnedObject, owned_objects
from console.ha_policy import drift as owned_drift
from console.kubeobj import is_ready
from console.model import (
    BackupRepo,
    Certificate,
    Database,
    DbInstance,
    DnsCheck,
    Finding,
    HaCheck,
    LbTarget,
    LoadBalancer,
    Node,
    Pod,
    Replication,
    Severity,
    Snapshot,
    TimelineEntry,
    Workload,
)
from console.releases import releases
from console.store import ClusterStore

WEAK_PASSWORDS = {"docfast", "password", "postgres", "admin", "changeme", "secret", "123456"}


def _ts(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class PodIndex:
    """Every pod, and the groupings the views need, from one pass over the store.

    At 10,000 pods each pass costs ~10 ms on this machine; nodes, workloads, the database and the releases
    each used to make their own, so a build was five passes.  Now it is this one (plus the few pods of the
    namespaces a view reads).
    """

    all: tuple[Pod, ...]
    by_namespace: dict[str, list[Pod]]
    raw_by_namespace: dict[str, list[dict[str, Any]]]
    per_node: dict[str | None, int]  # pods not terminating, per node

    def raw(self, namespace: str) -> list[dict[str, Any]]:
        return self.raw_by_namespace.get(namespace, [])


@dataclass
class _IndexState:
    """What the last index was built from and where each pod sits in it (kept in the store's memo)."""

    generation: int
    out: list[Pod]
    by_ns: dict[str, list[Pod]]
    raw_by_ns: dict[str, list[dict[str, Any]]]
    where: dict[tuple[str, str], tuple[int, int]]  # key -> (position in out, position in its namespace)
    per_node: dict[str | None, int]


def pod_index(store: ClusterStore) -> PodIndex:
    """Every pod as a :class:`Pod`, sorted by (namespace, name).

    Converted once per object version: a watch event replaces the object, so an identity check against
    the memo finds the ones that changed.  Built once per view: a view of the store (``ClusterStore.view``)
    carries the keys written since the previous view, so when no pod came or went, the previous index is
    copied and only those positions redone — at 200 pod updates a second on 10,000 pods a build touched
    every pod (~22 ms of its ~32) to change a few dozen.  Anything else (a relist, a pod added or
    deleted, a view the builder did not see, the live store) is the full pass.
    """
    memo: dict[tuple[str, str], tuple[dict[str, Any], Pod]] = store.memo.setdefault("pods", {})
    table = store.objects.get("pods", {})
    state: _IndexState | None = store.memo.get("pod_index")
    changed = store.changes.get("pods", set())
    if (
        store.is_view
        and state is not None
        and changed is not None
        and state.generation == store.generation - 1
        and len(table) == len(state.out)
        and all(k in state.where and k in table for k in changed)
    ):
        state = _update_index(state, table, memo, changed, store.generation)
    else:
        state = _full_index(table, memo, store.generation)
    if store.is_view:
        store.memo["pod_index"] = state
    return PodIndex(tuple(state.out), state.by_ns, state.raw_by_ns, state.per_node)


def _full_index(
    table: dict[tuple[str, str], dict[str, Any]],
    memo: dict[tuple[str, str], tuple[dict[str, Any], Pod]],
    generation: int,
) -> _IndexState:
    for key in [k for k in memo if k not in table]:
        del memo[key]
    out: list[Pod] = []
    by_ns: dict[str, list[Pod]] = {}
    raw_by_ns: dict[str, list[dict[str, Any]]] = {}
    where: dict[tuple[str, str], tuple[int, int]] = {}
    per_node: dict[str | None, int] = {}
    for key in sorted(table):
        p = table[key]
        pod = _converted(memo, key, p)
        ns = key[0]
        if ns in by_ns:
            where[key] = (len(out), len(by_ns[ns]))
            by_ns[ns].append(pod)
            raw_by_ns[ns].append(p)
        else:
            where[key] = (len(out), 0)
            by_ns[ns], raw_by_ns[ns] = [pod], [p]
        out.append(pod)
        if not pod.terminating:
            per_node[pod.node] = per_node.get(pod.node, 0) + 1
    return _IndexState(generation, out, by_ns, raw_by_ns, where, per_node)


def _update_index(
    state: _IndexState,
    table: dict[tuple[str, str], dict[str, Any]],
    memo: dict[tuple[str, str], tuple[dict[str, Any], Pod]],
    changed: set[tuple[str, str]],
    generation: int,
) -> _IndexState:
    """The previous index with the changed pods redone.  Copy on write: the previous index's lists may
    still be read by the snapshot shown on screen."""
    out = list(state.out) if changed else state.out
    by_ns, raw_by_ns, per_node = dict(state.by_ns), dict(state.raw_by_ns), dict(state.per_node)
    copied: set[str] = set()
    for key in changed:
        p = table[key]
        i, j = state.where[key]
        ns = key[0]
        if raw_by_ns[ns][j] is p:
            continue  # written and written back, or already seen: the index holds this version
        pod = _converted(memo, key, p)
        old = out[i]
        out[i] = pod
        if ns not in copied:
            by_ns[ns], raw_by_ns[ns] = list(by_ns[ns]), list(raw_by_ns[ns])
            copied.add(ns)
        by_ns[ns][j], raw_by_ns[ns][j] = pod, p
        if not old.terminating:
            per_node[old.node] -= 1
            if not per_node[old.node]:
                del per_node[old.node]
        if not pod.terminating:
            per_node[pod.node] = per_node.get(pod.node, 0) + 1
    return _IndexState(generation, out, by_ns, raw_by_ns, state.where, per_node)


def _converted(
    memo: dict[tuple[str, str], tuple[dict[str, Any], Pod]], key: tuple[str, str], p: dict[str, Any]
) -> Pod:
    """``p`` as a Pod: from the memo if this very object was converted before, else converted now."""
    hit = memo.get(key)
    if hit is not None and hit[0] is p:
        return hit[1]
    pod = _pod(p)
    memo[key] = (p, pod)
    return pod


def _pod(p: dict[str, Any]) -> Pod:
    meta, st = p["metadata"], p.get("status") or {}
    owner = ((meta.get("ownerReferences") or [{}])[0]).get("name", "")
    return Pod(
        meta.get("namespace", ""),
        meta["name"],
        (p.get("spec") or {}).get("nodeName"),
        st.get("phase", "Unknown"),
        is_ready(p),
        sum(int(c.get("restartCount", 0)) for c in st.get("containerStatuses") or []),
        bool(meta.get("deletionTimestamp")),
        owner,
    )


def nodes(store: ClusterStore, config: Config, index: PodIndex) -> tuple[Node, ...]:
    """Every node, by name.  A node is converted again only when its object, its pod count or its Hetzner
    server changed (memo by identity): at 500 nodes, converting all of them was a quarter of a build."""
    hetzner = (store.extra.get("hetzner") or {}).get("servers") or {}
    by_name = {v["name"]: (k, v["status"]) for k, v in hetzner.items()}
    per_node = index.per_node
    memo: dict[str, tuple[dict[str, Any], int, Any, Any, Node]] = store.memo.setdefault("nodes", {})
    out = []
    for n in store.items("nodes"):
        name = n["metadata"]["name"]
        pods = per_node.get(name, 0)
        hid, hstatus = by_name.get(name, (None, None))
        hit = memo.get(name)
        if hit is not None and hit[0] is n and hit[1:4] == (pods, hid, hstatus):
            out.append(hit[4])
            continue
        node = _node(n, pods, hid, hstatus)
        memo[name] = (n, pods, hid, hstatus, node)
        out.append(node)
    if len(memo) > 2 * len(out) + 16:  # nodes come and go (a replaced node): forget the gone ones
        names = {n.name for n in out}
        for gone in [k for k in memo if k not in names]:
            del memo[gone]
    return tuple(sorted(out, key=lambda n: n.name))


def _node(n: dict[str, Any], pods: int, hid: Any, hstatus: Any) -> Node:
    meta, spec, st = n["metadata"], n.get("spec") or {}, n.get("status") or {}
    conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
    addrs = {a["type"]: a["address"] for a in st.get("addresses") or []}
    roles = tuple(
        sorted(
            k.split("/", 1)[1] for k in meta.get("labels") or {} if k.startswith("node-role.kubernetes.io/")
        )
    )
    taints = tuple(f"{t['key']}:{t['effect']}" for t in spec.get("taints") or [])
    return Node(
        meta["name"],
        None if "Ready" not in conds else conds["Ready"] == "True",
        roles,
        taints,
        (st.get("nodeInfo") or {}).get("kubeletVersion", ""),
        addrs.get("InternalIP", ""),
        addrs.get("ExternalIP", ""),
        bool(spec.get("unschedulable")),
        pods,
        hid,
        hstatus,
    )


def workloads(store: ClusterStore, index: PodIndex) -> tuple[Workload, ...]:
    # Pods by (namespace, owner): one pass over the namespaces that have workloads, so 10,000 pods and
    # hundreds of workloads stay linear.
    kinds = {kind: store.items(kind) for kind in ("deployments", "daemonsets")}
    namespaces = {d["metadata"]["namespace"] for items in kinds.values() for d in items}
    by_owner: dict[tuple[str, str], list[Pod]] = {}
    for p in (p for ns in sorted(namespaces) for p in index.by_namespace.get(ns, ())):
        by_owner.setdefault((p.namespace, p.owner), []).append(p)
        # A Deployment's pods belong to its ReplicaSets, named "<deployment>-<template hash>".
        if "-" in p.owner:
            by_owner.setdefault((p.namespace, "rs:" + p.owner.rsplit("-", 1)[0]), []).append(p)
    out = []
    for kind, items in kinds.items():
        for d in items:
            meta, spec, st = d["metadata"], d.get("spec") or {}, d.get("status") or {}
            if kind == "deployments":
                desired, ready = int(spec.get("replicas", 1)), int(st.get("readyReplicas", 0))
                owned = by_owner.get((meta["namespace"], "rs:" + meta["name"]), [])
            else:
                desired, ready = int(st.get("desiredNumberScheduled", 0)), int(st.get("numberReady", 0))
                owned = by_owner.get((meta["namespace"], meta["name"]), [])
            node_names = tuple(sorted(p.node for p in owned if p.node and p.ready and not p.terminating))
            out.append(Workload(meta["namespace"], meta["name"], kind[:-1], desired, ready, node_names))
    return tuple(sorted(out, key=lambda w: (w.namespace, w.name)))


def database(store: ClusterStore, config: Config, index: PodIndex) -> Database | None:
    db = config.database
    obj = next(
        (
            c
            for c in store.items("clusters")
            if c["metadata"]["name"] == db.cluster and c["metadata"].get("namespace") == db.namespace
        ),
        None,
    )
    if obj is None:
        return None
    st = obj.get("status") or {}
    raw_pods = {p["metadata"]["name"]: p for p in index.raw(db.namespace)}
    members = []
    for name in st.get("instanceNames") or []:
        p = raw_pods.get(name, {})
        role = ((p.get("metadata") or {}).get("labels") or {}).get("role", "unknown")
        members.append(DbInstance(name, role, (p.get("spec") or {}).get("nodeName"), bool(p) and is_ready(p)))
    poolers = tuple(
        p for p in index.by_namespace.get(db.namespace, ()) if p.owner.rsplit("-", 1)[0] == db.pooler
    )
    return Database(
        db.cluster,
        db.namespace,
        st.get("phase", "unknown"),
        st.get("currentPrimary", ""),
        st.get("timelineID"),
        int(st.get("instances", 0)),
        int(st.get("readyInstances", 0)),
        tuple(members),
        poolers,
        st.get("lastSuccessfulBackup"),
        tuple(store.extra.get("replication") or ()),
    )


def ha_checks(store: ClusterStore, config: Config) -> tuple[HaCheck, ...]:
    out = []
    wanted: list[HaPatch | OwnedObject] = [
        *(p for p in config.ha.patches if p.enabled),
        *owned_objects(config),
    ]
    for patch in wanted:
        if isinstance(patch, OwnedObject):
            kind = patch.plural
        else:
            kind = "poolers" if patch.kind == "Pooler" else "deployments"
        subject = f"{patch.kind} {patch.namespace}/{patch.object}"
        if kind not in store.objects:
            out.append(HaCheck(patch.name, patch.description, subject, None, ("not visible",)))
            continue
        obj = store.objects[kind].get((patch.namespace, patch.object))
        problems = tuple(drift(patch, obj) if isinstance(patch, HaPatch) else owned_drift(patch, obj))
        # Since when: the first snapshot that saw the current verdict (kept across builds in the memo).
        since: dict[str, tuple[bool, float]] = store.memo.setdefault("ha_since", {})
        holds = not problems
        if since.get(patch.name, (None, 0.0))[0] is not holds:
            since[patch.name] = (holds, time.time())
        out.append(HaCheck(patch.name, patch.description, subject, holds, problems, since[patch.name][1]))
    return tuple(out)


TIMELINE_LENGTH = 40


def timeline(store: ClusterStore) -> tuple[TimelineEntry, ...]:
    """The newest cluster events and console actions, newest first."""
    entries = []
    for e in store.items("events"):
        when = (
            e.get("lastTimestamp") or e.get("eventTime") or (e.get("metadata") or {}).get("creationTimestamp")
        )
        obj = e.get("involvedObject") or e.get("regarding") or {}
        ns = f"{obj['namespace']}/" if obj.get("namespace") else ""
        subject = f"{obj.get('kind', '')} {ns}{obj.get('name', '')}"
        entries.append(
            TimelineEntry(
                str(when or ""),
                "event",
                subject.strip(),
                str(e.get("reason", "")),
                str(e.get("message") or e.get("note") or "")[:200],
                e.get("type") == "Warning",
            )
        )
    entries += list(store.extra.get("journal") or ())
    entries.sort(key=lambda t: t.at, reverse=True)
    return tuple(entries[:TIMELINE_LENGTH])


def load_balancer(store: ClusterStore, config: Config) -> LoadBalancer | None:
    data = store.extra.get("hetzner") or {}
    lb = data.get("load_balancer")
    if lb is None:
        return None
    rate = data.get("rate") or {}
    interval, timeout, retries = lb["health_check"]
    return LoadBalancer(
        lb["name"],
        lb["ip"],
        tuple(LbTarget(t["server_id"], t["name"], tuple(map(tuple, t["health"]))) for t in lb["targets"]),
        interval,
        timeout,
        retries,
        rate.get("RateLimit-Remaining"),
        rate.get("RateLimit-Limit"),
    )


def certificates(store: ClusterStore, now: datetime) -> tuple[Certificate, ...]:
    out = []
    for c in store.items("certificates"):
        st = c.get("status") or {}
        not_after = _ts(st.get("notAfter"))
        days = (not_after - now).total_seconds() / 86400 if not_after else None
        out.append(
            Certificate(
                c["metadata"].get("namespace", ""),
                c["metadata"]["name"],
                tuple((c.get("spec") or {}).get("dnsNames") or []),
                st.get("notAfter"),
                None if days is None else round(days, 1),
                is_ready(c),
            )
        )
    return tuple(sorted(out, key=lambda c: (c.namespace, c.name)))


def _releases(store: ClusterStore, config: Config, index: PodIndex) -> dict[str, Any]:
    ns = config.namespaces
    env_pods = index.raw(ns.prod) + (index.raw(ns.staging) if ns.staging != ns.prod else [])
    rels, diff = releases(store.items("deployments"), env_pods, store.items("replicasets"), config)
    return {"releases": rels, "release_diff": diff}


def build(store: ClusterStore, config: Config, context: str) -> Snapshot:
    now = datetime.now(UTC)
    index = pod_index(store)
    all_pods = index.all
    snap = Snapshot(
        cluster=config.cluster.name,
        context=context,
        lab=config.lab is not None,
        taken_at=time.time(),
        nodes=nodes(store, config, index),
        pods=all_pods,
        workloads=workloads(store, index),
        database=database(store, config, index),
        load_balancer=load_balancer(store, config),
        certificates=certificates(store, now),
        probes=tuple(store.extra.get("probes") or ()),
        dns=tuple(store.extra.get("dns") or ()),
        backups=tuple(store.extra.get("backups") or ()),
        ha=ha_checks(store, config),
        **_releases(store, config, index),
        timeline=timeline(store),
        sources=tuple(sorted(store.sources.values(), key=lambda s: s.name)),
    )
    return Snapshot(**{**snap.__dict__, "findings": findings(snap, store, config, now)})


def _replication_findings(replication: tuple[Replication, ...], config: Config) -> list[Finding]:
    out = []
    bound = config.database.max_replica_lag_bytes
    for r in replication:
        if r.role == "unreachable":
            out.append(
                Finding(Severity.WARNING, "db-instance-unreachable", r.instance, r.error or "unreachable")
            )
        elif r.role == "replica" and r.state != "streaming":
            out.append(
                Finding(Severity.CRITICAL, "replica-not-streaming", r.instance, f"WAL receiver is {r.state}")
            )
        if r.role == "replica" and r.lag_bytes is not None and r.lag_bytes > bound:
            out.append(
                Finding(
                    Severity.WARNING,
                    "replica-lag",
                    r.instance,
                    f"{r.lag_bytes / 1048576:.1f} MiB behind the primary (bound {bound / 1048576:g} MiB)",
                )
            )
    if replication and not any(r.role == "primary" for r in replication):
        out.append(
            Finding(Severity.CRITICAL, "no-primary", config.database.cluster, "no instance is primary")
        )
    return out


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
    db = snap.database
    if db is not None:
        if db.phase != "Cluster in healthy state":
            sev = (
                Severity.CRITICAL
                if db.ready_instances == 0 or db.phase == "Failing over"
                else Severity.WARNING
            )
            add(Finding(sev, "database-degraded", db.cluster, f"{db.cluster}: {db.phase}"))
        if len({m.node for m in db.members if m.node}) < len(db.members):
            add(Finding(Severity.WARNING, "db-single-node", db.cluster, "database instances share a node"))
        out.extend(_replication_findings(db.replication, config))
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
    if "poddisruptionbudgets" in store.objects and not store.items("poddisruptionbudgets"):
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
        if s.state.value in ("stale", "unreachable", "pending") and not s.name.startswith("kube:"):
            # Not seeing the cluster at all is not "healthy".
            sev = Severity.CRITICAL if s.name == "kubernetes" else Severity.WARNING
            add(Finding(sev, "source-unavailable", s.name, f"{s.name}: {s.error or s.state.value}"))
    order = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return tuple(sorted(out, key=lambda f: (order[f.severity], f.code, f.subject)))
