"""Kubernetes twin figures at the seed's size and at scale (500 nodes, 10,000 pods, 200 updates/s).

* ``lab up`` wall time (the seed with PostgreSQL, and the scaled lab);
* list all pods (JSON) and a node list, p50/p95; the pod list also read raw (the server's and the wire's
  part: the typed client's deserialisation is most of the rest);
* watch latency: a label change by one client to the event on another client's watch, p50/p95;
* the lab daemon's resident memory.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes.aio import client, config

from lab.state import read_state

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "opsconsole", *args], check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(lab_dir: Path, label: str, n: int) -> None:
    state = read_state(lab_dir)
    assert state is not None
    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=state.files["kubeconfig"], context="admin", client_configuration=cfg
    )
    async with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        lists, raws, nodes, size = [], [], [], 0
        for _ in range(n):
            t0 = time.perf_counter()
            pods = await core.list_pod_for_all_namespaces()
            lists.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            resp = await core.list_pod_for_all_namespaces_without_preload_content()
            size = len(await resp.read())
            raws.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await core.list_node()
            nodes.append(time.perf_counter() - t0)
        print(
            f"[{label}] list {len(pods.items)} pods: p50 {pct(lists, 0.5) * 1000:.0f} ms, "
            f"p95 {pct(lists, 0.95) * 1000:.0f} ms; list nodes: p50 {pct(nodes, 0.5) * 1000:.1f} ms"
        )
        print(
            f"[{label}] … of which the server and the wire (the body's {size / 1e6:.1f} MB read, not "
            f"deserialised): p50 {pct(raws, 0.5) * 1000:.0f} ms, p95 {pct(raws, 0.95) * 1000:.0f} ms"
        )
        rv = (await core.list_namespaced_config_map("default")).metadata.resource_version
        latencies: list[float] = []
        resp = await core.list_namespaced_config_map_without_preload_content(
            "default", watch=True, resource_version=rv, timeout_seconds=120
        )
        sent: dict[str, float] = {}

        async def reader() -> None:
            import json

            async for line in resp.content:
                event = json.loads(line)
                name = event["object"]["metadata"]["name"]
                if event["type"] == "ADDED" and name in sent:
                    latencies.append(time.perf_counter() - sent[name])
                    if len(latencies) == 50:
                        return

        task = asyncio.ensure_future(reader())
        for i in range(50):
            name = f"bench-{i}-{time.time_ns()}"
            sent[name] = time.perf_counter()
            await core.create_namespaced_config_map(
                "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name))
            )
            await asyncio.sleep(0.02)
        await asyncio.wait_for(task, 60)
        print(
            f"[{label}] write -> watch event: p50 {pct(latencies, 0.5) * 1000:.1f} ms, "
            f"p95 {pct(latencies, 0.95) * 1000:.1f} ms (n=50); daemon RSS {rss_mb(state.pid):.0f} MB"
        )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        seed_dir, scale_dir = Path(tmp) / "seed", Path(tmp) / "scale"
        ups = []
        for i in range(3):
            ups.append(_cli("lab", "up", "--dir", str(seed_dir), "--fast"))
            if i < 2:
                _cli("lab", "down", "--dir", str(seed_dir))
        print(f"[seed] lab up with PostgreSQL, SSH, Borg: median {statistics.median(ups):.1f} s over 3 runs")
        try:
            await measure(seed_dir, "seed", 30)
        finally:
            _cli("lab", "down", "--dir", str(seed_dir))
        up = _cli("lab", "up", "--dir", str(scale_dir), "--fast", "--scale", "500,10000,200")
        print(f"[scale] lab up --scale 500,10000,200: {up:.1f} s")
        try:
            await measure(scale_dir, "scale 500 nodes / 10k pods / 200 upd/s", 5)
        finally:
            _cli("lab", "down", "--dir", str(scale_dir))


if __name__ == "__main__":
    asyncio.run(main())
