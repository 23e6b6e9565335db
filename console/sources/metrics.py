"""What the nodes and pods use now: ``metrics.k8s.io`` (metrics-server, packaged with K3s), every 15 s.

metrics-server measures every ``--metric-resolution`` (15 s on K3s), so reading more often shows nothing
new.  Its group is an aggregated API: where metrics-server is not installed the group is missing (404),
where it is down the aggregator answers 503 — either way the source says so and the Nodes and Pods panels
show ``-`` for usage; a user who may not read it (the deployer) is ``forbidden``, as for any source.
"""

from __future__ import annotations

from typing import Any

from console.clients.kube import KubeError, request
from console.config import Config
from console.model import SourceState, Usage
from console.sources.base import PollingSource
from console.store import ClusterStore
from console.units import quantity

METRICS = "/apis/metrics.k8s.io/v1beta1"
RESOLUTION_S = 15.0


def usage(cpu: str, memory: str) -> Usage:
    return Usage(int(quantity(cpu) * 1000), int(quantity(memory)))


def _pod_usage(item: dict[str, Any]) -> Usage:
    parts = [usage(c["usage"]["cpu"], c["usage"]["memory"]) for c in item.get("containers") or []]
    return Usage(sum(p.cpu_m for p in parts), sum(p.memory for p in parts))


class MetricsSource(PollingSource):
    name = "metrics"

    def __init__(self, store: ClusterStore, config: Config, api: Any) -> None:
        super().__init__(store, config)
        self.api = api

    def interval(self) -> float:
        return RESOLUTION_S

    async def poll(self) -> None:
        try:
            nodes = await request(self.api, "GET", f"{METRICS}/nodes")
            pods = await request(self.api, "GET", f"{METRICS}/pods")
        except KubeError as exc:
            state = SourceState.FORBIDDEN if exc.status == 403 else SourceState.UNREACHABLE
            why = {
                404: "metrics.k8s.io is not served (metrics-server is not installed)",
                503: "metrics-server is not available (its APIService answers 503)",
            }.get(exc.status, exc.sentence())
            self.store.set_extra("metrics", {})
            self.store.set_source(self.name, state, why)
            return
        by_node = {
            n["metadata"]["name"]: usage(n["usage"]["cpu"], n["usage"]["memory"])
            for n in nodes.get("items") or []
        }
        by_pod = {
            f"{p['metadata']['namespace']}/{p['metadata']['name']}": _pod_usage(p)
            for p in pods.get("items") or []
        }
        self.store.set_extra("metrics", {"nodes": by_node, "pods": by_pod})
        self.store.set_source(self.name, SourceState.OK)
