"""Server-side printing (``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``), which kubectl asks for.

Columns follow the real API server's printers (pkg/printers/internalversion) for the kinds this cluster
shows; custom resources use their CRD's ``additionalPrinterColumns``; anything else gets Name and Age.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lab.kube.resources import Resource

Row = list[Any]
Col = tuple[str, str, int]  # name, type, priority (1 = only with -o wide)


def age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    delta = (
        datetime.now(UTC) - datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    ).total_seconds()
    s = max(0, int(delta))
    if s < 120:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 3 * 3600:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    if s < 8 * 86400:
        return f"{s // 86400}d{(s % 86400) // 3600}h" if (s % 86400) // 3600 else f"{s // 86400}d"
    return f"{s // 86400}d"


def _node(o: dict[str, Any]) -> Row:
    conds = {c["type"]: c["status"] for c in o.get("status", {}).get("conditions", [])}
    status = "Ready" if conds.get("Ready") == "True" else "NotReady"
    if o.get("spec", {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = o["metadata"].get("labels", {})
    roles = (
        ",".join(sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")))
        or "<none>"
    )
    info = o.get("status", {}).get("nodeInfo", {})
    addrs = {a["type"]: a["address"] for a in o.get("status", {}).get("addresses", [])}
    return [
        o["metadata"]["name"],
        status,
        roles,
        age(o["metadata"].get("creationTimestamp")),
        info.get("kubeletVersion", ""),
        addrs.get("InternalIP", "<none>"),
        addrs.get("ExternalIP", "<none>"),
        info.get("osImage", ""),
        info.get("kernelVersion", ""),
        info.get("containerRuntimeVersion", ""),
    ]


def pod_phase_text(o: dict[str, Any]) -> str:
    """The STATUS column as kubectl's pod printer reads it: the phase (or the pod's reason), overridden by
    a container's waiting or terminated reason, last container first."""
    st = o.get("status", {})
    reason = st.get("reason") or st.get("phase", "Unknown")
    running = False
    for cs in reversed(st.get("containerStatuses", [])):
        state = cs.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated:
            reason = f"ExitCode:{terminated.get('exitCode', 0)}"
        elif cs.get("ready") and state.get("running"):
            running = True
    if reason == "Completed" and running:
        reason = "Running"
    if o["metadata"].get("deletionTimestamp"):
        reason = "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    return str(reason)


