"""What the detail screen shows for a dashboard row: which object it is, a describe-like summary (its
conditions, owner chain and related objects), its Events, and its YAML — UI-free, one reading for any row.

A row names its object by the panel it is in (``ref_for``): a node by name, a pod or workload as
``NS/NAME``, a database instance or pooler by its pod, a load-balancer target by its node, a certificate
as ``NS/NAME``.  The YAML folds ``managedFields`` (a page of bookkeeping nobody reads there) and masks a
Secret's values — the object is read with the console's own rights, but a screen is not a place for them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from console.clients.kube import KubeError, request, stream_lines
from console.model import Database, Replication, Snapshot
from console.units import duration, size

# kind → (API prefix, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "Node": ("/api/v1", "nodes", False),
    "Pod": ("/api/v1", "pods", True),
    "Secret": ("/api/v1", "secrets", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "ReplicaSet": ("/apis/apps/v1", "replicasets", True),
    "DaemonSet": ("/apis/apps/v1", "daemonsets", True),
    "StatefulSet": ("/apis/apps/v1", "statefulsets", True),
    "Job": ("/apis/batch/v1", "jobs", True),
    "CronJob": ("/apis/batch/v1", "cronjobs", True),
    "Certificate": ("/apis/cert-manager.io/v1", "certificates", True),
    "Cluster": ("/apis/postgresql.cnpg.io/v1", "clusters", True),
    "Pooler": ("/apis/postgresql.cnpg.io/v1", "poolers", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
}
WORKLOAD_KINDS = {"deployment": "Deployment", "daemonset": "DaemonSet", "statefulset": "StatefulSet"}
MASK = "••••••"
REPOSITORY = "BorgRepository"  # a Backups row: not a Kubernetes object — described from the snapshot


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    name: str
    namespace: str | None = None

    @property
    def path(self) -> str:
        prefix, plural, namespaced = KINDS[self.kind]
        ns = f"/namespaces/{self.namespace}" if namespaced and self.namespace else ""
        return f"{prefix}{ns}/{plural}/{self.name}"

    @property
    def title(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


def _ns_name(key: str) -> tuple[str, str]:
    ns, _, name = key.partition("/")
    return ns, name


def ref_for(panel: str, key: str, snapshot: Snapshot | None, db_namespace: str) -> ObjectRef | None:
    """The Kubernetes object behind a panel's row (None: the row is not one — a backup repository, a
    probe, a release)."""
    if panel == "nodes":
        return ObjectRef("Node", key)
    if panel == "pods":
        ns, name = _ns_name(key)
        return ObjectRef("Pod", name, ns)
    if panel == "workloads":
        ns, name = _ns_name(key)
        kind = next(
            (w.kind for w in (snapshot.workloads if snapshot else ()) if (w.namespace, w.name) == (ns, name)),
            "",
        )
        return ObjectRef(WORKLOAD_KINDS.get(kind, "Deployment"), name, ns)
    if panel == "database":
        return _database_ref(key, snapshot, db_namespace)
    if panel == "lb" and snapshot is not None and snapshot.load_balancer is not None:
        target = next((t for t in snapshot.load_balancer.targets if str(t.server_id) == key), None)
        return ObjectRef("Node", target.name) if target is not None else None
    if panel == "backups":
        return ObjectRef(REPOSITORY, key)
    if panel == "certs":
        ns, name = _ns_name(key)
        return ObjectRef("Certificate", name, ns)
    if panel == "findings" and snapshot is not None:
        return _finding_ref(key, snapshot)
    return None


def _database_ref(key: str, snapshot: Snapshot | None, namespace: str) -> ObjectRef:
    """A Database row's object (the keys of screens/panels.py database_rows): the cluster's and its
    certificates' rows the Cluster, ``pdb:NAME`` a PodDisruptionBudget, ``pooler:NAME`` the Pooler; an
    instance's or a pooler pod's row its pod (pod names hold no colon)."""
    kind, _, name = key.partition(":")
    if kind == "pdb":
        return ObjectRef("PodDisruptionBudget", name, namespace)
    if kind == "pooler":
        return ObjectRef("Pooler", name, namespace)
    db = snapshot.database if snapshot is not None else None
    if kind == "certs" or (db is not None and key == db.cluster):
        return ObjectRef("Cluster", name or key, namespace)
    return ObjectRef("Pod", key, namespace)


def _finding_ref(key: str, snapshot: Snapshot) -> ObjectRef | None:
    """A finding's subject when it is a node or a pod (``NS/NAME``)."""
    subject = next((f.subject for f in snapshot.findings if f"{f.code}:{f.subject}" == key), key)
    if any(n.name == subject for n in snapshot.nodes):
        return ObjectRef("Node", subject)
    ns, name = _ns_name(subject)
    if any((p.namespace, p.name) == (ns, name) for p in snapshot.pods):
        return ObjectRef("Pod", name, ns)
    return None


