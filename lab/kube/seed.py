"""The seed's cluster as Kubernetes objects: nodes, namespaces, workloads, RBAC, CRDs.

Only top-level objects are seeded (Deployments, DaemonSets, CronJobs …); the lab's controllers create
ReplicaSets and Pods from them and schedule them, so ownership, spread and status are the controllers'
own work — exactly what a drill later disturbs.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import yaml

from console.config import Config
from lab.kube.resources import Registry
from lab.kube.store import Store

K3S_VERSION = "v1.34.4+k3s1"
SEED_TS = "2025-11-03T09:00:00Z"

DOCFAST_IMAGE = "git.cloonar.com/openclawd/docfast"
PROD_TAG = "v1.4.2"
STAGING_TAG = "main-5729719"  # main's head in the lab forge's fixed history (lab/forge.py)


def specs_dir() -> Path:
    from lab.hetzner.schema import spec_path

    return spec_path().parent


def _meta(
    name: str,
    namespace: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "creationTimestamp": SEED_TS}
    if namespace:
        m["namespace"] = namespace
    if labels:
        m["labels"] = labels
    if annotations:
        m["annotations"] = annotations
    return m


def node_object(
    name: str,
    role: str,
    private_ip: str,
    public_ip: str,
    index: int,
    taints: list[str],
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Node as K3s registers it; ``args`` (``[role, flags…]``) and ``env`` (``K3S_*``, the token
    ``********``) are what K3s records in ``k3s.io/node-args`` / ``k3s.io/node-env``."""
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "arm64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "arm64",
        "node.kubernetes.io/instance-type": "k3s",
    }
    if role == "server":
        labels.update(
            {
                "node-role.kubernetes.io/control-plane": "true",
                "node-role.kubernetes.io/master": "true",
                "node-role.kubernetes.io/etcd": "true",
            }
        )
    spec_taints = []
    for t in taints:
        key, _, effect = t.partition(":")
        k, _, v = key.partition("=")
        spec_taints.append({"key": k, "effect": effect, **({"value": v} if v else {})})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _meta(
            name,
            labels=labels,
            annotations={
                "k3s.io/node-args": json.dumps(args or ["server" if role == "server" else "agent"]),
                "k3s.io/node-env": json.dumps(env or {}),
                "flannel.alpha.coreos.com/public-ip": private_ip,
            },
        ),
        "spec": {
            "podCIDR": f"10.42.{index}.0/24",
            "podCIDRs": [f"10.42.{index}.0/24"],
            "providerID": f"k3s://{name}",
            **({"taints": spec_taints} if spec_taints else {}),
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": private_ip},
                {"type": "ExternalIP", "address": public_ip},
                {"type": "Hostname", "address": name},
            ],
            "capacity": {"cpu": "2", "memory": "3908848Ki", "pods": "110", "ephemeral-storage": "39396672Ki"},
            "allocatable": {
                "cpu": "2",
                "memory": "3908848Ki",
                "pods": "110",
                "ephemeral-storage": "38324134158",
            },
            "nodeInfo": {
                "architecture": "arm64",
                "bootID": str(uuid.uuid4()),  # the kubelet reports a new one after each boot
                "containerRuntimeVersion": "containerd://2.1.5-k3s1",
                "kernelVersion": "6.8.0-90-generic",
                "kubeProxyVersion": K3S_VERSION,
                "kubeletVersion": K3S_VERSION,
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04.3 LTS",
                "systemUUID": "",
            },
            "conditions": [],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        },
    }


def _pod_template(labels: dict[str, str], containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {
            "containers": containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            **spec,
        },
    }


def _deployment(
    name: str,
    namespace: str,
    replicas: int,
    labels: dict[str, str],
    containers: list[dict[str, Any]],
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "revisionHistoryLimit": 10,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "progressDeadlineSeconds": 600,
            "template": _pod_template(labels, containers, **spec),
        },
    }


def _anti_affinity(kind: str, labels: dict[str, str], key: str = "kubernetes.io/hostname") -> dict[str, Any]:
    term = {"labelSelector": {"matchLabels": labels}, "topologyKey": key}
    if kind == "required":
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]
        }
    }


