"""Server-side printing (``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``), which kubectl asks for.

Columns follow the real API server's printers (pkg/printers/internalversion) for the kinds this cluster
shows; custom resources use their CRD's ``additionalPrinterColumns``; anything else gets Name and Age.
"""

from __future__ import annotations

from collections.abc import Callable
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
    st = o.get("status", {})
    reason = st.get("reason") or st.get("phase", "Unknown")
    for cs in st.get("containerStatuses", []):
        waiting = cs.get("state", {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
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


def _deploy(o: dict[str, Any]) -> Row:
    st, spec = o.get("status", {}), o.get("spec", {})
    containers = spec.get("template", {}).get("spec", {}).get("containers", [])
    sel = ",".join(f"{k}={v}" for k, v in spec.get("selector", {}).get("matchLabels", {}).items())
    return [
        o["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        age(o["metadata"].get("creationTimestamp")),
        ",".join(c["name"] for c in containers),
        ",".join(c.get("image", "") for c in containers),
        sel,
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


PRINTERS: dict[str, tuple[list[Col], Callable[[dict[str, Any]], Row]]] = {
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


def to_table(res: Resource, objects: list[dict[str, Any]], list_meta: dict[str, Any]) -> dict[str, Any]:
    cols, row = _printer(res)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [
            {"name": n, "type": t, "format": "name" if n == "Name" else "", "description": "", "priority": p}
            for n, t, p in cols
        ],
        "rows": [
            {
                "cells": row(o),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                },
            }
            for o in objects
        ],
    }


def wants_table(accept: str) -> bool:
    return "as=Table" in accept
