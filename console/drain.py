"""Draining a node the way ``kubectl drain --ignore-daemonsets`` does, through the Eviction API.

Shared by the ``node-drain`` drill and ``replace-node``: which pods a drain must move, and the eviction
loop that honours PodDisruptionBudgets (a 429 means "not now": retry until the deadline).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from console.clients.kube import KubeError, evict
from console.errors import ActionFailed


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector (``matchLabels`` and ``matchExpressions``) selects ``labels``; an empty or missing
    selector selects nothing (a PodDisruptionBudget's, as policy/v1 has it)."""
    if not selector:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        have, op, values = labels.get(e["key"]), e.get("operator"), e.get("values") or []
        if (op == "In" and have not in values) or (op == "NotIn" and have in values):
            return False
        if (op == "Exists" and have is None) or (op == "DoesNotExist" and have is not None):
            return False
    return True


def held_by_budgets(budgets: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(``namespace/budget``, the names of ``pods`` it holds) for each PodDisruptionBudget that allows no
    disruption now and selects some of them: an eviction of those is refused (429) until it does."""
    out = []
    for b in budgets:
        if int((b.get("status") or {}).get("disruptionsAllowed", 1)) > 0:
            continue
        ns = b["metadata"]["namespace"]
        selector = (b.get("spec") or {}).get("selector")
        names = [
            p["metadata"]["name"]
            for p in pods
            if p["metadata"]["namespace"] == ns and selects(selector, p["metadata"].get("labels") or {})
        ]
        if names:
            out.append((f"{ns}/{b['metadata']['name']}", names))
    return out


def evictable(pods: list[dict[str, Any]], node: str) -> list[tuple[str, str]]:
    """(namespace, name) of the pods on ``node`` a drain evicts: not DaemonSet pods, not mirror pods, not
    finished or already terminating ones."""
    out = []
    for p in pods:
        meta, spec = p["metadata"], p.get("spec") or {}
        owners = meta.get("ownerReferences") or []
        if spec.get("nodeName") != node or meta.get("deletionTimestamp"):
            continue
        if any(o.get("kind") == "DaemonSet" for o in owners):
            continue  # kubectl drain --ignore-daemonsets
        if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
            continue
        if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        out.append((meta["namespace"], meta["name"]))
    return out


async def evict_all(
    api: Any,
    pending: list[tuple[str, str]],
    timeout: float,
    said: Callable[[str], None],
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Evict every pod in ``pending``; a budget's 429 is retried each second.  When no eviction has
    succeeded for ``timeout`` seconds the drain stops and says which pods are held and by which budget
    (the 429's cause), instead of hanging as ``kubectl drain`` does.  ``stop`` is asked between rounds (a
    drill's abort raises there)."""
    pending = list(pending)
    progressed = time.monotonic()
    held: dict[tuple[str, str], str] = {}
    while pending:
        stop()
        for ns, name in list(pending):
            try:
                await evict(api, ns, name)
                said(f"evicted {ns}/{name}")
                pending.remove((ns, name))
                held.pop((ns, name), None)
                progressed = time.monotonic()
            except KubeError as exc:
                if exc.status == 404:
                    pending.remove((ns, name))
                elif exc.status == 429:
                    held[(ns, name)] = "; ".join(exc.causes) or exc.message
                else:
                    raise ActionFailed(f"eviction of {ns}/{name}: {exc}") from None
        if pending and time.monotonic() - progressed > timeout:
            why = "; ".join(f"{ns}/{name}: {w}" for (ns, name), w in held.items())
            raise ActionFailed(f"the drain made no progress for {timeout:.0f} s — {why}")
        if pending:
            await asyncio.sleep(1.0)