@dataclass
class Section:
    title: str
    columns: tuple[str, ...]
    rows: Sequence[tuple[str, ...]] = field(default_factory=list)


@dataclass
class Description:
    ref: ObjectRef
    obj: dict[str, Any]
    sections: list[Section]

    def yaml(self) -> str:
        return yaml_text(self.obj)


async def whole_yaml(api: Any, description: Description) -> str:
    """The YAML tab: the object read whole from the API, as ``kubectl get -o yaml`` shows it — the watch
    cache keeps a trimmed copy (no managedFields, last-applied annotation or token volume:
    console/sources/kube.py).  The cached copy, said so, when the API does not answer."""
    if description.ref.kind not in KINDS:
        return description.yaml()
    try:
        obj = await request(api, "GET", description.ref.path)
    except KubeError as exc:
        note = f"# the console's watch cache, trimmed: the API did not answer ({exc.sentence()})\n"
        return note + description.yaml()
    return yaml_text(obj)


def yaml_text(obj: dict[str, Any]) -> str:
    """The object as YAML, ``managedFields`` folded to one comment, a Secret's values masked."""
    doc = json.loads(json.dumps(obj))
    meta = doc.get("metadata") or {}
    managed = meta.pop("managedFields", None)
    if doc.get("kind") == "Secret":
        for key in ("data", "stringData"):
            if isinstance(doc.get(key), dict):
                doc[key] = {k: MASK for k in doc[key]}
        notes = meta.get("annotations") or {}
        if "kubectl.kubernetes.io/last-applied-configuration" in notes:  # it repeats the data
            notes["kubectl.kubernetes.io/last-applied-configuration"] = MASK
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=200, allow_unicode=True)
    if managed:
        fold = f"  # managedFields: {len(managed)} entries, folded\n"
        text = text.replace("metadata:\n", "metadata:\n" + fold, 1)
    return text


