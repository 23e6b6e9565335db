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
from lab.kube.timing import Timing, from_command_line

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


# ---- installation (the get.k3s.io installer on a node) -------------------------------------------------

TOKEN_FILE = "var/lib/rancher/k3s/server/node-token"
KUBECONFIG_FILE = "etc/rancher/k3s/k3s.yaml"


class InstallError(Exception):
    """What the real installer or k3s would die with (printed on the node, exit 1)."""


# The K3s releases the lab's installer can download (github.com/k3s-io/k3s/releases); any other version
# fails as the real installer does when the release's hash file is not there.
RELEASES = (
    "v1.33.7+k3s1",
    "v1.33.8+k3s1",
    "v1.34.4+k3s1",
    "v1.34.5+k3s1",
    "v1.35.2+k3s1",
    "v1.35.3+k3s1",
    "v1.36.0+k3s1",
    "v1.36.1+k3s1",
)
REDACTED = "********"
SERVER_RESTART_S = 10.0  # the API server unanswered while the server's k3s restarts (× the lab's speed)
AGENT_RESTART_S = 2.0


def download_failed(version: str) -> str:
    url = f"https://github.com/k3s-io/k3s/releases/download/{version.replace('+', '%2B')}/sha256sum-arm64.txt"
    return f"[INFO]  Using {version} as release\n[INFO]  Downloading hash {url}\n[ERROR]  Download failed"


def version_of(kube: Any, node: str) -> str | None:
    """The K3s version installed on ``node`` (its Node's kubelet version; None: not installed)."""
    obj = kube.store.find(kube.registry.get("", "v1", "nodes"), None, node)
    return None if obj is None else str(obj["status"]["nodeInfo"]["kubeletVersion"])


async def reinstall(
    kube: Any, config: Any, node: str, role: str, args: list[str], env: dict[str, str], speed: float
) -> str:
    """The installer run again on a registered node: a restart of its k3s, at ``INSTALL_K3S_VERSION`` if
    given (an upgrade or a downgrade: the installer replaces the binary whatever the version).

    The server's restart leaves the API unanswered for a few seconds (workers keep serving) and K3s
    re-applies its packaged manifests as it starts (CoreDNS back to stock: :func:`lab.twin.k3s_restarted`).
    A node with the ``upgrade-fails`` fault runs only the version it had when the fault was set: any other
    is installed and fails to start — an agent's installer still exits 0 (its unit is ``Type=exec``), a
    server's fails (``Type=notify``) and its API stays down — and the node goes NotReady until the
    installer puts that version back."""
    import asyncio

    from lab.twin import k3s_restarted, set_clocks

    node_res = kube.registry.get("", "v1", "nodes")
    obj = kube.store.find(node_res, None, node)
    assert obj is not None
    recorded = json.loads((obj["metadata"].get("annotations") or {}).get("k3s.io/node-args") or "[]")
    if recorded and recorded[0] != role:
        raise InstallError(f"this host runs a k3s {recorded[0]}: the installer cannot make it a k3s {role}")
    version = env.get("INSTALL_K3S_VERSION") or str(obj["status"]["nodeInfo"]["kubeletVersion"])
    if version not in RELEASES:
        raise InstallError(download_failed(version))
    clocks = server_clocks(args) if role == "server" else None
    dp = kube.dataplane
    unit = "k3s" if role == "server" else "k3s-agent"
    good = dp.upgrade_fails.get(node)
    broken = good is not None and version != good
    if role == "server":  # a server whose new k3s does not start leaves no API at all
        kube.api.restart(float("inf") if broken else SERVER_RESTART_S * speed)
    await asyncio.sleep((SERVER_RESTART_S if role == "server" else AGENT_RESTART_S) * speed)
    obj = kube.store.find(node_res, None, node)
    assert obj is not None
    annotations = {**obj["metadata"].get("annotations", {}), "k3s.io/node-args": json.dumps([role, *args])}
    if broken:
        # The binary is replaced, then the service fails: the kubelet of the new version never reports.
        dp.k3s_stopped.add(node)
        dp.schedule_sync()
        if role == "server":  # Type=notify: systemctl restart waits for the start, and says it failed
            raise InstallError(
                f"Job for {unit}.service failed because the control process exited with error code.\n"
                f'See "systemctl status {unit}.service" and "journalctl -xeu {unit}.service" for details.'
            )
        return f"[INFO]  systemd: Starting {unit}"  # Type=exec: started is all systemctl knows
    info = {**obj["status"]["nodeInfo"], "kubeletVersion": version, "kubeProxyVersion": version}
    obj = kube.store.update(
        node_res, {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}, force=True
    )
    status = {**obj["status"], "nodeInfo": info}  # what the restarted kubelet reports
    kube.store.update(node_res, {**obj, "status": status}, subresource="status", force=True)
    dp.k3s_stopped.discard(node)
    if role == "server":
        kube.api.set_version(version)
        kube.api.down_until = min(kube.api.down_until, time.monotonic())  # up: the restart is over
        k3s_restarted(kube)
        if clocks is not None:
            set_clocks(kube.store, kube.cluster, clocks)
    dp.schedule_sync()
    kube.cluster._wake.set()
    return f"[INFO]  systemd: Starting {unit}"


