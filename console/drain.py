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
    """Evict every pod in ``pending``; a budget's 429 is retried each second until ``timeout``.  ``stop``
    is asked between rounds (a drill's abort raises there)."""
    pending = list(pending)
    deadline = time.monotonic() + timeout
    while pending:
        stop()
        for ns, name in list(pending):
            try:
                await evict(api, ns, name)
                said(f"evicted {ns}/{name}")
                pending.remove((ns, name))
            except KubeError as exc:
                if exc.status == 404:
                    pending.remove((ns, name))
                elif exc.status != 429 or time.monotonic() > deadline:
                    raise ActionFailed(f"eviction of {ns}/{name}: {exc}") from None
        if pending:
            await asyncio.sleep(1.0)
