"""The CloudNativePG objects the console acts on, as the ``kubectl cnpg`` plugin does: a switchover is a
merge patch of the Cluster's ``status.targetPrimary`` (the operator promotes it), a fence the
``cnpg.io/fencedInstances`` annotation (a JSON list; ``["*"]`` fences all), the Pooler's
``spec.pgbouncer.paused`` stops PgBouncer handing out server connections while the primary moves."""

from __future__ import annotations

import json
from typing import Any

from console.clients.kube import MERGE_PATCH, patch, request
from console.config import Config

FENCED = "cnpg.io/fencedInstances"


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


async def request_switchover(api: Any, config: Config, target: str) -> None:
    await patch(api, cluster_path(config) + "/status", {"status": {"targetPrimary": target}}, MERGE_PATCH)


def fenced(obj: dict[str, Any]) -> list[str]:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(FENCED)
    try:
        names = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


async def set_fenced(api: Any, config: Config, names: list[str]) -> None:
    """The fenced instances, as a whole list (an empty list removes the annotation)."""
    value = json.dumps(sorted(set(names))) if names else None
    await patch(api, cluster_path(config), {"metadata": {"annotations": {FENCED: value}}}, MERGE_PATCH)


async def set_pooler_paused(api: Any, config: Config, paused: bool) -> None:
    await patch(api, pooler_path(config), {"spec": {"pgbouncer": {"paused": paused}}}, MERGE_PATCH)