class Reader:
    """Objects by kind, namespace and name: from the console's watch cache (``objects``: the live
    sources' store, kept current by watches) where it holds the kind, else from the API.  The cache makes
    a detail screen instant; the API serves what the console does not watch (StatefulSets, Jobs)."""

    def __init__(self, api: Any, objects: dict[str, dict[tuple[str, str], dict[str, Any]]] | None = None):
        self.api = api
        self.objects = objects or {}

    def _cached(self, kind: str) -> dict[tuple[str, str], dict[str, Any]] | None:
        plural = KINDS[kind][1] if kind in KINDS else ""
        return self.objects.get(plural) if plural in self.objects else None

    async def get(self, ref: ObjectRef) -> dict[str, Any]:
        table = self._cached(ref.kind)
        if table is not None:
            obj = table.get((ref.namespace or "", ref.name))
            if obj is not None:
                return obj
        return await request(self.api, "GET", ref.path)

    async def list(
        self, kind: str, namespace: str | None, labels: dict[str, str] | None = None, node: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects of ``kind`` (in ``namespace``; all when None) with these labels (on this node)."""
        table = self._cached(kind)
        if table is None:
            prefix, plural, _ = KINDS[kind]
            path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
            query = {}
            if labels:
                query["labelSelector"] = ",".join(f"{k}={v}" for k, v in labels.items())
            if node:
                query["fieldSelector"] = f"spec.nodeName={node}"
            return list((await request(self.api, "GET", path, query=query)).get("items") or [])
        out = []
        for (ns, _), obj in table.items():
            have = (obj.get("metadata") or {}).get("labels") or {}
            if namespace and ns != namespace:
                continue
            if labels and any(have.get(k) != v for k, v in labels.items()):
                continue
            if node and (obj.get("spec") or {}).get("nodeName") != node:
                continue
            out.append(obj)
        return out


DESCRIBERS = ("Node", "Pod", "Deployment", "DaemonSet", "StatefulSet")


async def describe(
    api: Any, ref: ObjectRef, snapshot: Snapshot | None = None, objects: dict[str, Any] | None = None
) -> Description:
    """The object as the console knows it now (``objects``: its watch cache; else read from the API),
    with what kubectl describe would say around it."""
    if ref.kind == REPOSITORY:
        return _repository(ref, snapshot)
    reader = Reader(api, objects)
    obj = await reader.get(ref)
    sections = [_overview(obj), *_conditions(obj), *await _owners(reader, obj)]
    if ref.kind == "Node":
        sections += await _node(reader, obj)
    elif ref.kind == "Pod":
        sections += _pod(obj, snapshot)
    elif ref.kind in DESCRIBERS:
        sections += await _workload(reader, obj)
    elif ref.kind == "Certificate":
        sections.append(_certificate(obj))
    elif ref.kind in ("Cluster", "Pooler", "PodDisruptionBudget"):
        sections += _database_object(ref, snapshot)
    return Description(ref, obj, sections)


def _overview(obj: dict[str, Any]) -> Section:
    meta = obj.get("metadata") or {}
    rows = [("Kind", str(obj.get("kind", ""))), ("Name", str(meta.get("name", "")))]
    if meta.get("namespace"):
        rows.append(("Namespace", str(meta["namespace"])))
    rows.append(("Created", str(meta.get("creationTimestamp", ""))))
    labels = meta.get("labels") or {}
    if labels:
        rows.append(("Labels", ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))))
    return Section("Overview", ("field", "value"), rows)


def _conditions(obj: dict[str, Any]) -> list[Section]:
    conds = (obj.get("status") or {}).get("conditions") or []
    if not conds:
        return []
    rows = [
        (
            str(c.get("type", "")),
            str(c.get("status", "")),
            str(c.get("reason") or ""),
            str(c.get("message") or "")[:120],
            str(c.get("lastTransitionTime") or ""),
        )
        for c in conds
    ]
    return [Section("Conditions", ("type", "status", "reason", "message", "since"), rows)]


async def _owners(reader: Reader, obj: dict[str, Any]) -> list[Section]:
    """The controller chain upwards (a pod's ReplicaSet, its Deployment), as far as it can be read."""
    rows: list[tuple[str, ...]] = []
    ns = (obj.get("metadata") or {}).get("namespace")
    cur, seen = obj, 0
    while seen < 4:
        owner = next(
            (o for o in (cur.get("metadata") or {}).get("ownerReferences") or [] if o.get("controller")), None
        )
        if owner is None:
            break
        seen += 1
        rows.append((str(owner.get("kind", "")), str(owner.get("name", ""))))
        if owner.get("kind") not in KINDS:
            break
        try:
            cur = await reader.get(ObjectRef(owner["kind"], owner["name"], ns))
        except KubeError:
            break
    return [Section("Controlled by", ("kind", "name"), rows)] if rows else []


def _pod_row(p: dict[str, Any]) -> tuple[str, ...]:
    st = p.get("status") or {}
    cs = st.get("containerStatuses") or []
    ready = sum(1 for c in cs if c.get("ready"))
    waiting = next(
        (str(c["state"]["waiting"].get("reason", "")) for c in cs if "waiting" in (c.get("state") or {})), ""
    )
    return (
        f"{p['metadata'].get('namespace', '')}/{p['metadata']['name']}",
        str(st.get("phase", "")),
        f"{ready}/{len(p.get('spec', {}).get('containers') or [])}",
        str(sum(int(c.get("restartCount", 0)) for c in cs)),
        waiting or str((p.get("spec") or {}).get("nodeName") or "-"),
    )


POD_COLUMNS = ("pod", "phase", "ready", "restarts", "node / waiting")


async def _node(reader: Reader, obj: dict[str, Any]) -> list[Section]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    info = st.get("nodeInfo") or {}
    rows = [
        ("Schedulable", "no (cordoned)" if spec.get("unschedulable") else "yes"),
        ("Addresses", ", ".join(f"{a['type']}={a['address']}" for a in st.get("addresses") or [])),
        ("Kubelet", str(info.get("kubeletVersion", ""))),
        ("OS image", str(info.get("osImage", ""))),
        ("Taints", ", ".join(f"{t['key']}:{t['effect']}" for t in spec.get("taints") or []) or "none"),
        ("Capacity", ", ".join(f"{k}={v}" for k, v in (st.get("capacity") or {}).items())),
        ("Allocatable", ", ".join(f"{k}={v}" for k, v in (st.get("allocatable") or {}).items())),
    ]
    pods = await reader.list("Pod", None, node=obj["metadata"]["name"])
    return [
        Section("Node", ("field", "value"), rows),
        Section(f"Pods on this node ({len(pods)})", POD_COLUMNS, [_pod_row(p) for p in pods]),
    ]


def _pod(obj: dict[str, Any], snapshot: Snapshot | None) -> list[Section]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    rows = [
        ("Node", str(spec.get("nodeName") or "-")),
        ("Phase", str(st.get("phase", ""))),
        ("Pod IP", str(st.get("podIP") or "-")),
        ("QoS", str(st.get("qosClass") or "-")),
    ]
    statuses = {c.get("name"): c for c in st.get("containerStatuses") or []}
    containers = []
    for c in spec.get("containers") or []:
        cs = statuses.get(c["name"]) or {}
        state = next(iter(cs.get("state") or {"unknown": {}}))
        why = ((cs.get("state") or {}).get(state) or {}).get("reason") or ""
        last = (cs.get("lastState") or {}).get("terminated") or {}
        last_text = f"{last.get('reason', '')} (exit {last.get('exitCode')})" if last else ""
        ready = "yes" if cs.get("ready") else "no"
        restarts = str(cs.get("restartCount", 0))
        containers.append(
            (c["name"], str(c.get("image", "")), ready, restarts, f"{state} {why}".strip(), last_text)
        )
    out = [
        Section("Pod", ("field", "value"), rows),
        Section(
            "Containers", ("name", "image", "ready", "restarts", "state", "last termination"), containers
        ),
    ]
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if snapshot is not None and snapshot.database is not None and labels.get("cnpg.io/cluster"):
        out.append(_instance(obj["metadata"]["name"], snapshot))
    return out


def _instance(name: str, snapshot: Snapshot) -> Section:
    """A CNPG instance's place in the database: its role and CNPG status, its PostgreSQL's own reading
    (replication, LSNs, slot), the pooler in front."""
    db = snapshot.database
    assert db is not None
    rows: list[tuple[str, ...]] = []
    member = next((m for m in db.members if m.name == name), None)
    if member is not None:
        rows += [
            ("Role", member.role + (" (FENCED)" if member.fenced else "")),
            ("CNPG status", _q(member.status)),
            ("QoS", _q(member.qos)),
            ("Restarts", _q(member.restarts)),
            ("Container started", _q(member.started_at)),
        ]
    for r in db.replication:
        if r.instance == name:
            rows += _replication_rows(r)
    for p in db.poolers:
        rows.append(
            ("Pooler in front", f"{p.name} on {p.node or '-'} ({'ready' if p.ready else 'NOT READY'})")
        )
    return Section("Database instance", ("field", "value"), rows)


def _q(value: object) -> str:
    """A value as shown; unknown is "?", never blank or zero."""
    return "?" if value is None else str(value)


def _lag(seconds: float | None, r: Replication) -> str:
    """pg_stat_replication's lag: NULL for a listed sender is an idle, caught-up stream."""
    if seconds is None:
        return "idle" if r.sent_lsn is not None else "?"
    return f"{seconds:.3f} s"


def _replication_rows(r: Replication) -> list[tuple[str, ...]]:
    lag = "" if r.lag_bytes is None else f"{r.lag_bytes} bytes"
    secs = "" if r.lag_seconds is None else f", {r.lag_seconds:.1f} s"
    rows: list[tuple[str, ...]] = [
        ("Replication", f"{r.role} {r.state} LSN {r.lsn} {lag}{secs}".strip()),
        ("System ID", _q(r.system_id)),
        ("PostgreSQL started", _q(r.started_at)),
    ]
    if r.role == "primary":
        rows.append(("Current WAL file", _q(r.wal_file)))
    if r.role == "replica":
        lsns = " / ".join(map(_q, (r.sent_lsn, r.write_lsn, r.flush_lsn, r.replay_lsn)))
        lags = " / ".join(_lag(s, r) for s in (r.write_lag_s, r.flush_lag_s, r.lag_seconds))
        rows += [
            ("WAL receiver", _q(r.receiver)),
            ("Sync state", _q(r.sync_state)),
            ("Sent / write / flush / replay LSN", lsns),
            ("Write / flush / replay lag", lags),
            ("Slot", f"{_q(r.slot)}, retains {size(r.slot_retained_bytes)}"),
        ]
    return rows


def _database_object(ref: ObjectRef, snapshot: Snapshot | None) -> list[Section]:
    """The database as ``kubectl cnpg status -v`` shows it, under its Cluster, Pooler or PDB rows."""
    db = snapshot.database if snapshot is not None else None
    if db is None or ref.namespace != db.namespace or (ref.kind == "Cluster" and ref.name != db.cluster):
        return []
    if ref.kind == "Pooler":
        return [_pooler(db)]
    if ref.kind == "PodDisruptionBudget":
        return [_budgets(db)]
    return [_cluster(db), _instances(db), _streams(db), _slots(db), _certificates(db), _budgets(db),
            _pooler(db)]  # fmt: skip


def _cluster(db: Database) -> Section:
    switchover = f"in progress, to {db.target_primary}" if db.switchover else "no"
    rows = [
        ("Phase", db.phase),
        ("System ID", _q(db.system_id)),
        ("Image", _q(db.image)),
        ("Primary", db.primary or "?"),
        ("Primary since", f"{_q(db.primary_since)} (uptime {duration(db.primary_uptime_s)})"),
        ("PostgreSQL started", _q(db.primary_started_at)),
        ("Timeline", _q(db.timeline)),
        ("Current WAL file", _q(db.wal_file)),
        ("Current LSN", _q(db.current_lsn)),
        ("Ready instances", f"{db.ready_instances}/{db.instances}"),
        ("Switchover", switchover),
        ("Fenced", ", ".join(db.fenced) or "none"),
        ("Hibernated", "YES" if db.hibernated else "no"),
    ]
    return Section("Database cluster", ("field", "value"), rows)


def _instances(db: Database) -> Section:
    started = {r.instance: r.started_at for r in db.replication}
    rows = [
        (m.name, m.role, _q(m.status), _q(m.qos), m.node or "-", "yes" if m.ready else "NO", _q(m.restarts),
         "YES" if m.fenced else "no", _q(started.get(m.name)))
        for m in db.members
    ]  # fmt: skip
    columns = (
        "instance",
        "role",
        "status",
        "QoS",
        "node",
        "ready",
        "restarts",
        "fenced",
        "PostgreSQL started",
    )
    return Section("Instances", columns, rows)


def _streams(db: Database) -> Section:
    rows = [
        (r.instance, r.state, _q(r.receiver), _q(r.sync_state), _q(r.sent_lsn), _q(r.write_lsn),
         _q(r.flush_lsn), _q(r.replay_lsn), _lag(r.write_lag_s, r), _lag(r.flush_lag_s, r),
         _lag(r.lag_seconds, r), size(r.lag_bytes), _q(r.slot), size(r.slot_retained_bytes))
        for r in db.replication
        if r.role == "replica"
    ]  # fmt: skip
    columns = ("replica", "state", "receiver", "sync", "sent LSN", "write LSN", "flush LSN", "replay LSN",
               "write lag", "flush lag", "replay lag", "behind", "slot", "slot retains")  # fmt: skip
    return Section("Streaming replication", columns, rows)


def _slots(db: Database) -> Section:
    rows = [
        (s.name, r.instance, s.type, "yes" if s.active else "NO", _q(s.restart_lsn), size(s.retained_bytes))
        for r in db.replication
        for s in r.slots
    ]
    return Section("Replication slots", ("slot", "on", "type", "active", "restart LSN", "retains"), rows)


def _certificates(db: Database) -> Section:
    rows = [(c.name, c.not_after, _q(c.days_left)) for c in db.certificates or ()]
    if db.certificates is None:
        rows = [("?", "the Cluster's status names no certificate", "?")]
    return Section("Certificates", ("secret", "expires", "days left"), rows)


def _budgets(db: Database) -> Section:
    rows = [
        (b.name, _q(b.min_available), _q(b.max_unavailable), _q(b.disruptions_allowed),
         f"{_q(b.current_healthy)}/{_q(b.desired_healthy)}")
        for b in db.disruption_budgets or ()
    ]  # fmt: skip
    if db.disruption_budgets is None:
        rows = [("?", "", "", "?", "PodDisruptionBudgets not listed")]
    columns = ("budget", "minAvailable", "maxUnavailable", "disruptions allowed", "healthy/desired")
    return Section("PodDisruptionBudgets", columns, rows)


def _pooler(db: Database) -> Section:
    p = db.pooler
    if p is None:
        return Section("Pooler", ("field", "value"), [("Pooler", "not seen")])
    rows = [
        ("Name", p.name),
        ("Type", _q(p.type)),
        ("Pool mode", _q(p.mode)),
        ("Paused", "YES" if p.paused else "no"),
        ("Instances", f"{sum(1 for x in db.poolers if x.ready)} ready of {_q(p.instances)}"),
        *(
            (f"Pod {x.name}", f"on {x.node or '-'}, {'ready' if x.ready else 'NOT READY'}")
            for x in db.poolers
        ),
    ]
    return Section("Pooler", ("field", "value"), rows)


async def _workload(reader: Reader, obj: dict[str, Any]) -> list[Section]:
    meta, spec, st = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    ns = meta.get("namespace")
    fields = ("replicas", "readyReplicas", "updatedReplicas", "availableReplicas", "desiredNumberScheduled",
              "numberReady")  # fmt: skip
    rows = [(k, str(st[k])) for k in fields if k in st]
    if "replicas" in spec:
        rows.insert(0, ("wanted", str(spec["replicas"])))
    selector: dict[str, str] = (spec.get("selector") or {}).get("matchLabels") or {}
    out = [Section(str(obj.get("kind", "")), ("field", "value"), rows)]
    if obj.get("kind") == "Deployment":
        rs = await reader.list("ReplicaSet", ns, selector)
        mine = [
            r for r in rs
            if any(o.get("uid") == meta.get("uid") for o in r["metadata"].get("ownerReferences") or [])
        ]  # fmt: skip
        out.append(
            Section(
                "ReplicaSets",
                ("name", "revision", "wanted", "ready"),
                [
                    (
                        r["metadata"]["name"],
                        str(
                            (r["metadata"].get("annotations") or {}).get(
                                "deployment.kubernetes.io/revision", ""
                            )
                        ),
                        str((r.get("spec") or {}).get("replicas", 0)),
                        str((r.get("status") or {}).get("readyReplicas", 0)),
                    )
                    for r in mine
                ],
            )
        )
    pods = await reader.list("Pod", ns, selector) if selector else []
    out.append(Section(f"Pods ({len(pods)})", POD_COLUMNS, [_pod_row(p) for p in pods]))
    return out


def _certificate(obj: dict[str, Any]) -> Section:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    issuer = spec.get("issuerRef") or {}
    rows = [
        ("DNS names", ", ".join(spec.get("dnsNames") or [])),
        ("Issuer", f"{issuer.get('kind', '')} {issuer.get('name', '')}".strip()),
        ("Secret", str(spec.get("secretName", ""))),
        ("Not after", str(st.get("notAfter", "?"))),
        ("Renewal time", str(st.get("renewalTime", "?"))),
    ]
    return Section("Certificate", ("field", "value"), rows)


def _repository(ref: ObjectRef, snapshot: Snapshot | None) -> Description:
    """A Borg repository as the Backups source last saw it: schedule, newest archive, retention, checks."""
    repo = next((b for b in (snapshot.backups if snapshot else ()) if b.name == ref.name), None)
    if repo is None:
        return Description(ref, {}, [Section("Repository", ("field", "value"), [("state", "not seen yet")])])
    age = "?" if repo.age_hours is None else f"{repo.age_hours:.1f} h ago"
    rows = [
        ("Holds", repo.what),
        ("Schedule", repo.schedule),
        ("Archives", "?" if repo.archives is None else str(repo.archives)),
        ("Newest", f"{repo.latest or '-'} ({age}; due every {repo.max_age_hours:g} h)"),
        ("Overdue", "YES" if repo.overdue else "no"),
        ("Retention", repo.retention + ("" if repo.retention_ok is not False else " — NOT as configured")),
        ("Last check", repo.checked or "never (--action backup-check)"),
        (
            "Last verify-restore",
            repo.verified or ("never (--action verify-restore)" if repo.what == "db" else "-"),
        ),
    ]
    if repo.error:
        rows.append(("Error", repo.error))
    obj = {"kind": REPOSITORY, "metadata": {"name": repo.name}, "status": dataclasses.asdict(repo)}
    return Description(ref, obj, [Section("Borg repository", ("field", "value"), rows)])


def event_selector(ref: ObjectRef) -> str:
    sel = f"involvedObject.kind={ref.kind},involvedObject.name={ref.name}"
    return sel + (f",involvedObject.namespace={ref.namespace}" if ref.namespace else "")


def event_row(e: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(
            e.get("lastTimestamp")
            or e.get("eventTime")
            or (e.get("metadata") or {}).get("creationTimestamp")
            or ""
        ),
        str(e.get("type", "")),
        str(e.get("reason", "")),
        str((e.get("source") or {}).get("component") or e.get("reportingComponent") or ""),
        str(e.get("count") or 1),
        str(e.get("message", "")),
    )


EVENT_COLUMNS = ("last seen", "type", "reason", "from", "count", "message")


async def watch_events(api: Any, ref: ObjectRef) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The object's Events: each listed one as ``ADDED``, then what the watch says (by the
    ``involvedObject`` field selector, across namespaces: a node's events live in ``default``)."""
    if ref.kind not in KINDS:
        return  # not a Kubernetes object: no Events
    sel = event_selector(ref)
    listed = await request(api, "GET", "/api/v1/events", query={"fieldSelector": sel})
    for e in listed.get("items") or []:
        yield "ADDED", e
    rv = str((listed.get("metadata") or {}).get("resourceVersion") or "")
    while True:
        query = {"fieldSelector": sel, "watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true"}
        async for line in stream_lines(api, "/api/v1/events", query):
            if not line.strip():
                continue
            ev = json.loads(line)
            obj = ev.get("object") or {}
            if ev.get("type") == "ERROR":
                return  # too old (410) or refused: the listed events stand
            rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
            if ev.get("type") != "BOOKMARK":
                yield str(ev.get("type")), obj
