"""What Kubernetes objects say about themselves (Ready, rolled out) — pure, no client import, so the
dashboard's snapshot and the actions share one reading of each."""

from __future__ import annotations

from typing import Any


def is_ready(obj: dict[str, Any]) -> bool:
    """A Node's or Pod's ``Ready`` condition is ``True``."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


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
