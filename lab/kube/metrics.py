"""``metrics.k8s.io/v1beta1`` — what metrics-server serves, from the lab's own processes.

Served as the aggregated API it is on K3s: the APIService ``v1beta1.metrics.k8s.io`` (lab/kube/
aggregator.py) points at ``kube-system/metrics-server``; while that Service has no ready endpoint the
group answers as the aggregator does (503 ``service unavailable``) — so ``kubectl top`` works exactly
while the metrics-server Deployment runs.

Usage is measured, never made up (psutil, every ``metric-resolution``: 15 s × speed):

* a pod backed by processes of its own — a CNPG instance's PostgreSQL (the postmaster and its
  backends), a pooler pod's PgBouncer — reports their CPU rate and resident memory;
* every other running pod is emulated inside the lab's daemon (the DocFast servers, the ingresses, the
  control plane's objects, ``--scale`` load), so the daemon's own CPU rate and RSS are shared among those
  pods and the API server (one share, on the server's node): what the lab spends is what the pods report,
  scaled down by their number;
* a node reports the sum of its running pods (plus the API server's share on the server).

CPU is nanocores and memory bytes in canonical quantity form (``123456789n``, ``4000Ki``), ``window``
the time between the two samples, as metrics-server writes them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil

from lab.kube.cluster import node_ready
from lab.kube.errors import KubeError
from lab.kube.store import Store, now_iso

RESOLUTION_S = 15.0  # metrics-server's --metric-resolution as K3s's manifest sets it

Pods = Callable[[], list[dict[str, Any]]]
ProcessOf = Callable[[dict[str, Any]], list[int] | None]


def cpu_quantity(nanocores: int) -> str:
    """Nanocores in canonical form: the largest of n, u, m, (cores) that states it exactly."""
    if nanocores == 0:
        return "0"
    for suffix, size in (("", 10**9), ("m", 10**6), ("u", 10**3)):
        if nanocores % size == 0:
            return f"{nanocores // size}{suffix}"
    return f"{nanocores}n"


def memory_quantity(size: int) -> str:
    """Bytes in canonical binary form: divided by 1024 while that is exact (``4000Ki``, ``100Mi``)."""
    if size == 0:
        return "0"
    for suffix in ("", "Ki", "Mi", "Gi", "Ti"):
        if size % 1024 or suffix == "Ti":
            return f"{size}{suffix}"
        size //= 1024
    return f"{size}Pi"


@dataclass
class Sample:
    at: float  # monotonic
    wall: float
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> cumulative CPU seconds (tree)
    rss: dict[int, int] = field(default_factory=dict)  # pid -> resident bytes (tree)


def _tree(pid: int) -> tuple[float, int]:
    """Cumulative CPU seconds and RSS of a process and all its descendants (0, 0 when gone)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0
    cpu, rss = 0.0, 0
    for p in procs:
        try:
            times = p.cpu_times()
            cpu += times.user + times.system
            rss += p.memory_info().rss
        except psutil.Error:
            continue
    return cpu, rss