CONTROL_PLANE_TOLERATIONS = [
    {"key": "CriticalAddonsOnly", "operator": "Exists"},
    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"},
]


def coredns(replicas: int = 3, ha: bool = True) -> dict[str, Any]:
    """K3s's packaged CoreDNS; ``ha=False`` is the stock manifest (1 replica, no anti-affinity)."""
    labels = {"k8s-app": "kube-dns"}
    container = {
        "name": "coredns",
        "image": "rancher/mirrored-coredns-coredns:1.12.3",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"containerPort": 53, "name": "dns", "protocol": "UDP"},
            {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
            {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": 8181},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "70Mi"}, "limits": {"memory": "170Mi"}},
    }
    spec: dict[str, Any] = {
        "tolerations": CONTROL_PLANE_TOLERATIONS,
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
    }
    if ha:
        spec["affinity"] = _anti_affinity("preferred", labels)
    d = _deployment("coredns", "kube-system", replicas if ha else 1, labels, [container], **spec)
    d["metadata"]["labels"] = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
    return d


def packaged_services() -> list[dict[str, Any]]:
    """What K3s's packaged manifests add beside their Deployments: the kube-dns and metrics-server
    Services and the APIService that registers metrics-server as ``metrics.k8s.io`` (K3s's
    manifests/coredns.yaml and manifests/metrics-server/*.yaml)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(
                "kube-dns",
                "kube-system",
                {
                    "k8s-app": "kube-dns",
                    "kubernetes.io/cluster-service": "true",
                    "kubernetes.io/name": "CoreDNS",
                },
                annotations={"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
            ),
            "spec": {
                "selector": {"k8s-app": "kube-dns"},
                "clusterIP": "10.43.0.10",
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                    {"name": "metrics", "port": 9153, "protocol": "TCP"},
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(
                "metrics-server",
                "kube-system",
                {"kubernetes.io/cluster-service": "true", "kubernetes.io/name": "Metrics-server"},
            ),
            "spec": {
                "selector": {"k8s-app": "metrics-server"},
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}],
            },
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": _meta("v1beta1.metrics.k8s.io"),
            "spec": {
                "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]


def cnpg_operator(replicas: int = 2, ha: bool = True) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "cloudnative-pg"}
    container = {
        "name": "manager",
        "image": "ghcr.io/cloudnative-pg/cloudnative-pg:1.25.1",
        "args": ["controller", "--leader-elect"],
        "ports": [
            {"containerPort": 8080, "name": "metrics"},
            {"containerPort": 9443, "name": "webhook-server"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9443, "scheme": "HTTPS"}},
    }
    spec: dict[str, Any] = {"serviceAccountName": "cnpg-manager"}
    if ha:
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": labels},
            }
        ]
    return _deployment(
        "cnpg-controller-manager", "cnpg-system", replicas if ha else 1, labels, [container], **spec
    )


def docfast(namespace: str, replicas: int, tag: str, tuned: bool) -> dict[str, Any]:
    labels = {"app": "docfast"}
    container: dict[str, Any] = {
        "name": "docfast",
        "image": f"{DOCFAST_IMAGE}:{tag}",
        "ports": [{"containerPort": 3000, "name": "http", "protocol": "TCP"}],
        "env": [
            {"name": "NODE_ENV", "value": "production" if namespace == "docfast" else "staging"},
            {"name": "DATABASE_HOST", "value": "main-db-pooler.postgres.svc"},
            {"name": "DATABASE_NAME", "value": "docfast" if namespace == "docfast" else "docfast_staging"},
            {
                "name": "DATABASE_USER",
                "valueFrom": {"secretKeyRef": {"name": "docfast-db-credentials", "key": "username"}},
            },
            {
                "name": "DATABASE_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "docfast-db-credentials", "key": "password"}},
            },
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1000m", "memory": "1Gi"},
        },
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": 3000},
            "periodSeconds": 5 if tuned else 10,
            "failureThreshold": 2 if tuned else 3,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": 3000},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
    }
    spec: dict[str, Any] = {"imagePullSecrets": [{"name": "forgejo-registry"}]}
    if tuned:
        spec["affinity"] = _anti_affinity("preferred", labels)
        spec["tolerations"] = [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 10,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 10,
            },
        ]
    return _deployment("docfast", namespace, replicas, labels, [container], **spec)


def pooler_deployment(config: Config) -> dict[str, Any]:
    """The Deployment CNPG's Pooler controller runs PgBouncer in (the twin creates it from the Pooler)."""
    db = config.database
    labels = {"cnpg.io/poolerName": db.pooler}
    return _deployment(
        db.pooler,
        db.namespace,
        db.pooler_instances,
        labels,
        [
            {
                "name": "pgbouncer",
                "image": "ghcr.io/cloudnative-pg/pgbouncer:1.24.0",
                "ports": [{"containerPort": 5432, "name": "pgbouncer"}],
                "readinessProbe": {"tcpSocket": {"port": 5432}, "periodSeconds": 10},
            }
        ],
        affinity=_anti_affinity("required", labels),
    )


def workloads(config: Config) -> list[dict[str, Any]]:
    ns = config.namespaces
    db = config.database
    traefik_labels = {
        "app.kubernetes.io/name": "traefik",
        "app.kubernetes.io/instance": "traefik-kube-system",
    }
    objs: list[dict[str, Any]] = [
        coredns(),
        _deployment(
            "local-path-provisioner",
            ns.system,
            1,
            {"app": "local-path-provisioner"},
            [{"name": "local-path-provisioner", "image": "rancher/local-path-provisioner:v0.0.32"}],
            tolerations=CONTROL_PLANE_TOLERATIONS,
        ),
        _deployment(
            "metrics-server",
            ns.system,
            1,
            {"k8s-app": "metrics-server"},
            [{"name": "metrics-server", "image": "rancher/mirrored-metrics-server:v0.8.0"}],
            tolerations=CONTROL_PLANE_TOLERATIONS,
        ),
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _meta("traefik", ns.system, traefik_labels),
            "spec": {
                "selector": {"matchLabels": traefik_labels},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": _pod_template(
                    traefik_labels,
                    [
                        {
                            "name": "traefik",
                            "image": "rancher/mirrored-library-traefik:3.5.1",
                            "ports": [
                                {"containerPort": 8000, "name": "web"},
                                {"containerPort": 8443, "name": "websecure"},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/ping", "port": 8080},
                                "periodSeconds": 10,
                            },
                        }
                    ],
                ),
            },
        },
        cnpg_operator(),
        _deployment(
            "cert-manager",
            ns.cert_manager,
            1,
            {"app.kubernetes.io/name": "cert-manager"},
            [
                {
                    "name": "cert-manager-controller",
                    "image": "quay.io/jetstack/cert-manager-controller:v1.17.2",
                }
            ],
        ),
        _deployment(  # its manifest (v0.16): on the control plane; its work is emulated (lab/suc.py)
            "system-upgrade-controller",
            "system-upgrade",
            1,
            {"upgrade.cattle.io/controller": "system-upgrade-controller"},
            [{"name": "system-upgrade-controller", "image": "rancher/system-upgrade-controller:v0.16.3"}],
            serviceAccountName="system-upgrade",
            tolerations=CONTROL_PLANE_TOLERATIONS,
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "node-role.kubernetes.io/control-plane",
                                        "operator": "In",
                                        "values": ["true"],
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
        ),
        _deployment(
            "cert-manager-cainjector",
            ns.cert_manager,
            1,
            {"app.kubernetes.io/name": "cainjector"},
            [
                {
                    "name": "cert-manager-cainjector",
                    "image": "quay.io/jetstack/cert-manager-cainjector:v1.17.2",
                }
            ],
        ),
        _deployment(
            "cert-manager-webhook",
            ns.cert_manager,
            1,
            {"app.kubernetes.io/name": "webhook"},
            [{"name": "cert-manager-webhook", "image": "quay.io/jetstack/cert-manager-webhook:v1.17.2"}],
        ),
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": _meta("main-db-backup", db.namespace, {"app": "db-backup"}),
            "spec": {
                "schedule": "0 */6 * * *",
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 1,
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 1,
                        "template": {
                            "metadata": {"labels": {"app": "db-backup"}},
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [
                                    {
                                        "name": "pg-dump",
                                        "image": "ghcr.io/cloudnative-pg/postgresql:17.4",
                                        "command": ["/bin/sh", "-c", "pg_dump -Fc docfast | borg create ..."],
                                    }
                                ],
                            },
                        },
                    }
                },
            },
        },
        docfast(ns.prod, 2, PROD_TAG, tuned=True),
        docfast(ns.staging, 1, STAGING_TAG, tuned=False),
    ]
    for namespace, host in ((ns.prod, "docfast.dev"), (ns.staging, "staging.docfast.dev")):
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta("docfast", namespace, {"app": "docfast"}),
                "spec": {
                    "selector": {"app": "docfast"},
                    "type": "ClusterIP",
                    "ports": [{"name": "http", "port": 80, "targetPort": 3000, "protocol": "TCP"}],
                },
            }
        )
        objs.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": _meta(
                    "docfast", namespace, annotations={"cert-manager.io/cluster-issuer": "letsencrypt-prod"}
                ),
                "spec": {
                    "ingressClassName": "traefik",
                    "tls": [{"hosts": [host], "secretName": f"{host}-tls"}],
                    "rules": [
                        {
                            "host": host,
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Prefix",
                                        "backend": {"service": {"name": "docfast", "port": {"number": 80}}},
                                    }
                                ]
                            },
                        }
                    ],
                },
            }
        )
        dockercfg = base64.b64encode(
            json.dumps({"auths": {"git.cloonar.com": {"auth": "bGFiOmxhYg=="}}}).encode()
        ).decode()
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _meta("forgejo-registry", namespace),
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": dockercfg},
            }
        )
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _meta("docfast-db-credentials", namespace),
                "type": "kubernetes.io/basic-auth",
                "data": {
                    "username": base64.b64encode(b"docfast").decode(),
                    "password": base64.b64encode(b"docfast").decode(),
                },
            }
        )
        role_rules = [
            {
                "apiGroups": ["apps"],
                "resources": ["deployments", "deployments/scale", "replicasets"],
                "verbs": ["get", "list", "watch", "create", "update", "patch"],
            },
            {
                "apiGroups": [""],
                "resources": ["pods", "pods/log", "services", "configmaps", "events"],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": ["networking.k8s.io"],
                "resources": ["ingresses"],
                "verbs": ["get", "list", "watch"],
            },
        ]
        objs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": _meta("deployer", namespace),
                "rules": role_rules,
            }
        )
        objs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": _meta("deployer", namespace),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
                "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns.prod}],
            }
        )
    objs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("deployer", ns.prod)})
    objs.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta("docfast-db-credentials", db.namespace),
            "type": "kubernetes.io/basic-auth",
            "data": {
                "username": base64.b64encode(b"docfast").decode(),
                "password": base64.b64encode(b"docfast").decode(),
            },
        }
    )
    return objs


