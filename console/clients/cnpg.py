"""The CloudNativePG objects the console acts on, as the ``kubectl cnpg`` plugin does: a switchover is a
merge patch of the Cluster's ``status.targetPrimary`` (the operator promotes it), a fence the
``cnpg.io/fencedInstances`` annotation (a JSON list; ``["*"]`` fences all), the Pooler's
``spec.pgbouncer.paused`` stops PgBouncer handing out server connections while the primary moves."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from console.clients.kube import MERGE_PATCH, patch, request
from console.config import Config
from console.kubeobj import FENCED
from console.kubeobj import fenced as fenced  # the reading is the snapshot's too (console/kubeobj.py)


def cluster_path(config: Config) -> str:
    db = config.database
    return f"/apis/postgresql.cnpg.io/v1/namespaces/{db.namespace}/clusters/{db.cluster}"


def pooler_path(config: Config) -> str:
    db = config.database
    return f"/apis/postgresql.cnpg.io/v1/namespaces/{db.namespace}/poolers/{db.pooler}"


async def cluster(api: Any, config: Config) -> dict[str, Any]:
    return await request(api, "GET", cluster_path(config))


async def instances(api: Any, config: Config) -> list[dict[str, Any]]:
    """The instance pods (``cnpg.io/podRole=instance``), each with its node and readiness."""
    db = config.database
    sel = f"cnpg.io/cluster={db.cluster},cnpg.io/podRole=instance"
    doc = await request(api, "GET", f"/api/v1/namespaces/{db.namespace}/pods", query={"labelSelector": sel})
    return list(doc.get("items") or [])


def current_primary(obj: dict[str, Any]) -> str:
    return str((obj.get("status") or {}).get("currentPrimary") or "")


async def primary_and_instances(api: Any, config: Config) -> tuple[str, dict[str, dict[str, Any]]]:
    """The current primary's name and the instance pods by name (KubeError 404: no database cluster)."""
    primary = current_primary(await cluster(api, config))
    return primary, {p["metadata"]["name"]: p for p in await instances(api, config)}


async def until_healthy_primary(api: Any, config: Config, want: str, timeout: float) -> bool:
    """Until ``want`` is the primary of a healthy cluster (the end of a switchover); False at ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = (await cluster(api, config)).get("status") or {}
        if st.get("currentPrimary") == want and "healthy" in str(st.get("phase", "")).lower():
            return True
        await asyncio.sleep(0.5)
    return False


async def request_switchover(api: Any, config: Config, target: str) -> None:
    await patch(api, cluster_path(config) + "/status", {"status": {"targetPrimary": target}}, MERGE_PATCH)


async def set_fenced(api: Any, config: Config, names: list[str]) -> None:
    """The fenced instances, as a whole list (an empty list removes the annotation)."""
    value = json.dumps(sorted(set(names))) if names else None
    await patch(api, cluster_path(config), {"metadata": {"annotations": {FENCED: value}}}, MERGE_PATCH)


async def set_pooler_paused(api: Any, config: Config, paused: bool) -> None:
    await patch(api, pooler_path(config), {"spec": {"pgbouncer": {"paused": paused}}}, MERGE_PATCH)
