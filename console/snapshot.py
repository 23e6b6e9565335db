"""Build the typed :class:`~console.model.Snapshot` from the store, and judge it (findings).

Pure functions of the store's contents: the dashboard and ``--action status`` call the same code, so a
script sees exactly what the screen shows.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from console.config import Config, HaPatch
from console.ha import drift
from console.ha_policy import OwnedObject, owned_objects
from console.ha_policy import drift as owned_drift
from console.kubeobj import fenced, hibernated, is_ready
from console.model import (
    Certificate,
    Database,
    DbCertificate,
    DbInstance,
    DbPooler,
    DisruptionBudget,
    HaCheck,
    LbTarget,
    LoadBalancer,
    Node,
    Pod,
    Replication,
    Snapshot,
    TimelineEntry,
    Workload,
)
from console.releases import releases
from console.store import ClusterStore
from console.units import quantity

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

    A pass over every pod is the most a build costs at scale, so there is one: nodes, workloads, the
    database and the releases read its groupings (plus the few pods of the namespaces a view reads).
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


def pod_index(store: ClusterStore, memo: dict[str, Any] | None = None) -> PodIndex:
    """Every pod as a :class:`Pod`, sorted by (namespace, name).

    Converted once per object version: a watch event replaces the object, so an identity check against
    the memo finds the ones that changed.  Built once per view: a view of the store (``ClusterStore.view``)
    carries the keys written since the previous view, so when no pod came or went, the previous index is
    copied and only those positions redone: under a steady churn of pod updates a build then touches the
    few pods that changed, not all of them.  Anything else (a relist, a pod added or
    deleted, a view the builder did not see, the live store) is the full pass.  ``memo`` is the builder's
    own (:class:`SnapshotBuilder`); without one, nothing is remembered.
    """
    own: dict[str, Any] = {} if memo is None else memo
    pods: dict[tuple[str, str], tuple[dict[str, Any], Pod]] = own.setdefault("pods", {})
    table = store.objects.get("pods", {})
    state: _IndexState | None = own.get("pod_index")
    changed = store.changes.get("pods", set())
    if (
        store.is_view
        and state is not None
        and changed is not None
        and state.generation == store.generation - 1
        and len(table) == len(state.out)
        and all(k in state.where and k in table for k in changed)
    ):
        state = _update_index(state, table, pods, changed, store.generation)
    else:
        state = _full_index(table, pods, store.generation)
    if store.is_view:
        own["pod_index"] = state
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
    statuses = st.get("containerStatuses") or []
    waiting = next(
        (r for c in statuses if (r := ((c.get("state") or {}).get("waiting") or {}).get("reason"))), None
    )
    ended = [t for c in statuses if (t := (c.get("lastState") or {}).get("terminated"))]
    last = max(ended, key=lambda t: str(t.get("finishedAt") or ""), default=None)
    scheduled: dict[str, Any] = next(
        (c for c in st.get("conditions") or [] if c.get("type") == "PodScheduled"), {}
    )
    unschedulable = (
        scheduled.get("message") or scheduled.get("reason") if scheduled.get("status") == "False" else None
    )
    return Pod(
        meta.get("namespace", ""),
        meta["name"],
        (p.get("spec") or {}).get("nodeName"),
        st.get("phase", "Unknown"),
        is_ready(p),
        sum(int(c.get("restartCount", 0)) for c in statuses),
        bool(meta.get("deletionTimestamp")),
        owner,
        sum(1 for c in statuses if c.get("ready")),
        len((p.get("spec") or {}).get("containers") or statuses),
        waiting,
        f"{last.get('reason') or 'Error'} {last.get('exitCode', '?')}" if last else None,
        str(last.get("finishedAt")) if last and last.get("finishedAt") else None,
        unschedulable,
        meta.get("creationTimestamp"),
        *_requests_and_limits((p.get("spec") or {}).get("containers") or []),
    )


def _requests_and_limits(containers: list[dict[str, Any]]) -> tuple[int | None, int | None]:
    """(CPU requested in millicores, memory limit in bytes) of a pod's containers: None when no container
    asks for CPU, or when one has no memory limit (the pod may then take what the node has)."""
    cpu = [
        q
        for c in containers
        if (q := _quantity(((c.get("resources") or {}).get("requests") or {}).get("cpu")))
    ]
    memory = [_quantity(((c.get("resources") or {}).get("limits") or {}).get("memory")) for c in containers]
    return (
        int(sum(cpu) * 1000) if cpu else None,
        int(sum(m for m in memory if m is not None))
        if containers and all(m is not None for m in memory)
        else None,
    )


def _quantity(text: Any) -> Decimal | None:
    if text is None:
        return None
    try:
        return quantity(str(text))
    except (ValueError, ArithmeticError):
        return None


def nodes(store: ClusterStore, config: Config, index: PodIndex, memo: dict[str, Any]) -> tuple[Node, ...]:
    """Every node, by name.  A node is converted again only when its object, its pod count or its Hetzner
    server changed (memo by identity): at 500 nodes, converting all of them was a quarter of a build."""
    hetzner = (store.extra.get("hetzner") or {}).get("servers") or {}
    by_name = {v["name"]: (k, v["status"]) for k, v in hetzner.items()}
    per_node = index.per_node
    converted: dict[str, tuple[dict[str, Any], int, Any, Any, Node]] = memo.setdefault("nodes", {})
    out = []
    for n in store.items("nodes"):
        name = n["metadata"]["name"]
        pods = per_node.get(name, 0)
        hid, hstatus = by_name.get(name, (None, None))
        hit = converted.get(name)
        if hit is not None and hit[0] is n and hit[1:4] == (pods, hid, hstatus):
            out.append(hit[4])
            continue
        node = _node(n, pods, hid, hstatus)
        converted[name] = (n, pods, hid, hstatus, node)
        out.append(node)
    if len(converted) > 2 * len(out) + 16:  # nodes come and go (a replaced node): forget the gone ones
        names = {n.name for n in out}
        for gone in [k for k in converted if k not in names]:
            del converted[gone]
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
        _millicores((st.get("allocatable") or {}).get("cpu")),
        _bytes((st.get("allocatable") or {}).get("memory")),
    )


def _millicores(text: Any) -> int | None:
    q = _quantity(text)
    return None if q is None else int(q * 1000)


def _bytes(text: Any) -> int | None:
    q = _quantity(text)
    return None if q is None else int(q)


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


def database(store: ClusterStore, config: Config, index: PodIndex, now: datetime) -> Database | None:
    """The CNPG cluster at ``kubectl cnpg status -v`` depth: its status, annotations, instance pods,
    PDBs and Pooler from the watches, the servers' readings (PostgreSQL) from the postgres source."""
    db = config.database
    obj = store.objects.get("clusters", {}).get((db.namespace, db.cluster))
    if obj is None:
        return None
    st = obj.get("status") or {}
    names = list(st.get("instanceNames") or [])
    listed = fenced(obj)
    fenced_set = (set(names) if "*" in listed else set()) | (set(listed) - {"*"})
    raw_pods = {p["metadata"]["name"]: p for p in index.raw(db.namespace)}
    buckets = {n: bucket for bucket, ns in (st.get("instancesStatus") or {}).items() for n in ns or ()}
    members = tuple(_member(n, raw_pods.get(n), buckets.get(n), n in fenced_set) for n in names)
    poolers = tuple(
        p for p in index.by_namespace.get(db.namespace, ()) if p.owner.rsplit("-", 1)[0] == db.pooler
    )
    primary = st.get("currentPrimary", "")
    replication = tuple(store.extra.get("replication") or ())
    pg = _primary_reading(replication, primary)
    since = st.get("currentPrimaryTimestamp")
    since_at = _ts(since)
    return Database(
        db.cluster,
        db.namespace,
        st.get("phase", "unknown"),
        primary,
        st.get("timelineID"),
        int(st.get("instances", 0)),
        int(st.get("readyInstances", 0)),
        members,
        poolers,
        st.get("lastSuccessfulBackup"),
        replication,
        image=st.get("image"),
        system_id=pg.system_id if pg else None,
        primary_since=since,
        primary_uptime_s=None if since_at is None else round((now - since_at).total_seconds()),
        primary_started_at=pg.started_at if pg else None,
        wal_file=pg.wal_file if pg else None,
        current_lsn=pg.lsn if pg else None,
        target_primary=st.get("targetPrimary"),
        switchover=_switching(st),
        fenced=tuple(sorted(fenced_set)),
        hibernated=hibernated(obj),
        disruption_budgets=_disruption_budgets(store, db.namespace, db.cluster),
        certificates=_db_certificates(st, now),
        pooler=_pooler(store.objects.get("poolers", {}).get((db.namespace, db.pooler))),
    )


