"""The opt-in HA policies from the seed's "Future Improvements": objects the console creates and owns whole.

Unlike the runtime patches (:mod:`console.ha_patch`, a few fields of someone else's object), a
PodDisruptionBudget or a NetworkPolicy here is entirely ours: its ``spec`` is compared, written (a PUT of the
whole spec on the resourceVersion it was read at, or a POST when missing) and exported as-is.  Each carries
the ``app.kubernetes.io/managed-by: opsconsole`` label so an operator can tell where it came from.

The NetworkPolicies express "only DocFast -> PgBouncer, not direct to DB" with the names already in the
config (database namespace, cluster, pooler, application namespaces, the CNPG operator's namespace):

* ``<name>-db`` — the database's instance pods accept PostgreSQL (5432) and the instance manager's status
  port (8000) only from their own namespace (the other instance, the pooler, the backup job), from the CNPG
  operator's namespace, and from ``allow_cidrs`` (the nodes' network: the console's SSH tunnel).
* ``<name>-pooler`` — the pooler accepts 5432 from the application namespaces, its own namespace and
  ``allow_cidrs``.

Both are ``Ingress`` policies only: egress stays open (DNS, the Storage Box), which is what the seed asks.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import yaml

from console.config import Config, HaBudget

MANAGED = {"app.kubernetes.io/managed-by": "opsconsole"}


@dataclass(frozen=True)
class OwnedObject:
    """A whole object of the desired HA state (a PodDisruptionBudget or a NetworkPolicy)."""

    name: str  # the config item's name (what the dashboard and the reports call it)
    description: str
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def namespace(self) -> str:
        return str(self.manifest["metadata"]["namespace"])

    @property
    def object(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def plural(self) -> str:
        return "poddisruptionbudgets" if self.kind == "PodDisruptionBudget" else "networkpolicies"

    @property
    def collection(self) -> str:
        group = "policy/v1" if self.kind == "PodDisruptionBudget" else "networking.k8s.io/v1"
        return f"/apis/{group}/namespaces/{self.namespace}/{self.plural}"

    @property
    def path(self) -> str:
        return f"{self.collection}/{self.object}"


def budget(b: HaBudget) -> OwnedObject:
    return OwnedObject(
        b.name,
        b.description or f"PodDisruptionBudget: at least {b.min_available} of {b.namespace}/{b.object} up",
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": b.object, "namespace": b.namespace, "labels": dict(MANAGED)},
            "spec": {"minAvailable": b.min_available, "selector": {"matchLabels": dict(b.match_labels)}},
        },
    )


def _from_namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def network_policies(config: Config) -> list[OwnedObject]:
    np, db, ns = config.ha.network_policy, config.database, config.namespaces
    cidrs = [{"ipBlock": {"cidr": c}} for c in np.allow_cidrs]

    def policy(suffix: str, selector: dict[str, str], ingress: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"{np.name}-{suffix}", "namespace": db.namespace, "labels": dict(MANAGED)},
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress"],
                "ingress": ingress,
            },
        }

    instances = {"cnpg.io/cluster": db.cluster, "cnpg.io/podRole": "instance"}
    to_db = policy(
        "db",
        instances,
        [
            {
                "from": [{"podSelector": {}}, _from_namespace(ns.cnpg_operator), *cidrs],
                "ports": _tcp(db.port, 8000),
            },
        ],
    )
    to_pooler = policy(
        "pooler",
        {"cnpg.io/poolerName": db.pooler},
        [
            {
                "from": [_from_namespace(ns.prod), _from_namespace(ns.staging), {"podSelector": {}}, *cidrs],
                "ports": _tcp(5432),
            }
        ],
    )
    what = np.description
    return [
        OwnedObject(f"{np.name}-db", f"{what}: PostgreSQL only from its namespace and the operator", to_db),
        OwnedObject(f"{np.name}-pooler", f"{what}: PgBouncer from the app namespaces", to_pooler),
    ]


def owned_objects(config: Config) -> list[OwnedObject]:
    """The enabled opt-in objects, budgets first."""
    out = [budget(b) for b in config.ha.budgets if b.enabled]
    if config.ha.network_policy.enabled:
        out += network_policies(config)
    return out


def opted_out(config: Config) -> list[str]:
    """The opt-in items that are switched off (named in reports so nobody thinks they were checked)."""
    out = [p.name for p in config.ha.patches if not p.enabled]
    out += [b.name for b in config.ha.budgets if not b.enabled]
    if not config.ha.network_policy.enabled:
        out.append(config.ha.network_policy.name)
    return out


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj.get("spec") or {}
    return spec


def drift(item: OwnedObject, obj: dict[str, Any] | None) -> list[str]:
    """What differs between the live object and the wanted one (empty: it holds)."""
    if obj is None:
        return [f"{item.kind} {item.namespace}/{item.object} missing"]
    want, have = _spec(item.manifest), _spec(obj)
    out = []
    for key in sorted(set(want) | set(have)):
        if want.get(key) != have.get(key):
            out.append(f"{key} differs" if key in have else f"no {key}")
    return out


def diff(item: OwnedObject, obj: dict[str, Any] | None) -> str:
    """A unified YAML diff of the spec, live against desired ('' when they match)."""
    live = yaml.safe_dump(_spec(obj), sort_keys=True) if obj is not None else ""
    want = yaml.safe_dump(_spec(item.manifest), sort_keys=True)
    if live == want:
        return ""
    name = f"{item.kind.lower()}/{item.namespace}/{item.object}"
    return "".join(
        difflib.unified_diff(
            live.splitlines(True),
            want.splitlines(True),
            f"live {name}" if obj else "(missing)",
            f"desired {name}",
        )
    )


def health(item: OwnedObject, obj: dict[str, Any], pods: list[dict[str, Any]]) -> str | None:
    """None when the live object does its job; else why not.

    A budget is healthy once its controller observed this generation, it covers at least one pod and
    enough are healthy; a NetworkPolicy must select at least one pod (a selector that matches nothing
    protects nothing — the typo this catches)."""
    if item.kind == "PodDisruptionBudget":
        st = obj.get("status") or {}
        if int(st.get("observedGeneration", 0)) < int(obj["metadata"].get("generation", 1)):
            return "budget not yet observed by its controller"
        if int(st.get("expectedPods", 0)) < 1:
            return "budget selects no pods"
        if int(st.get("currentHealthy", 0)) < int(st.get("desiredHealthy", 0)):
            return f"{st.get('currentHealthy', 0)} healthy of {st.get('desiredHealthy', 0)} needed"
        return None
    selector = (_spec(obj).get("podSelector") or {}).get("matchLabels") or {}
    matched = [
        p
        for p in pods
        if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in selector.items())
    ]
    return None if matched else "the policy selects no pods"
