"""The fields an HA patch owns, as they are and as they should be — and the request that makes them so.

Only these fields are compared, shown and written: replicas (a Pooler's ``instances``), the pod
anti-affinity on ``kubernetes.io/hostname``, the hostname topology spread, each container's readiness and
liveness timing, the NoExecute tolerations for ``not-ready``/``unreachable``, and (opt-in) the named
resource requests and limits of each container — plus, with required anti-affinity, the rollout strategy
(see :data:`ONE_AT_A_TIME`).  Everything else on the
object belongs to whoever else manages it.

Content types on purpose: a Deployment takes a strategic-merge patch (containers merge by name, so a
probe's handler stays; tolerations and affinity terms are replaced, so the full wanted list is sent); a
CNPG Pooler is a custom resource, where strategic merge is refused (415): it takes a merge patch.  Every
patch carries the ``resourceVersion`` it was computed from, so a concurrent change is a 409, not a lost
update.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

import yaml

from console.clients.kube import MERGE_PATCH, STRATEGIC_PATCH
from console.config import HaPatch
from console.ha import NOT_READY, UNREACHABLE, pod_spec, same_quantity

HOSTNAME = "kubernetes.io/hostname"
# Required anti-affinity with as many replicas as eligible nodes (the pooler: 2 on the 2 workers) leaves
# no node for a surge pod, so the default rollout (25% surge, 0 unavailable) never finishes.  The patch
# sets the only rollout that can: one old pod at a time replaced, the other serving meanwhile.  It is part
# of what the patch writes, not of its drift (the seed does not state a strategy).
ONE_AT_A_TIME = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def path(patch: HaPatch) -> str:
    if patch.kind == "Pooler":
        return f"/apis/postgresql.cnpg.io/v1/namespaces/{patch.namespace}/poolers/{patch.object}"
    return f"/apis/apps/v1/namespaces/{patch.namespace}/deployments/{patch.object}"


def content_type(patch: HaPatch) -> str:
    return MERGE_PATCH if patch.kind == "Pooler" else STRATEGIC_PATCH


def selector(patch: HaPatch, obj: dict[str, Any]) -> dict[str, str]:
    if patch.kind == "Pooler":
        return {"cnpg.io/poolerName": patch.object}
    labels: dict[str, str] = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return labels


def _anti(kind: str, labels: dict[str, str]) -> dict[str, Any]:
    term = {"labelSelector": {"matchLabels": labels}, "topologyKey": HOSTNAME}
    if kind == "required":
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]
        }
    }


def _tolerations(existing: list[dict[str, Any]], seconds: int) -> list[dict[str, Any]]:
    keep = [t for t in existing if t.get("key") not in (NOT_READY, UNREACHABLE)]
    return keep + [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        for key in (NOT_READY, UNREACHABLE)
    ]


def owned(patch: HaPatch, obj: dict[str, Any]) -> dict[str, Any]:
    """The owned fields of ``obj`` (what the diff shows)."""
    spec = pod_spec(patch.kind, obj)
    out: dict[str, Any] = {}
    if patch.replicas is not None:
        key = "instances" if patch.kind == "Pooler" else "replicas"
        out[key] = (obj.get("spec") or {}).get(key, 1)
    if patch.anti_affinity is not None:
        out["podAntiAffinity"] = (spec.get("affinity") or {}).get("podAntiAffinity")
    if patch.topology_spread is not None:
        out["topologySpreadConstraints"] = [
            c for c in spec.get("topologySpreadConstraints") or [] if c.get("topologyKey") == HOSTNAME
        ]
    for c in spec.get("containers") or []:
        for field, want in (("readinessProbe", patch.readiness), ("livenessProbe", patch.liveness)):
            if want is not None:
                probe = c.get(field) or {}
                out[f"{c['name']}.{field}"] = {
                    "periodSeconds": probe.get("periodSeconds", 10),
                    "failureThreshold": probe.get("failureThreshold", 3),
                }
    if patch.toleration_seconds is not None:
        out["tolerations"] = [
            t for t in spec.get("tolerations") or [] if t.get("key") in (NOT_READY, UNREACHABLE)
        ]
    if patch.resources is not None:
        for c in spec.get("containers") or []:
            have = c.get("resources") or {}
            out[f"{c['name']}.resources"] = {
                part: {k: (have.get(part) or {}).get(k) for k in wanted}
                for part, wanted in (
                    ("requests", patch.resources.requests),
                    ("limits", patch.resources.limits),
                )
                if wanted
            }
    return out


def desired_object(patch: HaPatch, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with the owned fields set as the patch wants (what export writes and the diff compares)."""
    new = copy.deepcopy(obj)
    spec = new.setdefault("spec", {})
    if patch.replicas is not None:
        spec["instances" if patch.kind == "Pooler" else "replicas"] = patch.replicas
    tspec = spec.setdefault("template", {}).setdefault("spec", {})
    labels = selector(patch, obj)
    if patch.anti_affinity is not None:
        tspec.setdefault("affinity", {}).update(_anti(patch.anti_affinity, labels))
    if patch.anti_affinity == "required":
        spec["deploymentStrategy" if patch.kind == "Pooler" else "strategy"] = ONE_AT_A_TIME
    if patch.topology_spread is not None:
        others = [c for c in tspec.get("topologySpreadConstraints") or [] if c.get("topologyKey") != HOSTNAME]
        tspec["topologySpreadConstraints"] = [
            *others,
            {
                "maxSkew": 1,
                "topologyKey": HOSTNAME,
                "whenUnsatisfiable": patch.topology_spread,
                "labelSelector": {"matchLabels": labels},
            },
        ]
    for c in tspec.get("containers") or []:
        for field, want in (("readinessProbe", patch.readiness), ("livenessProbe", patch.liveness)):
            if want is not None:
                probe = c.setdefault(
                    field, {"tcpSocket": {"port": ((c.get("ports") or [{}])[0]).get("containerPort", 80)}}
                )
                probe["periodSeconds"] = want.period_s
                probe["failureThreshold"] = want.failure_threshold
    if patch.toleration_seconds is not None:
        tspec["tolerations"] = _tolerations(tspec.get("tolerations") or [], patch.toleration_seconds)
    if patch.resources is not None:
        for c in tspec.get("containers") or []:
            res = c.setdefault("resources", {})
            for part, wanted in (("requests", patch.resources.requests), ("limits", patch.resources.limits)):
                for key, value in wanted.items():
                    live = (res.get(part) or {}).get(key)
                    if not same_quantity(None if live is None else str(live), value):  # keep "1" for "1000m"
                        res.setdefault(part, {})[key] = value
    return new