def crds() -> list[dict[str, Any]]:
    out = [yaml.safe_load(p.read_text()) for p in sorted((specs_dir() / "cnpg-1.25.1").glob("*.yaml"))]
    # cert-manager's (served in every scenario, see lab/README.md), and K3s's own helm-controller kinds,
    # which every K3s cluster has (HelmChartConfig carries the packaged Traefik's settings).
    for group, kind, plural, scope, short in (
        ("cert-manager.io", "Certificate", "certificates", "Namespaced", ["cert", "certs"]),
        ("cert-manager.io", "ClusterIssuer", "clusterissuers", "Cluster", ["ciss"]),
        ("helm.cattle.io", "HelmChart", "helmcharts", "Namespaced", []),
        ("helm.cattle.io", "HelmChartConfig", "helmchartconfigs", "Namespaced", []),
    ):
        out.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.{group}"},
                "spec": {
                    "group": group,
                    "scope": scope,
                    "names": {
                        "kind": kind,
                        "listKind": f"{kind}List",
                        "plural": plural,
                        "singular": kind.lower(),
                        "shortNames": short,
                        "categories": ["cert-manager"] if group == "cert-manager.io" else [],
                    },
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "subresources": {"status": {}},
                            "additionalPrinterColumns": [
                                {
                                    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                                    "name": "Ready",
                                    "type": "string",
                                },
                                {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"},
                            ],
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "description": f"{group} {kind} (lab: spec and status "
                                    "kept open; see lab/README.md)",
                                    "properties": {
                                        "spec": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True,
                                        },
                                        "status": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True,
                                        },
                                    },
                                }
                            },
                        }
                    ],
                },
            }
        )
    out.append(plan_crd())
    return out