def _switching(st: dict[str, Any]) -> bool:
    """A switchover is under way: CNPG says so in its phase, or a target other than the current primary
    is set outside a failover (a failover's target is "pending", then the replica it promotes)."""
    phase, target = st.get("phase"), st.get("targetPrimary")
    if phase == "Switchover in progress":
        return True
    return phase != "Failing over" and target not in (None, "", "pending", st.get("currentPrimary"))


def _member(name: str, p: dict[str, Any] | None, status: str | None, is_fenced: bool) -> DbInstance:
    """An instance from its pod.  No container status yet is an unknown restart count, not zero."""
    pod = p or {}
    st = pod.get("status") or {}
    statuses = st.get("containerStatuses")
    postgres = next((c for c in statuses or () if c.get("name") == "postgres"), None) or (statuses or [{}])[0]
    return DbInstance(
        name,
        ((pod.get("metadata") or {}).get("labels") or {}).get("role", "unknown"),
        (pod.get("spec") or {}).get("nodeName"),
        bool(pod) and is_ready(pod),
        status,
        st.get("qosClass"),
        None if not statuses else sum(int(c.get("restartCount", 0)) for c in statuses),
        ((postgres.get("state") or {}).get("running") or {}).get("startedAt"),
        is_fenced,
    )


def _primary_reading(replication: tuple[Replication, ...], primary: str) -> Replication | None:
    """PostgreSQL's own reading of the primary: the current primary's, else any instance's that says it
    is one (mid-failover the Cluster's status lags the servers)."""
    primaries = [r for r in replication if r.role == "primary"]
    return next((r for r in primaries if r.instance == primary), primaries[0] if primaries else None)


