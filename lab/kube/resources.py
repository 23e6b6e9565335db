"""The API resources the Kubernetes twin serves: built-in kinds and the CRDs (CNPG, cert-manager).

Each resource is served at exactly one group/version (the one the real cluster prefers), which is what
discovery advertises and what kubectl, kubernetes.aio and the console ask for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = tuple(ALL_VERBS)
    crd: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    singular_name: str | None = None  # when discovery says otherwise than the kind (metrics-server: "")

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower() if self.singular_name is None else self.singular_name

    @property
    def custom(self) -> bool:
        return self.crd is not None

    def discovery(self) -> list[dict[str, Any]]:
        """APIResource entries for /api/v1 or /apis/G/V (the resource and its subresources)."""
        out = [
            {
                "name": self.plural,
                "singularName": self.singular,
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": list(self.verbs),
                **({"shortNames": list(self.short_names)} if self.short_names else {}),
                **({"categories": list(self.categories)} if self.categories else {}),
                "storageVersionHash": "",
            }
        ]
        for sub in self.subresources:
            kind, verbs = {
                "status": (self.kind, ["get", "patch", "update"]),
                "scale": ("Scale", ["get", "patch", "update"]),
                "eviction": ("Eviction", ["create"]),
                "log": ("Pod", ["get"]),
                "exec": ("PodExecOptions", ["create", "get"]),
                "binding": ("Binding", ["create"]),
                "finalize": (self.kind, ["update"]),
            }[sub]
            group = {
                "Scale": {"group": "autoscaling", "version": "v1"},
                "Eviction": {"group": "policy", "version": "v1"},
            }.get(kind, {})
            out.append(
                {
                    "name": f"{self.plural}/{sub}",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": kind,
                    "verbs": verbs,
                    **group,
                }
            )
        return out


def _r(
    gv: str,
    kind: str,
    plural: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
    cats: tuple[str, ...] = (),
    verbs: tuple[str, ...] | None = None,
) -> Resource:
    group, _, version = gv.rpartition("/")
    return Resource(
        group,
        version,
        kind,
        plural,
        namespaced,
        short,
        cats,
        sub,
        verbs if verbs is not None else tuple(ALL_VERBS),
    )


BUILTINS: list[Resource] = [
    # namespaces serve no deletecollection: a namespace goes one at a time, through its termination
    _r(
        "v1",
        "Namespace",
        "namespaces",
        False,
        ("ns",),
        ("status", "finalize"),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    _r("v1", "Node", "nodes", False, ("no",), ("status",)),
    _r("v1", "Pod", "pods", True, ("po",), ("status", "eviction", "log", "binding", "exec"), ("all",)),
    _r("v1", "Service", "services", True, ("svc",), ("status",), ("all",)),
    _r("v1", "Endpoints", "endpoints", True, ("ep",)),
    _r("v1", "ReplicationController", "replicationcontrollers", True, ("rc",), ("status", "scale"), ("all",)),
    _r("v1", "ConfigMap", "configmaps", True, ("cm",)),
    _r("v1", "Secret", "secrets", True),
    _r("v1", "ServiceAccount", "serviceaccounts", True, ("sa",)),
    _r("v1", "Event", "events", True, ("ev",)),
    _r("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",), ("status",)),
    _r("apps/v1", "Deployment", "deployments", True, ("deploy",), ("status", "scale"), ("all",)),
    _r("apps/v1", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale"), ("all",)),
    _r("apps/v1", "DaemonSet", "daemonsets", True, ("ds",), ("status",), ("all",)),
    _r("apps/v1", "StatefulSet", "statefulsets", True, ("sts",), ("status", "scale"), ("all",)),
    _r("apps/v1", "ControllerRevision", "controllerrevisions", True),
    _r("batch/v1", "Job", "jobs", True, (), ("status",), ("all",)),
    _r("batch/v1", "CronJob", "cronjobs", True, ("cj",), ("status",), ("all",)),
    _r("coordination.k8s.io/v1", "Lease", "leases", True),
    _r("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",), ("status",)),
    _r("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", True, ("netpol",)),
    _r("networking.k8s.io/v1", "Ingress", "ingresses", True, ("ing",), ("status",)),
    _r("rbac.authorization.k8s.io/v1", "Role", "roles", True),
    _r("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True),
    _r("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
    _r("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _r(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ("crd", "crds"),
        ("status",),
    ),
    _r(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        False,
        verbs=("create",),
    ),
    _r(
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        True,
        verbs=("create",),
    ),
    _r("authentication.k8s.io/v1", "SelfSubjectReview", "selfsubjectreviews", False, verbs=("create",)),
    _r("apiregistration.k8s.io/v1", "APIService", "apiservices", False, (), ("status",), ("api-extensions",)),
    # Served through the APIService v1beta1.metrics.k8s.io, as metrics-server is (lab/kube/metrics.py).
    Resource(
        "metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", False, verbs=("get", "list"), singular_name=""
    ),
    Resource(
        "metrics.k8s.io", "v1beta1", "PodMetrics", "pods", True, verbs=("get", "list"), singular_name=""
    ),
]

METRICS_GROUP = "metrics.k8s.io"

# Kinds whose objects are computed, never stored (create returns the answer).
VIRTUAL = {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"}


def crd_resource(crd: dict[str, Any]) -> Resource:
    spec = crd["spec"]
    names = spec["names"]
    version = next(v for v in spec["versions"] if v.get("storage"))
    subs = version.get("subresources", {})
    return Resource(
        spec["group"],
        version["name"],
        names["kind"],
        names["plural"],
        spec["scope"] == "Namespaced",
        tuple(names.get("shortNames", [])),
        tuple(names.get("categories", [])),
        tuple(s for s in ("status", "scale") if s in subs),
        crd=crd,
    )


class Registry:
    """Resources by (group, version, plural), by kind, and by group for discovery."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str, str], Resource] = {}
        for res in BUILTINS:
            self.add(res)

    def add(self, res: Resource) -> None:
        self.by_key[(res.group, res.version, res.plural)] = res

    def remove(self, res: Resource) -> None:
        self.by_key.pop((res.group, res.version, res.plural), None)

    def get(self, group: str, version: str, plural: str) -> Resource | None:
        return self.by_key.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Resource | None:
        group, _, version = api_version.rpartition("/")
        for res in self.by_key.values():
            if res.group == group and res.version == version and res.kind == kind:
                return res
        return None

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for res in self.by_key.values():
            if res.group and res.version not in out.setdefault(res.group, []):
                out[res.group].append(res.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[Resource]:
        return [r for r in self.by_key.values() if r.group == group and r.version == version]
