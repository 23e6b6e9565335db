"""K3s on the lab's nodes: etcd snapshots of the twin's object store, cluster reset, service control.

Snapshots are real files — a JSON serialisation of every object (events excepted) with the store's
resourceVersion — written to the node's sandbox under ``var/lib/rancher/k3s/server/db/snapshots``
(``DIR/nodes/<node>/fs/…``; the ``k3s`` program in SSH sessions prints that sandbox path).  A cluster
reset from a snapshot replaces the store's contents with it, and the controllers take it from there.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lab.kube.resources import Registry
from lab.kube.store import Store

SKIP = {"/events", "coordination.k8s.io/leases"}
SNAPSHOT_PREFIX = "etcd-snapshot"


def node_fs(lab_dir: Path, node: str) -> Path:
    return lab_dir / "nodes" / node / "fs"


def snapshot_dir(lab_dir: Path, node: str) -> Path:
    path = node_fs(lab_dir, node) / "var/lib/rancher/k3s/server/db/snapshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def serialise(store: Store) -> dict[str, Any]:
    return {
        "format": "opsconsole-lab-etcd/1",
        "resourceVersion": store.rv,
        "taken": time.time(),
        "objects": {k: list(t.values()) for k, t in store.objects.items() if k not in SKIP},
    }


def save(store: Store, lab_dir: Path, node: str, name: str | None = None, when: float | None = None) -> Path:
    ts = int(when or time.time())
    base = name or SNAPSHOT_PREFIX
    path = snapshot_dir(lab_dir, node) / f"{base}-{node}-{ts}"
    data = serialise(store)
    data["taken"] = when or time.time()
    path.write_text(json.dumps(data))
    os.utime(path, (ts, ts))
    return path


def listing(lab_dir: Path, node: str) -> list[dict[str, Any]]:
    out = []
    for p in sorted(snapshot_dir(lab_dir, node).iterdir(), key=lambda p: p.stat().st_mtime):
        st = p.stat()
        out.append(
            {
                "name": p.name,
                "location": f"file://{p}",
                "size": st.st_size,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)),
            }
        )
    return out


def delete(lab_dir: Path, node: str, names: list[str]) -> list[str]:
    removed = []
    for name in names:
        path = snapshot_dir(lab_dir, node) / name
        if path.exists():
            path.unlink()
            removed.append(name)
    return removed


def prune(lab_dir: Path, node: str, retention: int, prefix: str = SNAPSHOT_PREFIX) -> list[str]:
    snaps = [s for s in listing(lab_dir, node) if s["name"].startswith(prefix)]
    doomed = [s["name"] for s in snaps[: max(0, len(snaps) - retention)]]
    return delete(lab_dir, node, doomed)


def restore(store: Store, registry: Registry, path: Path) -> dict[str, int]:
    """Replace the store's objects with the snapshot's (as ``k3s server --cluster-reset-restore-path``)."""
    data = json.loads(path.read_text())
    if data.get("format") != "opsconsole-lab-etcd/1":
        raise ValueError(f"{path} is not an etcd snapshot")
    counts = {"restored": 0, "removed": 0}
    for key, objs in data["objects"].items():
        res = store.resources.get(key)
        if res is None:
            group, _, plural = key.partition("/")
            res = next((r for r in registry.by_key.values() if r.group == group and r.plural == plural), None)
        if res is None:
            continue
        table = store.table(res)
        wanted = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objs}
        for k in [k for k in table if k not in wanted]:
            store._really_delete(res, k)
            counts["removed"] += 1
        for k, obj in wanted.items():
            if table.get(k) != obj:
                fresh = json.loads(json.dumps(obj))
                store._sorted.pop(store.key(res), None)
                table[k] = fresh
                store._commit(res, "MODIFIED" if k in table else "ADDED", fresh)
                counts["restored"] += 1
    return counts