def server_clocks(args: list[str]) -> Timing:
    """The control plane's clocks from a server's command line (a bad value: K3s would not start)."""
    try:
        return from_command_line(args)
    except ValueError as exc:
        raise InstallError(f"k3s: invalid argument: {exc}") from None


def _flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def _flags(args: list[str], name: str) -> list[str]:
    out = []
    for i, a in enumerate(args):
        if a == f"--{name}" and i + 1 < len(args):
            out.append(args[i + 1])
        elif a.startswith(f"--{name}="):
            out.append(a.split("=", 1)[1])
    return out


def ensure_token(kube: Any, lab_dir: Path, server: str, force: bool = False) -> None:
    """The server's join token file — for a seeded cluster (whose server runs) at start-up, or when the
    first server is installed."""
    import secrets

    path = node_fs(lab_dir, server) / TOKEN_FILE
    registered = kube.store.find(kube.registry.get("", "v1", "nodes"), None, server) is not None
    if path.exists() or not (registered or force):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"K10{secrets.token_hex(32)}::server:{secrets.token_hex(16)}\n")
    path.chmod(0o600)


def install(
    kube: Any,
    config: Any,
    lab_dir: Path,
    node: str,
    role: str,
    args: list[str],
    env: dict[str, str],
    kubeconfig: Path,
) -> str | None:
    """``curl -sfL https://get.k3s.io | sh -s - server|agent …`` on ``node``: the node registers with the
    twin's API server, as a real kubelet would.

    * The first server (``--cluster-init`` on an empty cluster) creates the base namespaces and K3s's
      packaged add-ons (stock CoreDNS, Traefik, local-path, metrics-server), writes the join token to
      ``/var/lib/rancher/k3s/server/node-token`` and the admin kubeconfig to ``/etc/rancher/k3s/k3s.yaml``
      (in the node's sandbox).
    * An agent must name the server by ``K3S_URL=https://<server private IP>:6443`` and present the
      server's token (``K3S_TOKEN``); otherwise it fails as K3s does and nothing registers.
    * ``--node-ip`` must be the node's private address; ``--node-taint`` taints are applied at
      registration; ``INSTALL_K3S_VERSION`` is the kubelet version the node reports.
    Re-running the installer on a registered node returns None after these checks: :func:`reinstall`
    restarts it (perhaps at a new version), as on a real node.
    """
    from lab.kube.seed import K3S_VERSION, _meta, coredns, node_object, packaged_services, workloads

    store, registry = kube.store, kube.registry
    node_res = registry.get("", "v1", "nodes")
    ns_res = registry.get("", "v1", "namespaces")
    server = next(n for n in config.nodes if n.role == "server")
    me = next((n for n in config.nodes if n.name == node), None)
    if me is None:
        raise InstallError(f"{node} is not a node of this cluster")
    node_ip = _flag(args, "node-ip")
    if node_ip is not None and node_ip != me.private_ipv4:
        raise InstallError(
            f"--node-ip {node_ip}: not an address of this host (its private IP is {me.private_ipv4})"
        )
    token_path = node_fs(lab_dir, server.name) / TOKEN_FILE
    clocks = server_clocks(args) if role == "server" else None
    if role == "agent":
        url = env.get("K3S_URL", "")
        if url != f"https://{server.private_ipv4}:6443":
            raise InstallError(
                f'failed to get CA certs: Get "{url or "(K3S_URL unset)"}/cacerts": connection refused'
            )
        if not token_path.exists() or env.get("K3S_TOKEN", "").strip() != token_path.read_text().strip():
            raise InstallError(
                "failed to validate token: token CA hash does not match the Cluster CA certificate hash"
            )
    elif not store.list(node_res) and "--cluster-init" not in args and not env.get("K3S_URL"):
        raise InstallError("the first server needs --cluster-init (embedded etcd) in this cluster's design")
    if store.find(node_res, None, node) is not None:
        return None  # installed already: the installer restarts it (reinstall), perhaps at a new version
    if clocks is not None:
        from lab.twin import set_clocks

        set_clocks(store, kube.cluster, clocks)
    if role == "server" and not token_path.exists():
        ensure_token(kube, lab_dir, server.name, force=True)
        kc = node_fs(lab_dir, server.name) / KUBECONFIG_FILE
        kc.parent.mkdir(parents=True, exist_ok=True)
        kc.write_text(kubeconfig.read_text())
        kc.chmod(0o600)
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            if store.find(ns_res, None, name) is None:
                store.create(
                    ns_res,
                    {
                        "metadata": _meta(name, labels={"kubernetes.io/metadata.name": name}),
                        "spec": {"finalizers": ["kubernetes"]},
                        "status": {"phase": "Active"},
                    },
                )
        packaged = {"coredns", "local-path-provisioner", "metrics-server", "traefik", "kube-dns"}
        for obj in [coredns(replicas=1, ha=False), *workloads(config), *packaged_services()]:
            if obj["metadata"].get("namespace") is None and obj["kind"] == "APIService":
                res = registry.by_kind(obj["apiVersion"], obj["kind"])
                if store.find(res, None, obj["metadata"]["name"]) is None:
                    store.create(res, obj)
            elif obj["metadata"]["name"] in packaged and obj["metadata"].get("namespace") == "kube-system":
                res = registry.by_kind(obj["apiVersion"], obj["kind"])
                if store.find(res, "kube-system", obj["metadata"]["name"]) is None:
                    store.create(res, obj)
    index = [n.name for n in config.nodes].index(node)
    taints = _flags(args, "node-taint")
    server_obj = kube.dataplane.server_of(node)  # a provisioned server has its own public address
    public_ip = ((server_obj or {}).get("public_net") or {}).get("ipv4", {}).get("ip") or me.public_ipv4
    obj = node_object(node, role, me.private_ipv4, public_ip, index, taints)
    version = env.get("INSTALL_K3S_VERSION") or K3S_VERSION
    if version not in RELEASES:
        raise InstallError(download_failed(version))
    obj["status"]["nodeInfo"]["kubeletVersion"] = version
    obj["metadata"]["annotations"]["k3s.io/node-args"] = json.dumps([role, *args])
    if role == "agent":
        redacted = {k: (REDACTED if k == "K3S_TOKEN" else v) for k, v in env.items() if k.startswith("K3S_")}
        obj["metadata"]["annotations"]["k3s.io/node-env"] = json.dumps(redacted)
    obj["metadata"]["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    store.create(node_res, obj)
    kube.dataplane.k3s_stopped.discard(node)
    kube.dataplane.schedule_sync()
    kube.cluster._wake.set()
    return f"[INFO]  systemd: Starting k3s{'-agent' if role == 'agent' else ''}"


def wipe(kube: Any, lab_dir: Path, nodes: list[str]) -> int:
    """The cluster's datastore and the nodes' disks gone: every object but the CRDs (which the lab serves
    as part of its API), and each node's ``/var/lib/rancher`` and ``/etc/rancher`` (etcd snapshots, join
    token, kubeconfig).  Returns how many objects were removed."""
    import shutil

    store = kube.store
    removed = 0
    for key, table in list(store.objects.items()):
        if key == "apiextensions.k8s.io/customresourcedefinitions":
            continue
        res = store.resources[key]
        for k in list(table):
            store._really_delete(res, k)
            removed += 1
    for node in nodes:
        for sub in ("var/lib/rancher", "etc/rancher"):
            shutil.rmtree(node_fs(lab_dir, node) / sub, ignore_errors=True)
    kube.dataplane.k3s_stopped.clear()
    kube.dataplane.schedule_sync()
    kube.cluster._wake.set()
    return removed
