"""What Kubernetes objects say about themselves (Ready, rolled out) — pure, no client import, so the
dashboard's snapshot and the actions share one reading of each."""

from __future__ import annotations

import json
from typing import Any

from console.errors import UsageError

FENCED = "cnpg.io/fencedInstances"
HIBERNATION = "cnpg.io/hibernation"


def split_target(action: str, target: str | None, what: str) -> tuple[str, str]:
    """``--target NS/NAME`` as (namespace, name); a usage error otherwise."""
    ns, _, name = (target or "").partition("/")
    if not ns or not name or "/" in name:
        raise UsageError(f"--action {action} needs --target NAMESPACE/{what}, not {target!r}")
    return ns, name


def is_ready(obj: dict[str, Any]) -> bool:
    """A Node's or Pod's ``Ready`` condition is ``True``."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def fenced(obj: dict[str, Any]) -> list[str]:
    """The names in a CNPG Cluster's ``cnpg.io/fencedInstances`` annotation (a JSON list; ``"*"`` fences
    every instance), as written: an annotation that is not a JSON list fences nothing, as for CNPG."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(FENCED)
    try:
        names = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


def hibernated(obj: dict[str, Any]) -> bool:
    """A CNPG Cluster hibernated by ``cnpg.io/hibernation: "on"`` (its instances are shut down)."""
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(HIBERNATION) == "on"


def rolled_out(d: dict[str, Any]) -> bool:
    """``kubectl rollout status`` for a Deployment: its controller observed the current generation and
    every wanted replica is updated and ready, with no old one left."""
    st, want = d.get("status") or {}, int((d.get("spec") or {}).get("replicas", 1))
    return (
        int(st.get("observedGeneration", 0)) >= int(d["metadata"].get("generation", 0))
        and int(st.get("updatedReplicas", 0)) == want
        and int(st.get("readyReplicas", 0)) == want
        and int(st.get("replicas", 0)) == want
    )


def unsettled(obj: dict[str, Any]) -> str | None:
    """Why a just-created object is not up yet (None: it is).  Deployments are rolled out, DaemonSets
    ready on every node they want, StatefulSets ready, a CNPG ``Cluster`` healthy with every instance
    ready; other kinds are up once they exist."""
    kind, st = obj.get("kind"), obj.get("status") or {}
    if kind == "Deployment":
        return (
            None
            if rolled_out(obj)
            else f"{st.get('readyReplicas', 0)}/{obj['spec'].get('replicas', 1)} ready"
        )
    if kind == "DaemonSet":
        want = int(st.get("desiredNumberScheduled", 0))
        ok = want > 0 and int(st.get("numberReady", 0)) == want == int(st.get("updatedNumberScheduled", want))
        return None if ok else f"{st.get('numberReady', 0)}/{want} ready"
    if kind == "StatefulSet":
        want = int((obj.get("spec") or {}).get("replicas", 1))
        return (
            None if int(st.get("readyReplicas", 0)) == want else f"{st.get('readyReplicas', 0)}/{want} ready"
        )
    if kind == "Cluster" and str(obj.get("apiVersion", "")).startswith("postgresql.cnpg.io/"):
        phase = str(st.get("phase") or "no status yet")
        ready = int(st.get("readyInstances", 0)) == int((obj.get("spec") or {}).get("instances", -1))
        return None if "healthy" in phase.lower() and ready else phase
    return None
