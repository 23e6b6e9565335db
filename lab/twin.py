"""Assemble the twin: Hetzner project, Kubernetes API and controllers, data plane — wired together.

The wiring is the point: a Hetzner server's power state decides whether its node's kubelet heartbeats,
whether its pods' processes and its ingress listen, and (through real TCP health checks against that
ingress) whether the load balancer sends traffic there.
"""

from __future__ import annotations

import base64
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
import yaml

from console.config import Config
from lab.dataplane import DataPlane
from lab.hetzner.project import HetznerProject
from lab.kube.aggregator import Aggregator
from lab.kube.app import KubeApi
from lab.kube.cluster import Cluster, pdb_status
from lab.kube.errors import KubeError
from lab.kube.metrics import Metrics
from lab.kube.namespaces import Namespaces
from lab.kube.rbac import ADMIN, User, service_account_user
from lab.kube.resources import Registry
from lab.kube.seed import cnpg_operator, coredns, seed_kubernetes
from lab.kube.store import Store
from lab.kube.timing import Timing, from_command_line


@dataclass
class KubeParts:
    store: Store
    registry: Registry
    api: KubeApi
    cluster: Cluster
    dataplane: DataPlane
    admin_token: str
    deployer_token: str
    ca: trustme.CA
    metrics: Metrics


def build_kube(
    project: HetznerProject,
    config: Config,
    speed: float,
    scenario: str,
    k3s_args: dict[str, list[str]] | None = None,
) -> KubeParts:
    """``k3s_args``: the server's K3s component flags (``kube-controller-manager-arg`` …: the control
    plane's clocks, lab/kube/timing.py), also recorded among the server Node's arguments."""
    k3s_args = k3s_args or {}
    server_flags = [f"--{flag}={value}" for flag, values in k3s_args.items() for value in values]
    store = Store()
    registry = Registry()
    admin_token = secrets.token_urlsafe(32)
    deployer_token = secrets.token_urlsafe(32)
    tokens: dict[str, User] = {
        admin_token: ADMIN,
        deployer_token: service_account_user(config.namespaces.prod, "deployer"),
    }
    api = KubeApi(store, registry, tokens, speed=speed)
    cluster = Cluster(store, registry, speed=speed)
    set_clocks(store, cluster, from_command_line(server_flags))
    ca = trustme.CA()
    server = next(n for n in config.nodes if n.role == "server")
    namespaces = Namespaces(
        store, registry, ca.cert_pem.bytes().decode(), (server.private_ipv4, 6443), speed, cluster.wake_at
    )
    cluster.controllers.append(namespaces.reconcile)
    aggregator = Aggregator(store, registry)
    cluster.controllers.append(aggregator.reconcile)
    pods = registry.get("", "v1", "pods")
    assert pods is not None
    metrics = Metrics(store, lambda: store.list(pods), speed, server.name)
    api.aggregator, api.metrics = aggregator, metrics
    dataplane = DataPlane(store, cluster, project, speed)
    cluster.node_alive = dataplane.node_alive
    dataplane.log = api.log_line
    cluster.logs = api.logs
    # The seed's history: production's release out three days, staging's build six hours, the rest since
    # the cluster was set up; the database's pods are awaited (the CNPG twin makes them).
    cluster.history_ages = {config.namespaces.prod: 3 * 86400.0, config.namespaces.staging: 6 * 3600.0}
    cluster.history_needs = {config.namespaces.database}
    cluster.probe = dataplane.cluster_probe
    cluster.on_pod_start.append(dataplane.on_pod_start)
    cluster.on_pod_stop.append(dataplane.on_pod_stop)
    project.listeners.append(dataplane.on_hetzner)
    project.listeners.append(lambda *_: cluster._wake.set())
    project.target_probe = dataplane.target_probe
    store.listeners.append(
        lambda res, _type, obj: (
            dataplane.schedule_sync()
            if res.plural == "pods" and obj["metadata"].get("namespace") not in cluster.skip_namespaces
            else None
        )
    )

    async def evict(namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        pods = store.list(cluster.res["pods"])
        pod = store.get(cluster.res["pods"], namespace, name)
        from lab.kube.cluster import match_labels

        for pdb in store.list(cluster.res["poddisruptionbudgets"], namespace):
            if not match_labels(pdb["spec"].get("selector"), pod["metadata"].get("labels") or {}):
                continue
            status = pdb_status(pdb, pods)
            if status["disruptionsAllowed"] < 1 and not pod["metadata"].get("deletionTimestamp"):
                raise KubeError(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    {
                        "causes": [
                            {
                                "reason": "DisruptionBudget",
                                "message": f"The disruption budget {pdb['metadata']['name']} needs "
                                f"{status['desiredHealthy']} healthy pods and has {status['currentHealthy']} "
                                "currently",
                            }
                        ]
                    },
                )
        opts = body.get("deleteOptions") or {}
        store.delete(cluster.res["pods"], namespace, name, grace=opts.get("gracePeriodSeconds"))
        cluster.event(pod, "Evicted", "Evicted by the eviction API", component="kube-apiserver")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    api.subresource_hooks["eviction"] = evict
    seed_kubernetes(store, registry, config, scenario, server_flags)
    metrics.start()
    return KubeParts(store, registry, api, cluster, dataplane, admin_token, deployer_token, ca, metrics)


def set_clocks(store: Store, cluster: Cluster, timing: Timing) -> None:
    """The control plane's clocks (a K3s server's component flags): the node lifecycle controller's and
    the kubelets' in the cluster, DefaultTolerationSeconds in the API's admission."""
    cluster.timing = timing
    store.toleration_seconds = (
        int(timing.default_not_ready_toleration_seconds),
        int(timing.default_unreachable_toleration_seconds),
    )


def server_ssl(parts: KubeParts) -> ssl.SSLContext:
    cert = parts.ca.issue_cert("127.0.0.1", "localhost", "kubernetes", "kubernetes.default.svc")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


def write_kubeconfig(parts: KubeParts, path: Path, url: str, deployer_namespace: str) -> None:
    ca = base64.b64encode(parts.ca.cert_pem.bytes()).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "admin",
        "preferences": {},
        "clusters": [{"name": "lab", "cluster": {"server": url, "certificate-authority-data": ca}}],
        "users": [
            {"name": "admin", "user": {"token": parts.admin_token}},
            {"name": "deployer", "user": {"token": parts.deployer_token}},
        ],
        "contexts": [
            {"name": "admin", "context": {"cluster": "lab", "user": "admin", "namespace": "default"}},
            {
                "name": "deployer",
                "context": {"cluster": "lab", "user": "deployer", "namespace": deployer_namespace},
            },
        ],
    }
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    (path.parent / "ca.pem").write_bytes(parts.ca.cert_pem.bytes())


def k3s_restarted(parts: KubeParts) -> list[str]:
    """K3s re-applies its packaged manifests on start: CoreDNS back to stock, and (as the seed's operator
    install is a plain manifest too) the CNPG operator without its runtime spread patch."""
    changed = []
    deploy = parts.cluster.res["deployments"]
    for stock in (coredns(ha=False), cnpg_operator(ha=False)):
        cur = parts.store.find(deploy, stock["metadata"]["namespace"], stock["metadata"]["name"])
        if cur is None:
            continue
        new = {**cur, "spec": {**cur["spec"], **stock["spec"]}}
        parts.store.update(deploy, new, force=True)
        changed.append(f"{stock['metadata']['namespace']}/{stock['metadata']['name']}")
    return changed
