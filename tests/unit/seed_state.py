"""The seed's cluster at one fixed moment, as the sources would have written it into a store: what the
snapshot tests draw and the unit tests judge, with no lab."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from console.model import BackupRepo, DnsCheck, Probe, Replication, ReplicationSlot, SourceState
from console.store import ClusterStore

NOW = 1_800_000_000.0
SYSTEM_ID = "7432876543210987654"
LAG = 16 * 1048576 + 96  # the replica's replay LSN behind the primary's current one


def _node(name: str, ip: str, role: str | None) -> dict[str, Any]:
    labels = {f"node-role.kubernetes.io/{role}": "true"} if role else {}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}
        if role
        else {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": ip}],
            "nodeInfo": {"kubeletVersion": "v1.34.4+k3s1"},
        },
    }


def _pod(ns: str, name: str, node: str, owner: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": ns,
            "name": name,
            "labels": labels or {},
            "ownerReferences": [{"name": owner}],
        },
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def _instance_pod(name: str, node: str, role: str) -> dict[str, Any]:
    """A CNPG instance pod, its postgres container running since the cluster was set up."""
    p = _pod(
        "postgres",
        name,
        node,
        "main-db",
        {"role": role, "cnpg.io/cluster": "main-db", "cnpg.io/podRole": "instance"},
    )
    p["spec"]["containers"] = [{"name": "postgres", "image": "ghcr.io/cloudnative-pg/postgresql:17.4"}]
    p["status"]["qosClass"] = "Burstable"
    p["status"]["containerStatuses"] = [
        {
            "name": "postgres",
            "ready": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": "2026-11-01T09:05:40Z"}},
        }
    ]
    return p  # fmt: skip


def _deployment(ns: str, name: str, replicas: int, **template: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": name}], **template}}},
        "status": {"readyReplicas": replicas},
    }


IMAGE = "git.cloonar.com/openclawd/docfast"


def _docfast(ns: str, replicas: int, tag: str) -> dict[str, Any]:
    d = _deployment(ns, "docfast", replicas)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = f"{IMAGE}:{tag}"
    d["status"].update({"updatedReplicas": replicas, "replicas": replicas, "availableReplicas": replicas})
    d["metadata"]["generation"] = d["status"]["observedGeneration"] = 1
    return d


def _docfast_pod(ns: str, name: str, node: str, owner: str, tag: str) -> dict[str, Any]:
    p = _pod(ns, name, node, owner)
    p["spec"]["containers"] = [{"name": "docfast", "image": f"{IMAGE}:{tag}"}]
    digest = {"v1.4.2": "9f1c0d2e4b6a", "main-3f9c2ab": "b3e7a1c9d0f4"}[tag]
    p["status"]["containerStatuses"] = [{"name": "docfast", "imageID": f"{IMAGE}@sha256:{digest * 5}"}]
    return p


def _replicaset(ns: str, name: str, revision: int, tag: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "ownerReferences": [{"name": "docfast"}],
                     "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                     "creationTimestamp": f"2026-11-{20 + revision}T10:00:00Z"},
        "spec": {"template": {"spec": {"containers": [{"name": "docfast", "image": f"{IMAGE}:{tag}"}]}}},
    }  # fmt: skip


def fill(s: ClusterStore) -> None:
    """The seed's cluster at one fixed moment: every source answered."""
    s.replace("nodes", [_node("k3s-mgr", "10.0.1.5", "control-plane"), _node("k3s-w1", "10.0.1.6", None),
                        _node("k3s-w2", "10.0.1.7", None)])  # fmt: skip
    s.replace(
        "pods",
        [
            _docfast_pod("docfast", "docfast-5d9c-a1", "k3s-w1", "docfast-5d9c", "v1.4.2"),
            _docfast_pod("docfast", "docfast-5d9c-b2", "k3s-w2", "docfast-5d9c", "v1.4.2"),
            _docfast_pod("docfast-staging", "docfast-7c4e-c3", "k3s-w1", "docfast-7c4e", "main-3f9c2ab"),
            _instance_pod("main-db-1", "k3s-w1", "primary"),
            _instance_pod("main-db-2", "k3s-w2", "replica"),
            _pod("postgres", "main-db-pooler-77f-x1", "k3s-w1", "main-db-pooler-77f"),
            _pod("postgres", "main-db-pooler-77f-y2", "k3s-w2", "main-db-pooler-77f"),
        ],
    )
    s.replace(
        "deployments",
        [
            _docfast("docfast", 2, "v1.4.2"),
            _docfast("docfast-staging", 1, "main-3f9c2ab"),
            _deployment("kube-system", "coredns", 1),  # the stock manifest is back: drift
            _deployment(
                "cnpg-system",
                "cnpg-controller-manager",
                2,
                topologySpreadConstraints=[
                    {"topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}
                ],
            ),
        ],
    )
    s.replace(
        "replicasets",
        [
            _replicaset("docfast", "docfast-5d9c", 3, "v1.4.2"),
            _replicaset("docfast", "docfast-6a1b", 2, "v1.4.1"),
            _replicaset("docfast", "docfast-4e2f", 1, "v1.4.0"),
            _replicaset("docfast-staging", "docfast-7c4e", 1, "main-3f9c2ab"),
        ],
    )
    s.replace("daemonsets", [])
    s.replace("poolers", [])
    s.replace("poddisruptionbudgets", [])
    s.replace("networkpolicies", [])
    expires = (datetime.now(UTC) + timedelta(days=89, hours=1)).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")
    s.replace(
        "clusters",
        [
            {
                "metadata": {"namespace": "postgres", "name": "main-db"},
                "status": {
                    "phase": "Cluster in healthy state",
                    "currentPrimary": "main-db-1",
                    "currentPrimaryTimestamp": "2026-11-01T09:06:00.000000Z",
                    "targetPrimary": "main-db-1",
                    "timelineID": 1,
                    "image": "ghcr.io/cloudnative-pg/postgresql:17.4",
                    "instances": 2,
                    "readyInstances": 2,
                    "instanceNames": ["main-db-1", "main-db-2"],
                    "instancesStatus": {"healthy": ["main-db-1", "main-db-2"]},
                    "certificates": {
                        "expirations": {f"main-db-{c}": expires for c in ("ca", "replication", "server")}
                    },
                },
            }
        ],
    )
    not_after = (datetime.now(UTC) + timedelta(days=60, hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    s.replace(
        "certificates",
        [
            {
                "metadata": {"namespace": "docfast", "name": "docfast.dev-tls"},
                "spec": {"dnsNames": ["docfast.dev"]},
                "status": {"notAfter": not_after, "conditions": [{"type": "Ready", "status": "True"}]},
            }
        ],
    )
    s.replace(
        "events",
        [
            {
                "lastTimestamp": "2026-11-29T10:00:00Z",
                "involvedObject": {"kind": "Pod", "namespace": "postgres", "name": "main-db-2"},
                "reason": "Started",
                "message": "Started container postgres",
                "type": "Normal",
            }
        ],
    )
    s.set_extra(
        "hetzner",
        {
            "servers": {121365837: {"name": "k3s-mgr", "status": "running"},
                        121365839: {"name": "k3s-w1", "status": "running"},
                        121365840: {"name": "k3s-w2", "status": "running"}},
            "load_balancer": {
                "name": "k3s-lb",
                "ip": "46.225.37.135",
                "targets": [
                    {"server_id": 121365839, "name": "k3s-w1", "health": [(80, "healthy"), (443, "healthy")]},
                    {"server_id": 121365840, "name": "k3s-w2", "health": [(80, "healthy"), (443, "healthy")]},
                ],
                "health_check": (15, 10, 3),
            },
            "rate": {"RateLimit-Limit": 3600, "RateLimit-Remaining": 3571},
        },
    )  # fmt: skip
    s.set_extra(
        "probes",
        (
            Probe("prod", "https://docfast.dev/health", True, 200, 41.0),
            Probe("staging", "https://staging.docfast.dev/health", True, 200, 44.0),
        ),
    )
    s.set_extra("dns", (DnsCheck("docfast.dev", "A", "46.225.37.135", ("46.225.37.135",), True),))
    s.set_extra(
        "replication",
        (
            Replication(
                "main-db-1",
                "primary",
                "primary",
                "0/5000060",
                0,
                0.0,
                system_id=SYSTEM_ID,
                started_at="2026-11-01T09:05:45.120000+00:00",
                wal_file="000000010000000000000005",
                slots=(ReplicationSlot("_cnpg_main_db_2", "physical", True, "0/4000000", LAG),),
            ),
            Replication(
                "main-db-2",
                "replica",
                "streaming",
                "0/4000000",
                LAG,
                2.5,
                system_id=SYSTEM_ID,
                started_at="2026-11-01T09:05:50.310000+00:00",
                receiver="streaming",
                sent_lsn="0/5000060",
                write_lsn="0/5000060",
                flush_lsn="0/5000060",
                replay_lsn="0/4000000",
                write_lag_s=0.002,
                flush_lag_s=0.004,
                sync_state="async",
                slot="_cnpg_main_db_2",
                slot_retained_bytes=LAG,
            ),
        ),
    )
    s.set_extra(
        "backups",
        (
            BackupRepo("k3s-db", "db", "0 */6 * * *", 6, 15, "db-2026-11-29T00:00", "2026-11-29T00:00:00Z",
                       9.5, True, True, "15 kept (7 daily + 4 weekly)"),
            BackupRepo("k3s-cluster", "cluster", "0 3 * * *", 24, 11, "cluster-2026-11-29T03:00",
                       "2026-11-29T03:00:00Z", 6.5, False, True, "11 kept (7 daily + 4 weekly)"),
        ),
    )  # fmt: skip
    s.extra["weak_db_credentials"] = True
    for name in (
        "kubernetes",
        "http",
        "dns",
        "postgres",
        "borg",
        "hetzner",
        *(f"kube:{k}" for k in s.objects),
    ):
        s.set_source(name, SourceState.OK, at=NOW - 5)


def budgets(store: ClusterStore) -> None:
    """What CNPG creates besides the seed's state: its two budgets for the cluster (the primary's holds
    every eviction of it), and one of DocFast's that is not the database's."""

    def pdb(ns: str, name: str, role: str, allowed: int, cluster: str | None = "main-db") -> dict[str, Any]:
        labels = {"cnpg.io/cluster": cluster} if cluster else {}
        return {
            "metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"role": role}}},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1},
        }

    store.replace(
        "poddisruptionbudgets",
        [
            pdb("postgres", "main-db-primary", "primary", 0),
            pdb("postgres", "main-db", "replica", 1),
            pdb("docfast", "docfast", "web", 1, cluster=None),
        ],
    )


def pooler(store: ClusterStore, paused: bool = False) -> None:
    """The seed's Pooler (without the HA patch's anti-affinity)."""
    bouncer: dict[str, Any] = {"poolMode": "transaction", **({"paused": True} if paused else {})}
    spec = {"cluster": {"name": "main-db"}, "instances": 2, "type": "rw", "pgbouncer": bouncer}
    store.replace(
        "poolers", [{"metadata": {"namespace": "postgres", "name": "main-db-pooler"}, "spec": spec}]
    )


# What each source writes, by source name (Kubernetes: every kind of the store).
EXTRAS = {"hetzner": "hetzner", "postgres": "replication", "borg": "backups", "http": "probes", "dns": "dns"}
SOURCES = ("kubernetes", *EXTRAS)


def knock_out(s: ClusterStore, source: str, why: str = "unreachable") -> None:
    """``source`` as one that never answered: its data gone, its status unreachable."""
    if source == "kubernetes":
        for kind in list(s.objects):
            del s.objects[kind]
            s.sources.pop(f"kube:{kind}", None)
        s.extra.pop("weak_db_credentials", None)
    else:
        s.extra.pop(EXTRAS[source], None)
    s.sources.pop(source, None)
    s.set_source(source, SourceState.UNREACHABLE, why)