def plan_crd() -> dict[str, Any]:
    """system-upgrade-controller's Plan CRD (``upgrade.cattle.io/v1``), the spec's shape from its
    ``pkg/apis/upgrade.cattle.io/v1/types.go``: ``upgrade`` (with ``image``) required, the rest typed."""
    container = {
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": {"type": "string"},
            "command": {"type": "array", "items": {"type": "string"}},
            "args": {"type": "array", "items": {"type": "string"}},
            "envs": {
                "type": "array",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
    }
    selector = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    spec = {
        "type": "object",
        "required": ["upgrade"],
        "properties": {
            "concurrency": {"type": "integer", "format": "int64"},
            "jobActiveDeadlineSecs": {"type": "integer", "format": "int64"},
            "nodeSelector": selector,
            "serviceAccountName": {"type": "string"},
            "channel": {"type": "string"},
            "version": {"type": "string"},
            "exclusive": {"type": "boolean"},
            "tolerations": {"type": "array", "items": selector},
            "prepare": container,
            "upgrade": container,
            "cordon": {"type": "boolean"},
            "drain": {
                "type": "object",
                "properties": {
                    "timeout": {"x-kubernetes-int-or-string": True},
                    "gracePeriod": {"type": "integer", "format": "int32"},
                    "deleteLocalData": {"type": "boolean"},
                    "deleteEmptydirData": {"type": "boolean"},
                    "ignoreDaemonSets": {"type": "boolean"},
                    "force": {"type": "boolean"},
                    "disableEviction": {"type": "boolean"},
                    "skipWaitForDeleteTimeout": {"type": "integer"},
                    "podSelector": selector,
                },
            },
            "postCompleteDelay": {"type": "string"},
            "priorityClassName": {"type": "string"},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "plans.upgrade.cattle.io"},
        "spec": {
            "group": "upgrade.cattle.io",
            "scope": "Namespaced",
            "names": {"kind": "Plan", "listKind": "PlanList", "plural": "plans", "singular": "plan"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"jsonPath": ".spec.upgrade.image", "name": "Image", "type": "string"},
                        {"jsonPath": ".spec.version", "name": "Version", "type": "string"},
                        {
                            "jsonPath": ".status.conditions[?(@.type=='Complete')].status",
                            "name": "Complete",
                            "type": "string",
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": spec,
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


def certificates(store: Store, registry: Registry, config: Config, expiring: bool) -> None:
    """Let's Encrypt certificates for both hosts (90 days, renewed at 2/3); ``expiring``: staging's renewal
    has been failing and it expires in 3 days."""
    from datetime import UTC, datetime, timedelta

    res = registry.get("cert-manager.io", "v1", "certificates")
    assert res is not None
    now = datetime.now(UTC)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    for namespace, host, issued_days_ago in (
        (config.namespaces.prod, "docfast.dev", 30),
        (config.namespaces.staging, "staging.docfast.dev", 45),
    ):
        not_before = now - timedelta(days=issued_days_ago)
        not_after = not_before + timedelta(days=90)
        renewal = not_before + timedelta(days=60)
        conditions = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Ready",
                "message": "Certificate is up to date and has not expired",
                "lastTransitionTime": not_before.strftime(fmt),
                "observedGeneration": 1,
            }
        ]
        if expiring and host.startswith("staging"):
            not_before = now - timedelta(days=87)
            not_after = now + timedelta(days=3)
            renewal = now - timedelta(days=27)
            conditions.append(
                {
                    "type": "Issuing",
                    "status": "True",
                    "reason": "Failed",
                    "message": "The certificate request has failed to complete and will be retried: "
                    "acme: error: 403 urn:ietf:params:acme:error:unauthorized",
                    "lastTransitionTime": renewal.strftime(fmt),
                    "observedGeneration": 1,
                }
            )
        store.create(
            res,
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Certificate",
                "metadata": _meta(f"{host}-tls", namespace),
                "spec": {
                    "secretName": f"{host}-tls",
                    "dnsNames": [host],
                    "issuerRef": {"name": "letsencrypt-prod", "kind": "ClusterIssuer"},
                },
                "status": {
                    "notBefore": not_before.strftime(fmt),
                    "notAfter": not_after.strftime(fmt),
                    "renewalTime": renewal.strftime(fmt),
                    "revision": 3,
                    "conditions": conditions,
                },
            },
        )


def seed_kubernetes(
    store: Store,
    registry: Registry,
    config: Config,
    scenario: str = "seed",
    server_flags: list[str] | None = None,
) -> None:
    """The seed's objects; ``server_flags``: the server's extra K3s flags (``lab up --kube-…-arg``), on its
    Node's ``k3s.io/node-args`` as K3s records its command line."""
    ns_res = registry.get("", "v1", "namespaces")
    assert ns_res is not None
    for crd in crds():
        crd["metadata"]["creationTimestamp"] = SEED_TS
        crd["status"] = {
            "conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}],
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": ["v1"],
        }
        res = registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert res is not None
        store.create(res, crd)
    if scenario == "empty":
        return
    names = [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        config.namespaces.database,
        config.namespaces.prod,
        config.namespaces.staging,
        config.namespaces.cnpg_operator,
        config.namespaces.cert_manager,
        "system-upgrade",  # system-upgrade-controller's (its controller is emulated: lab/suc.py)
    ]
    for name in dict.fromkeys(names):
        store.create(
            ns_res,
            {
                "metadata": _meta(name, labels={"kubernetes.io/metadata.name": name}),
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            },
        )
    node_res = registry.get("", "v1", "nodes")
    assert node_res is not None
    from console.k3s import REDACTED, install_args

    server = next(n for n in config.nodes if n.role == "server")
    for i, node in enumerate(config.nodes):
        # Installed as this project installs nodes (console/k3s.py), which K3s wrote on the Node.
        env = (
            {}
            if node.role == "server"
            else {"K3S_TOKEN": REDACTED, "K3S_URL": f"https://{server.private_ipv4}:6443"}
        )
        args = install_args(config, node) + (server_flags or [] if node.role == "server" else [])
        obj = node_object(
            node.name, node.role, node.private_ipv4, node.public_ipv4, i, node.taints, args, env,
        )  # fmt: skip
        store.create(node_res, obj)
    for obj in [*workloads(config), *packaged_services()]:
        res = registry.by_kind(obj["apiVersion"], obj["kind"])
        assert res is not None, obj["kind"]
        store.create(res, obj)
    certificates(store, registry, config, expiring=scenario == "cert-expiring")
    issuer = registry.get("cert-manager.io", "v1", "clusterissuers")
    assert issuer is not None
    store.create(issuer, cluster_issuer())
    helm = registry.get("helm.cattle.io", "v1", "helmchartconfigs")
    assert helm is not None
    store.create(helm, traefik_config())
    sa = registry.get("", "v1", "serviceaccounts")
    assert sa is not None
    store.create(
        sa,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("system-upgrade", "system-upgrade")},
    )


def traefik_config() -> dict[str, Any]:
    """The seed's Traefik settings: K3s's packaged Traefik chart as a DaemonSet (on every worker; the
    control plane's taint keeps it off k3s-mgr).  The lab has no helm-controller: its packaged Traefik is a
    DaemonSet from the start, and this object is stored, not rendered."""
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChartConfig",
        "metadata": _meta("traefik", "kube-system"),
        "spec": {"valuesContent": "deployment:\n  kind: DaemonSet\n"},
    }


def cluster_issuer() -> dict[str, Any]:
    """The seed's Let's Encrypt ClusterIssuer (HTTP-01 through Traefik), registered (status Ready)."""
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": _meta("letsencrypt-prod"),
        "spec": {
            "acme": {
                "server": "https://acme-v02.api.letsencrypt.org/directory",
                "email": "ops@docfast.dev",
                "privateKeySecretRef": {"name": "letsencrypt-prod"},
                "solvers": [{"http01": {"ingress": {"ingressClassName": "traefik"}}}],
            }
        },
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "ACMEAccountRegistered"}]},
    }
