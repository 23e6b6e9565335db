"""``lab up --scale NODES,PODS[,UPDATES_PER_S]``: grow the twin far beyond the seed for benchmarks.

Extra nodes (``scale-node-NNN``) have no Hetzner server: they are always Ready and renew no Lease.  Extra
pods live in namespace ``scale``, bound round-robin to those nodes, Running and Ready; the controllers
leave that namespace alone so the seed's behaviour is unchanged.  A churn task then changes
``UPDATES_PER_S`` pods a second (readiness flips and restarts), which every watcher sees.  The daemon
also keeps full garbage collections of those pods off its loop, as the dashboard does (lab/daemon.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
import time
from typing import Any

from lab.kube.cluster import Cluster
from lab.kube.seed import node_object
from lab.kube.store import Store, now_iso

SCALE_NS = "scale"


def parse_scale(text: str) -> tuple[int, int, float]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3) or not all(p.replace(".", "", 1).isdigit() for p in parts):
        raise ValueError("--scale takes NODES,PODS[,UPDATES_PER_SECOND], for example 500,10000,200")
    return int(parts[0]), int(parts[1]), float(parts[2]) if len(parts) == 3 else 0.0


def populate(store: Store, cluster: Cluster, nodes: int, pods: int) -> list[str]:
    res = cluster.res
    names = [f"scale-node-{i:03d}" for i in range(nodes)]
    for i, name in enumerate(names):
        node_obj = node_object(
            name, "agent", f"10.1.{i // 250}.{i % 250 + 2}", f"198.51.100.{i % 250 + 2}", 10 + i, []
        )
        store.create(res["nodes"], node_obj)
    store.create(res["namespaces"], {"metadata": {"name": SCALE_NS}, "status": {"phase": "Active"}})
    ts = now_iso()
    for i in range(pods):
        node_name = names[i % len(names)] if names else "k3s-w1"
        store.create(
            res["pods"],
            {
                "metadata": {"name": f"load-{i:05d}", "namespace": SCALE_NS, "labels": {"app": "load"}},
                "spec": {
                    "nodeName": node_name,
                    "containers": [{"name": "load", "image": "registry.local/load:1"}],
                },
                "status": {
                    "phase": "Running",
                    "podIP": f"10.44.{i // 250}.{i % 250 + 2}",
                    "startTime": ts,
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ts}],
                    "containerStatuses": [
                        {
                            "name": "load",
                            "ready": True,
                            "restartCount": 0,
                            "image": "",
                            "imageID": "",
                            "state": {"running": {"startedAt": ts}},
                        }
                    ],
                },
            },
        )
    cluster.skip_namespaces.add(SCALE_NS)
    return names


async def churn(store: Store, cluster: Cluster, per_second: float) -> None:
    """Change ``per_second`` scale pods a second, in 20 ms batches."""
    if per_second <= 0:
        return
    pods_res = cluster.res["pods"]
    keys = [k for k in store.table(pods_res) if k[0] == SCALE_NS]
    tick = 0.02
    carry = 0.0
    while True:
        started = time.monotonic()
        carry += per_second * tick
        for _ in range(int(carry)):
            ns, name = random.choice(keys)
            pod = store.find(pods_res, ns, name)
            if pod is None:
                continue
            status: dict[str, Any] = copy.deepcopy(pod["status"])
            ready = status["conditions"][0]["status"] == "True"
            status["conditions"][0].update(status="False" if ready else "True", lastTransitionTime=now_iso())
            status["containerStatuses"][0]["ready"] = not ready
            if not ready:
                status["containerStatuses"][0]["restartCount"] += 1
            with contextlib.suppress(Exception):
                store.update(pods_res, {**pod, "status": status}, subresource="status", force=True)
        carry -= int(carry)
        await asyncio.sleep(max(0.0, tick - (time.monotonic() - started)))