def _pod(o: dict[str, Any]) -> Row:
    st = o.get("status", {})
    containers = o.get("spec", {}).get("containers", [])
    statuses = st.get("containerStatuses", [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    return [
        o["metadata"]["name"],
        f"{ready}/{len(containers)}",
        pod_phase_text(o),
        restarts,
        age(o["metadata"].get("creationTimestamp")),
        st.get("podIP") or "<none>",
        o.get("spec", {}).get("nodeName") or "<none>",
        "<none>",
        "<none>",
    ]


def _template_cells(template: dict[str, Any] | None, selector: str) -> Row:
    """A controller's wide columns: its pod template's containers and images, then its selector."""
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return [
        ",".join(c["name"] for c in containers),
        ",".join(c.get("image", "") for c in containers),
        selector,
    ]


def _deploy(o: dict[str, Any]) -> Row:
    st, spec = o.get("status", {}), o.get("spec", {})
    sel = ",".join(f"{k}={v}" for k, v in spec.get("selector", {}).get("matchLabels", {}).items())
    return [
        o["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        age(o["metadata"].get("creationTimestamp")),
        *_template_cells(spec.get("template"), sel),
    ]


def _rs(o: dict[str, Any]) -> Row:
    st, spec = o.get("status", {}), o.get("spec", {})
    return [
        o["metadata"]["name"],
        spec.get("replicas", 1),
        st.get("replicas", 0),
        st.get("readyReplicas", 0),
        age(o["metadata"].get("creationTimestamp")),
    ]


def _ds(o: dict[str, Any]) -> Row:
    st = o.get("status", {})
    sel = o.get("spec", {}).get("template", {}).get("spec", {}).get("nodeSelector") or {}
    return [
        o["metadata"]["name"],
        st.get("desiredNumberScheduled", 0),
        st.get("currentNumberScheduled", 0),
        st.get("numberReady", 0),
        st.get("updatedNumberScheduled", 0),
        st.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in sel.items()) or "<none>",
        age(o["metadata"].get("creationTimestamp")),
    ]


def _svc(o: dict[str, Any]) -> Row:
    spec = o.get("spec", {})
    ports = ",".join(f"{p['port']}/{p.get('protocol', 'TCP')}" for p in spec.get("ports", [])) or "<none>"
    return [
        o["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP", "<none>"),
        "<none>",
        ports,
        age(o["metadata"].get("creationTimestamp")),
    ]


def _ns(o: dict[str, Any]) -> Row:
    return [
        o["metadata"]["name"],
        o.get("status", {}).get("phase", "Active"),
        age(o["metadata"].get("creationTimestamp")),
    ]


def _event(o: dict[str, Any]) -> Row:
    inv = o.get("involvedObject", {})
    return [
        age(o.get("lastTimestamp") or o["metadata"].get("creationTimestamp")),
        o.get("type", "Normal"),
        o.get("reason", ""),
        f"{inv.get('kind', '').lower()}/{inv.get('name', '')}",
        o.get("message", ""),
    ]


def _lease(o: dict[str, Any]) -> Row:
    return [
        o["metadata"]["name"],
        o.get("spec", {}).get("holderIdentity", ""),
        age(o["metadata"].get("creationTimestamp")),
    ]


def _pdb(o: dict[str, Any]) -> Row:
    spec, st = o.get("spec", {}), o.get("status", {})
    return [
        o["metadata"]["name"],
        spec.get("minAvailable", "N/A"),
        spec.get("maxUnavailable", "N/A"),
        st.get("disruptionsAllowed", 0),
        age(o["metadata"].get("creationTimestamp")),
    ]


def _rc(o: dict[str, Any]) -> Row:
    """A ReplicationController: a ReplicaSet's columns, the wide ones filled (its selector is a map)."""
    spec = o.get("spec", {})
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"
    return [*_rs(o), *_template_cells(spec.get("template"), selector)]


def _apiservice(o: dict[str, Any]) -> Row:
    service = (o.get("spec") or {}).get("service")
    where = f"{service.get('namespace')}/{service.get('name')}" if service else "Local"
    cond = next(
        (c for c in (o.get("status") or {}).get("conditions") or [] if c["type"] == "Available"), None
    )
    if cond is None:
        available = "Unknown"
    elif cond["status"] == "True":
        available = "True"
    else:
        available = f"{cond['status']} ({cond['reason']})" if cond.get("reason") else cond["status"]
    return [o["metadata"]["name"], where, available, age(o["metadata"].get("creationTimestamp"))]


def _usage(o: dict[str, Any]) -> dict[str, str]:
    if "usage" in o:
        return dict(o["usage"])
    from console.units import quantity
    from lab.kube.metrics import cpu_quantity, memory_quantity

    cpu = sum(int(quantity(c["usage"]["cpu"]) * 10**9) for c in o.get("containers") or [])
    memory = sum(int(quantity(c["usage"]["memory"])) for c in o.get("containers") or [])
    return {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)}


def _metrics(o: dict[str, Any]) -> Row:
    usage = _usage(o)
    return [o["metadata"]["name"], usage.get("cpu", ""), usage.get("memory", ""), o.get("window", "")]


METRICS_COLUMNS: list[Col] = [
    ("Name", "string", 0),
    ("cpu", "string", 0),
    ("memory", "string", 0),
    ("Window", "string", 0),
]

PRINTERS: dict[str, tuple[list[Col], Callable[[dict[str, Any]], Row]]] = {
    "replicationcontrollers": (
        [
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _rc,
    ),
    "apiservices": (
        [("Name", "string", 0), ("Service", "string", 0), ("Available", "string", 0), ("Age", "string", 0)],
        _apiservice,
    ),
    "nodes": (
        [
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        _node,
    ),
    "pods": (
        [
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        _pod,
    ),
    "deployments": (
        [
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _deploy,
    ),
    "replicasets": (
        [
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
        ],
        _rs,
    ),
    "daemonsets": (
        [
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            ("Age", "string", 0),
        ],
        _ds,
    ),
    "services": (
        [
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
        ],
        _svc,
    ),
    "namespaces": ([("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)], _ns),
    "events": (
        [
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        _event,
    ),
    "leases": ([("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)], _lease),
    "poddisruptionbudgets": (
        [
            ("Name", "string", 0),
            ("Min Available", "string", 0),
            ("Max Unavailable", "string", 0),
            ("Allowed Disruptions", "integer", 0),
            ("Age", "string", 0),
        ],
        _pdb,
    ),
}


def _jsonpath(obj: Any, path: str) -> Any:
    cur = obj
    for part in path.strip().lstrip(".").split("."):
        if not part:
            continue
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def _printer(res: Resource) -> tuple[list[Col], Callable[[dict[str, Any]], Row]]:
    if res.group == "metrics.k8s.io":
        return METRICS_COLUMNS, _metrics
    if res.plural in PRINTERS and not res.custom:
        return PRINTERS[res.plural]
    if res.crd is not None:
        version = next(v for v in res.crd["spec"]["versions"] if v["name"] == res.version)
        extra = version.get("additionalPrinterColumns", [])
        cols: list[Col] = [("Name", "string", 0)] + [
            (
                c["name"],
                "string" if c.get("type") == "date" else c.get("type", "string"),
                c.get("priority", 0),
            )
            for c in extra
        ]

        def row(o: dict[str, Any]) -> Row:
            cells: Row = [o["metadata"]["name"]]
            for c in extra:
                value = _jsonpath(o, c["jsonPath"])
                cells.append(age(value) if c.get("type") == "date" else ("" if value is None else value))
            return cells

        return cols, row
    return [("Name", "string", 0), ("Age", "string", 0)], lambda o: [
        o["metadata"]["name"],
        age(o["metadata"].get("creationTimestamp")),
    ]


def to_table(
    res: Resource, objects: list[dict[str, Any]], list_meta: dict[str, Any], include: str = "Metadata"
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table; each row's ``object`` as ``includeObject`` asks: the object's metadata
    as a PartialObjectMetadata (``Metadata``, the default), the whole object (``Object``, which kubectl
    asks for to ``--sort-by`` a field), or null (``None``)."""
    cols, row = _printer(res)

    def entry(o: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"cells": row(o)}
        if include == "Object":
            out["object"] = o
        elif include == "Metadata":
            out["object"] = partial(o)
        else:
            out["object"] = None  # a RawExtension with nothing in it: written as null
        return out

    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [
            {"name": n, "type": t, "format": "name" if n == "Name" else "", "description": "", "priority": p}
            for n, t, p in cols
        ],
        "rows": [entry(o) for o in objects],
    }


def partial(o: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}


AS_KINDS = ("Table", "PartialObjectMetadata", "PartialObjectMetadataList")
INCLUDE = ("None", "Metadata", "Object")


@dataclass(frozen=True)
class View:
    """How a client asked to see what it reads: the ``as=`` of its ``Accept`` header (a Table, metadata
    only, or the objects themselves: ``""``) and a Table's ``includeObject``."""

    kind: str = ""
    include: str = "Metadata"
    yaml: bool = False  # ``Accept: application/yaml``

    def one(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "Table":
            meta = (
                {"resourceVersion": obj["metadata"]["resourceVersion"]}
                if "resourceVersion" in obj["metadata"]
                else {}
            )
            return to_table(res, [obj], meta, self.include)
        return partial(obj) if self.kind.startswith("PartialObjectMetadata") else obj

    def many(self, res: Resource, items: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "Table":
            return to_table(res, items, meta, self.include)
        if self.kind.startswith("PartialObjectMetadata"):
            kind, api_version = "PartialObjectMetadataList", "meta.k8s.io/v1"
            items = [partial(o) for o in items]
        else:
            kind, api_version = f"{res.kind}List", res.group_version
        return {"kind": kind, "apiVersion": api_version, "metadata": meta, "items": items}


def view(accept: str, include: str | None) -> View | None:
    """The first media type in ``accept`` the server can produce, as a :class:`View`; None when it can
    produce none of them (406)."""
    for media in (m.strip() for m in (accept or "application/json").split(",")):
        kind, params = (
            media.split(";")[0].strip(),
            dict(p.strip().split("=", 1) for p in media.split(";")[1:] if "=" in p),
        )
        if kind not in ("application/json", "application/yaml", "application/*", "*/*", ""):
            continue
        as_, as_yaml = params.get("as", ""), kind == "application/yaml"
        if not as_:
            return View(yaml=as_yaml)
        if as_ in AS_KINDS and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return View(as_, include or "Metadata", as_yaml)
    return None
