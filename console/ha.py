"""The seed's HA patches as checkable state: which of them hold on the live objects right now.

The seed's spread constraints, probe timings and tolerations are runtime patches that a K3s upgrade or
reinstall silently undoes (K3s re-applies its packaged CoreDNS manifest on restart).  Each
:class:`~console.config.HaPatch` names the state that must hold; :func:`drift` says, in words an operator
can act on, what differs.  Pure: the dashboard, ``--action status`` and the HA action share it.
"""

from __future__ import annotations

from typing import Any

from console.config import HaPatch, ProbeTiming, ResourceSpec

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"


def pod_spec(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template's spec of a Deployment, or of a CNPG Pooler (``spec.template.spec``)."""
    spec: dict[str, Any] = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return spec


def replicas(kind: str, obj: dict[str, Any]) -> int:
    spec = obj.get("spec") or {}
    return int(spec.get("instances" if kind == "Pooler" else "replicas", 1))


def _anti_affinity(spec: dict[str, Any]) -> str | None:
    anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
    if anti.get("requiredDuringSchedulingIgnoredDuringExecution"):
        return "required"
    if anti.get("preferredDuringSchedulingIgnoredDuringExecution"):
        return "preferred"
    return None


def _spread(spec: dict[str, Any]) -> str | None:
    for c in spec.get("topologySpreadConstraints") or []:
        if c.get("topologyKey") == "kubernetes.io/hostname":
            return str(c.get("whenUnsatisfiable", "DoNotSchedule"))
    return None


def _probe(want: ProbeTiming, containers: list[dict[str, Any]], field: str, label: str) -> list[str]:
    out = []
    for c in containers:
        probe = c.get(field)
        if probe is None:
            out.append(f"{c.get('name')}: no {label} probe")
            continue
        period, threshold = int(probe.get("periodSeconds", 10)), int(probe.get("failureThreshold", 3))
        if (period, threshold) != (want.period_s, want.failure_threshold):
            out.append(
                f"{label} every {period} s x {threshold} (want {want.period_s} s x {want.failure_threshold})"
            )
    return out


def _tolerations(want: int, spec: dict[str, Any]) -> list[str]:
    seconds: dict[str, int | None] = {}
    for t in spec.get("tolerations") or []:
        if t.get("key") in (NOT_READY, UNREACHABLE) and t.get("effect", "NoExecute") == "NoExecute":
            seconds[t["key"]] = t.get("tolerationSeconds")
    out = []
    for key in (NOT_READY, UNREACHABLE):
        # Without an explicit toleration the DefaultTolerationSeconds admission plugin adds 300 s.
        have = seconds.get(key, 300)
        if have != want:
            out.append(f"{key.rsplit('/', 1)[1]} tolerated {have} s (want {want} s)")
    return out


def same_quantity(a: str | None, b: str | None) -> bool:
    """Kubernetes quantities by value ("1000m" is "1", "1024Mi" is "1Gi").  The parser comes from the
    client library; it is imported on first use because it drags in the whole synchronous client, and
    only configs that opt into resource items need it."""
    if a is None or b is None:
        return a == b
    from kubernetes.utils.quantity import parse_quantity

    try:
        return bool(parse_quantity(a) == parse_quantity(b))  # type: ignore[no-untyped-call]
    except ValueError:
        return a == b


def _resources(want: ResourceSpec, containers: list[dict[str, Any]]) -> list[str]:
    out = []
    for c in containers:
        have = c.get("resources") or {}
        for part, wanted in (("requests", want.requests), ("limits", want.limits)):
            for key, value in wanted.items():
                live = (have.get(part) or {}).get(key)
                if not same_quantity(None if live is None else str(live), value):
                    out.append(f"{c.get('name')}: {part}.{key} {live or 'unset'} (want {value})")
    return out


def drift(patch: HaPatch, obj: dict[str, Any] | None) -> list[str]:
    """What differs from the patch's state on ``obj``; an empty list means the patch holds."""
    if obj is None:
        return [f"{patch.kind} {patch.namespace}/{patch.object} not found"]
    out: list[str] = []
    spec = pod_spec(patch.kind, obj)
    if patch.replicas is not None and replicas(patch.kind, obj) != patch.replicas:
        out.append(f"{replicas(patch.kind, obj)} replicas (want {patch.replicas})")
    if patch.anti_affinity is not None and _anti_affinity(spec) != patch.anti_affinity:
        out.append(f"anti-affinity {_anti_affinity(spec) or 'none'} (want {patch.anti_affinity})")
    if patch.topology_spread is not None and _spread(spec) != patch.topology_spread:
        out.append(f"topology spread {_spread(spec) or 'none'} (want {patch.topology_spread})")
    containers = spec.get("containers") or []
    if patch.readiness is not None:
        out += _probe(patch.readiness, containers, "readinessProbe", "readiness")
    if patch.liveness is not None:
        out += _probe(patch.liveness, containers, "livenessProbe", "liveness")
    if patch.toleration_seconds is not None:
        out += _tolerations(patch.toleration_seconds, spec)
    if patch.resources is not None:
        out += _resources(patch.resources, containers)
    return out