class Metrics:
    """The metrics the twin's metrics-server would serve now."""

    def __init__(self, store: Store, pods: Pods, speed: float, server_node: str) -> None:
        self.store = store
        self.pods = pods
        self.resolution = max(1.0, RESOLUTION_S * speed)
        self.server_node = server_node
        self.process_of: list[ProcessOf] = []  # who knows a pod's own processes (the CNPG twin)
        self._prev: Sample | None = None
        self._last: Sample | None = None
        self.api_server_share = (0, 0)  # the API server's part of the daemon (nanocores, bytes)

    def _pids(self, pod: dict[str, Any]) -> list[int] | None:
        for resolve in self.process_of:
            found = resolve(pod)
            if found:
                return found
        return None

    def _sample(self, pids: set[int]) -> Sample:
        sample = Sample(time.monotonic(), time.time())
        for pid in pids:
            sample.cpu[pid], sample.rss[pid] = _tree(pid) if pid != os.getpid() else _own()
        return sample

    def _fresh(self, pids: set[int]) -> tuple[Sample, Sample] | None:
        """The two newest samples, taking a new one when the last is a resolution old."""
        now = time.monotonic()
        if self._last is None or now - self._last.at >= self.resolution or not pids <= set(self._last.cpu):
            self._prev, self._last = self._last, self._sample(pids)
        if self._prev is None or self._last.at - self._prev.at < 0.2:
            return None
        return self._prev, self._last

    def start(self) -> None:
        """A first sample at once, so metrics exist one resolution after the lab starts (as after
        metrics-server's first two scrapes)."""
        self._last = self._sample({os.getpid()})

    # ---- usage -------------------------------------------------------------------------------------

    def usage(self) -> tuple[dict[tuple[str, str], tuple[int, int]], Sample, float] | None:
        """(namespace, pod) -> (nanocores, bytes) for every running pod; None until two samples exist."""
        running = [
            p
            for p in self.pods()
            if (p.get("status") or {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
        ]
        own = {(p["metadata"]["namespace"], p["metadata"]["name"]): self._pids(p) for p in running}
        pids = {pid for found in own.values() for pid in found or []} | {os.getpid()}
        pair = self._fresh(pids)
        if pair is None:
            return None
        prev, last = pair
        window = last.at - prev.at

        def rate(pid_list: list[int]) -> tuple[int, int]:
            cpu = sum(
                max(0.0, last.cpu.get(p, 0.0) - prev.cpu.get(p, last.cpu.get(p, 0.0))) for p in pid_list
            )
            return int(cpu / window * 1e9), sum(last.rss.get(p, 0) for p in pid_list)

        shared = [key for key, found in own.items() if not found]
        daemon_cpu, daemon_rss = rate([os.getpid()])
        tenants = len(shared) + 1  # the pods emulated in the daemon, and the API server
        out = {key: rate(found) for key, found in own.items() if found}
        for key in shared:
            out[key] = (daemon_cpu // tenants, daemon_rss // tenants)
        self.api_server_share = (daemon_cpu // tenants, daemon_rss // tenants)
        return out, last, window

    # ---- API objects -------------------------------------------------------------------------------

    def _stamp(self, sample: Sample, window: float) -> dict[str, Any]:
        return {
            "timestamp": datetime.fromtimestamp(sample.wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "window": f"{window:.3f}".rstrip("0").rstrip(".") + "s",
        }

    def pod_metrics(self, namespace: str | None) -> list[dict[str, Any]]:
        measured = self.usage()
        if measured is None:
            return []
        usage, sample, window = measured
        out = []
        by_key = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in self.pods()}
        for (ns, name), (cpu, rss) in sorted(usage.items()):
            if namespace is not None and ns != namespace:
                continue
            pod = by_key[(ns, name)]
            containers = [c["name"] for c in pod["spec"].get("containers") or []] or [name]
            n = len(containers)
            out.append(
                {
                    "metadata": {
                        "name": name,
                        "namespace": ns,
                        "creationTimestamp": now_iso(),
                        **({"labels": pod["metadata"]["labels"]} if pod["metadata"].get("labels") else {}),
                    },
                    **self._stamp(sample, window),
                    "containers": [
                        {
                            "name": c,
                            "usage": {"cpu": cpu_quantity(cpu // n), "memory": memory_quantity(rss // n)},
                        }
                        for c in containers
                    ],
                }
            )
        return out

    def node_metrics(self, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        measured = self.usage()
        if measured is None:
            return []
        usage, sample, window = measured
        where = {
            (p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"].get("nodeName")
            for p in self.pods()
        }
        totals: dict[str, list[int]] = {}
        for key, (cpu, rss) in usage.items():
            node = where.get(key)
            if node:
                total = totals.setdefault(node, [0, 0])
                total[0] += cpu
                total[1] += rss
        server = totals.setdefault(self.server_node, [0, 0])
        server[0] += self.api_server_share[0]
        server[1] += self.api_server_share[1]
        out = []
        for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
            name = node["metadata"]["name"]
            if name not in totals or not node_ready(node):
                continue  # no kubelet answered the scrape: no metrics for it
            cpu, rss = totals[name]
            out.append(
                {
                    "metadata": {
                        "name": name,
                        "creationTimestamp": now_iso(),
                        **({"labels": node["metadata"]["labels"]} if node["metadata"].get("labels") else {}),
                    },
                    **self._stamp(sample, window),
                    "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(rss)},
                }
            )
        return out


def _ready(node: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions", [])
    )


def _own() -> tuple[float, int]:
    """The daemon's own CPU seconds and RSS (not its children: PostgreSQL and PgBouncer are pods')."""
    proc = psutil.Process(os.getpid())
    times = proc.cpu_times()
    return times.user + times.system, proc.memory_info().rss


def not_found(kind: str, name: str) -> KubeError:
    return KubeError(
        404,
        "NotFound",
        f'{kind}.metrics.k8s.io "{name}" not found',
        {"name": name, "group": "metrics.k8s.io", "kind": kind},
    )