def patch_body(patch: HaPatch, obj: dict[str, Any]) -> dict[str, Any]:
    """The request body that sets the owned fields (with the resourceVersion precondition)."""
    want = desired_object(patch, obj)
    wspec = want["spec"]
    tspec = wspec["template"]["spec"]
    body_tspec: dict[str, Any] = {}
    if patch.anti_affinity is not None:
        body_tspec["affinity"] = {"podAntiAffinity": tspec["affinity"]["podAntiAffinity"]}
    if patch.topology_spread is not None:
        body_tspec["topologySpreadConstraints"] = tspec["topologySpreadConstraints"]
    fields = [
        f
        for f, on in (
            ("readinessProbe", patch.readiness),
            ("livenessProbe", patch.liveness),
            ("resources", patch.resources),
        )
        if on is not None
    ]
    if fields:
        body_tspec["containers"] = [
            {"name": c["name"], **{f: c[f] for f in fields if f in c}} for c in tspec.get("containers") or []
        ]
    if patch.toleration_seconds is not None:
        body_tspec["tolerations"] = tspec["tolerations"]
    body: dict[str, Any] = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "spec": {}}
    if patch.replicas is not None:
        key = "instances" if patch.kind == "Pooler" else "replicas"
        body["spec"][key] = wspec[key]
    if patch.anti_affinity == "required":
        key = "deploymentStrategy" if patch.kind == "Pooler" else "strategy"
        body["spec"][key] = wspec[key]
    if body_tspec:
        body["spec"]["template"] = {"spec": body_tspec}
    return body


def diff(patch: HaPatch, obj: dict[str, Any] | None) -> str:
    """A unified YAML diff of the owned fields, live against desired ('' when they match)."""
    if obj is None:
        return f"--- {patch.kind} {patch.namespace}/{patch.object}: not found\n"
    live = yaml.safe_dump(owned(patch, obj), sort_keys=True)
    want = yaml.safe_dump(owned(patch, desired_object(patch, obj)), sort_keys=True)
    if live == want:
        return ""
    name = f"{patch.kind.lower()}/{patch.namespace}/{patch.object}"
    return "".join(
        difflib.unified_diff(live.splitlines(True), want.splitlines(True), f"live {name}", f"desired {name}")
    )
