"""``opsconsole watch --export-manifests DIR``: the watcher as a workload of the cluster it watches.

Written from the config, so the RBAC names exactly what this config makes the watcher read:

* ``Namespace`` ``opsconsole``, ``ServiceAccount`` ``opsconsole-watch``;
* a ``ClusterRole`` of get/list/watch on every kind the live view watches (``console/sources/kube.py:
  WATCHED``: the one list, so a kind added there is granted here), and get/list on ``metrics.k8s.io``'s
  nodes and pods (the usage the metrics source reads) — nothing it may change;
* a ``Role`` in the lock's namespace: its Lease (``watch.lease_name``) and the cluster lock (scheduled
  actions hold it), the SLO ledger's ConfigMap — ``create`` for both kinds (RBAC cannot limit a create by
  name), ``get``/``update`` by name only;
* a ``Role`` in the database's namespace: ``get`` on the two database Secrets the findings and the
  PostgreSQL source read, by name;
* the config as a ``ConfigMap`` (its secrets already references: they become ``secretKeyRef``\\ s of one
  Secret, ``opsconsole-watch``, whose keys ``SECRETS.txt`` lists — the values are never written here);
* a ``Deployment`` of one replica (the Lease lets a second one stand by), its state in an ``emptyDir``
  (kept across container restarts; a pod moved to another node starts with an empty journal and may say
  an open alert once more), ``/healthz`` as its liveness probe; a ``Service`` for ``/metrics``.

A scheduled drill changes the cluster and needs the operator's rights, which this RBAC does not give: it
is refused (403) and said as a finding.  Grant them knowingly, or run drills from the console.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from console.config import Config
from console.slo_ledger import NAME as SLO_CONFIGMAP
from console.sources.kube import IN_CLUSTER, WATCHED

NAMESPACE = "opsconsole"
NAME = "opsconsole-watch"
PORT = 9469
STATE = "/var/lib/opsconsole"
SSH_DIR = "/etc/opsconsole/ssh"
RBAC = "rbac.authorization.k8s.io"
_ENV_REF = re.compile(r"\{env:([^}]+)\}")


def in_cluster_config(config: Config) -> tuple[dict[str, Any], list[str]]:
    """The config as the pod reads it, and the environment variables (Secret keys) it references."""
    raw = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw.pop("lab", None)
    env: list[str] = []
    raw["kubernetes"] = {"kubeconfig": IN_CLUSTER}
    hz = raw["hetzner"]
    hz.pop("token_file", None)
    hz["token_env"] = config.hetzner.token_env or "HCLOUD_TOKEN"
    env.append(hz["token_env"])
    b = raw["backups"]
    b.pop("passcommand", None)
    b["passphrase_env"] = config.backups.passphrase_env or "BORG_PASSPHRASE"
    env.append(b["passphrase_env"])
    raw["ssh"] = {**raw.get("ssh", {}), "config": f"{SSH_DIR}/config"}
    w = raw["watch"]
    w["listen"] = f"0.0.0.0:{PORT}"
    targets = []
    for i, t in enumerate(config.watch.notify):
        entry: dict[str, Any] = {"name": t.label}
        if t.url is not None and "{file:" not in t.url:
            entry["url"] = t.url
            env += _ENV_REF.findall(t.url)
        else:  # a file on this machine, or a whole URL in the environment: a Secret key in the pod
            entry["url_env"] = t.url_env or f"OPSCONSOLE_NOTIFY_{i}"
            env.append(entry["url_env"])
        targets.append(entry)
    w["notify"] = targets
    return raw, list(dict.fromkeys(env))


def _rbac(config: Config) -> list[dict[str, Any]]:
    by_group: dict[str, list[str]] = {}
    for w in WATCHED:
        by_group.setdefault(w.group, []).append(w.plural)
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]
    lock_ns, db = config.drill.lock_namespace, config.database
    leases = [config.watch.lease_name, config.drill.lock_name]

    def role(namespace: str, name: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        meta = {"name": name, "namespace": namespace}
        ref = {"apiGroup": RBAC, "kind": "Role", "name": name}
        return [
            {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": meta, "rules": rules},
            {
                "apiVersion": f"{RBAC}/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": ref,
                "subjects": subject,
            },
        ]

    return [
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": NAME},
            "rules": [
                *(
                    {"apiGroups": [g], "resources": sorted(set(p)), "verbs": ["get", "list", "watch"]}
                    for g, p in sorted(by_group.items())
                ),
                # usage beside the nodes and pods (console/sources/metrics.py); metrics-server has no watch
                {"apiGroups": ["metrics.k8s.io"], "resources": ["nodes", "pods"], "verbs": ["get", "list"]},
            ],
        },
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": NAME},
            "subjects": subject,
        },
        *role(
            lock_ns,
            NAME,
            [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "resourceNames": leases,
                    "verbs": ["get", "update"],
                },
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": [SLO_CONFIGMAP],
                    "verbs": ["get", "update"],
                },
            ],
        ),
        *role(
            db.namespace,
            f"{NAME}-db",
            [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": [db.credentials_secret, db.superuser_secret],
                    "verbs": ["get"],
                }
            ],
        ),
    ]


def _deployment(image: str, env: list[str]) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": NAME}
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 30}
    container = {
        "name": "watch",
        "image": image,
        "args": ["watch", "--config", "/etc/opsconsole/config.toml"],
        "ports": [{"name": "metrics", "containerPort": PORT}],
        "env": [
            {"name": "XDG_STATE_HOME", "value": STATE},
            *({"name": e, "valueFrom": {"secretKeyRef": {"name": NAME, "key": e}}} for e in env),
        ],
        "livenessProbe": {**probe, "initialDelaySeconds": 60, "failureThreshold": 3},
        "readinessProbe": {**probe, "initialDelaySeconds": 5},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "384Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/opsconsole/config.toml", "subPath": "config.toml"},
            {"name": "ssh", "mountPath": SSH_DIR, "readOnly": True},
            {"name": "state", "mountPath": STATE},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": NAME}},
                        {
                            "name": "ssh",
                            "secret": {
                                "secretName": NAME,
                                "defaultMode": 0o400,
                                "items": [
                                    {"key": "ssh-config", "path": "config"},
                                    {"key": "ssh-key", "path": "id_ed25519"},
                                    {"key": "ssh-known-hosts", "path": "known_hosts"},
                                ],
                            },
                        },
                        {"name": "state", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def manifests(config: Config, image: str) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """File name -> documents, and the Secret's keys."""
    import tomli_w

    raw, env = in_cluster_config(config)
    labels = {"app.kubernetes.io/name": NAME}
    files = {
        "00-namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}],
        "10-serviceaccount.yaml": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": NAMESPACE}}
        ],
        "20-rbac.yaml": _rbac(config),
        "30-configmap.yaml": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
                "data": {"config.toml": tomli_w.dumps(raw)},
            }
        ],
        "40-deployment.yaml": [_deployment(image, env)],
        "50-service.yaml": [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
                "spec": {
                    "selector": labels,
                    "ports": [{"name": "metrics", "port": PORT, "targetPort": "metrics"}],
                },
            }
        ],
    }
    return files, [*env, "ssh-config", "ssh-key", "ssh-known-hosts"]


def export(config: Config, directory: Path, image: str) -> list[Path]:
    """Write the manifests and ``SECRETS.txt`` into ``directory``; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    files, keys = manifests(config, image)
    written = []
    for name, docs in files.items():
        path = directory / name
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        written.append(path)
    notes = directory / "SECRETS.txt"
    literal = " \\\n  ".join(
        f"--from-literal={k}=…" if not k.startswith("ssh-") else f"--from-file={k}=…" for k in keys
    )
    notes.write_text(
        f"The watcher reads its secrets from the Secret {NAMESPACE}/{NAME}; create it before applying:\n\n"
        f"kubectl -n {NAMESPACE} create secret generic {NAME} \\\n  {literal}\n\n"
        f"ssh-config must name IdentityFile {SSH_DIR}/id_ed25519 and "
        f"UserKnownHostsFile {SSH_DIR}/known_hosts.\n"
    )
    return [*written, notes]