def _disruption_budgets(
    store: ClusterStore, namespace: str, cluster: str
) -> tuple[DisruptionBudget, ...] | None:
    """The cluster's PDBs (labelled ``cnpg.io/cluster``); None when PDBs are not listed (not seen is not
    "none")."""
    if "poddisruptionbudgets" not in store.objects:
        return None
    out = []
    for (ns, name), pdb in store.objects["poddisruptionbudgets"].items():
        if (
            ns != namespace
            or ((pdb.get("metadata") or {}).get("labels") or {}).get("cnpg.io/cluster") != cluster
        ):
            continue
        spec, st = pdb.get("spec") or {}, pdb.get("status") or {}
        out.append(
            DisruptionBudget(
                name,
                None if spec.get("minAvailable") is None else str(spec["minAvailable"]),
                None if spec.get("maxUnavailable") is None else str(spec["maxUnavailable"]),
                _int(st.get("disruptionsAllowed")),
                _int(st.get("currentHealthy")),
                _int(st.get("desiredHealthy")),
            )
        )
    return tuple(sorted(out, key=lambda b: b.name))


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _cnpg_time(text: str) -> datetime | None:
    """CNPG's certificate expirations are Go's time.String(): ``2026-03-02 10:00:00 +0000 UTC`` (maybe
    with fractional seconds); RFC 3339 is read too."""
    m = re.match(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.\d+)? ([+-]\d{4})", text)
    if m is None:
        return _ts(text)
    return datetime.strptime(" ".join(m.groups()), "%Y-%m-%d %H:%M:%S %z")


def _db_certificates(st: dict[str, Any], now: datetime) -> tuple[DbCertificate, ...] | None:
    expirations = (st.get("certificates") or {}).get("expirations")
    if not expirations:
        return None
    out = []
    for name, text in sorted(expirations.items()):
        at = _cnpg_time(str(text))
        days = None if at is None else round((at - now).total_seconds() / 86400, 1)
        out.append(DbCertificate(name, str(text), days))
    return tuple(out)


def _pooler(obj: dict[str, Any] | None) -> DbPooler | None:
    if obj is None:
        return None
    spec = obj.get("spec") or {}
    bouncer = spec.get("pgbouncer") or {}
    return DbPooler(
        obj["metadata"]["name"],
        spec.get("type"),
        _int(spec.get("instances")),
        bouncer.get("poolMode"),
        bool(bouncer.get("paused")),
    )


def ha_checks(store: ClusterStore, config: Config, memo: dict[str, Any]) -> tuple[HaCheck, ...]:
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
        since: dict[str, tuple[bool, float]] = memo.setdefault("ha_since", {})
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


class SnapshotBuilder:
    """Builds snapshots for one reader (the dashboard, a drill, an action) with a memo of its own.

    The memo keeps what a build may reuse next time (converted pods and nodes by object identity, the pod
    index of the previous view, since when each HA item held): one reader's builds follow each other, so
    the memo is never read and changed at once — a lock makes that a rule, not a habit.  Two readers of
    one store (the dashboard's builder thread and a drill on the event loop) each have their own.
    """

    def __init__(self, config: Config, context: str | None = None) -> None:
        self.config = config
        self.context = context or config.kubernetes.context
        self.memo: dict[str, Any] = {}
        self._lock = threading.Lock()

    def build(self, store: ClusterStore) -> Snapshot:
        with self._lock:
            return _build(store, self.config, self.context, self.memo)


def build(store: ClusterStore, config: Config, context: str) -> Snapshot:
    """One snapshot, remembering nothing (``--action status``, a test)."""
    return _build(store, config, context, {})


def _build(store: ClusterStore, config: Config, context: str, memo: dict[str, Any]) -> Snapshot:
    from console.findings import findings

    now = datetime.now(UTC)
    index = pod_index(store, memo)
    snap = Snapshot(
        cluster=config.cluster.name,
        context=context,
        lab=config.lab is not None,
        taken_at=time.time(),
        nodes=nodes(store, config, index, memo),
        pods=index.all,
        workloads=workloads(store, index),
        database=database(store, config, index, now),
        load_balancer=load_balancer(store, config),
        certificates=certificates(store, now),
        probes=tuple(store.extra.get("probes") or ()),
        dns=tuple(store.extra.get("dns") or ()),
        backups=tuple(store.extra.get("backups") or ()),
        ha=ha_checks(store, config, memo),
        **_releases(store, config, index),
        timeline=timeline(store),
        sources=tuple(sorted(store.sources.values(), key=lambda s: s.name)),
        node_usage=(store.extra.get("metrics") or {}).get("nodes") or {},
        pod_usage=(store.extra.get("metrics") or {}).get("pods") or {},
    )
    return dataclasses.replace(snap, findings=findings(snap, store, config, now))
