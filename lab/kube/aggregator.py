"""``apiregistration.k8s.io``: the APIServices a K3s server lists, and whether each answers.

kube-apiserver registers one *local* APIService per group-version it serves (``v1.``, ``v1.apps`` …,
label ``kube-aggregator.kubernetes.io/automanaged: onstart``, no ``spec.service``, ``Available`` with
reason ``Local``) and one per CRD group-version (``automanaged: "true"``, priority 1000/100); K3s's
packaged manifest adds ``v1beta1.metrics.k8s.io`` for metrics-server.  An APIService backed by a Service
is ``Available`` while that Service has a ready endpoint (reason ``Passed``), else not (``ServiceNotFound``
or ``MissingEndpoints``), as the aggregator's availability controller reports it; the API layer proxies
the group only while it is (lab/kube/metrics.py), and answers 503 otherwise.
"""

from __future__ import annotations

from typing import Any

from lab.kube.resources import Registry, Resource
from lab.kube.store import Store, now_iso

AUTOMANAGED = "kube-aggregator.kubernetes.io/automanaged"
# (groupPriorityMinimum, versionPriority) of the built-in group-versions (kube-apiserver's aggregator.go).
PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    ("apps", "v1"): (17800, 15),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v1"): (17500, 15),
    ("batch", "v1"): (17400, 15),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("policy", "v1"): (17100, 15),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("apiregistration.k8s.io", "v1"): (18000, 1),
}


def name_of(group: str, version: str) -> str:
    return f"{version}.{group}"


class Aggregator:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry

    def _res(self, group: str, version: str, plural: str) -> Resource:
        res = self.registry.get(group, version, plural)
        assert res is not None, plural
        return res

    @property
    def apiservices(self) -> Resource:
        return self._res("apiregistration.k8s.io", "v1", "apiservices")

    def served_locally(self) -> dict[tuple[str, str], bool]:
        """(group, version) -> whether it comes from a CRD, for every group-version the server has."""
        out: dict[tuple[str, str], bool] = {}
        for res in self.registry.by_key.values():
            key = (res.group, res.version)
            if key in PRIORITIES or res.custom:
                out[key] = out.get(key, False) or res.custom
        return out

    def reconcile(self) -> None:
        table = {o["metadata"]["name"]: o for o in self.store.list(self.apiservices)}
        wanted = self.served_locally()
        for (group, version), custom in wanted.items():
            name = name_of(group, version)
            if name not in table:
                self._register(name, group, version, custom)
        wanted_names = {name_of(g, v) for g, v in wanted}
        for name, obj in table.items():
            labels = obj["metadata"].get("labels") or {}
            if AUTOMANAGED in labels and name not in wanted_names:
                self.store.delete(self.apiservices, None, name)
            elif (obj.get("spec") or {}).get("service"):
                self._availability(obj)

    def _register(self, name: str, group: str, version: str, custom: bool) -> None:
        minimum, priority = (1000, 100) if custom else PRIORITIES.get((group, version), (1000, 100))
        spec: dict[str, Any] = {"groupPriorityMinimum": minimum, "versionPriority": priority}
        if group:
            spec["group"] = group
        spec["version"] = version
        system = self.store.find(self._res("", "v1", "namespaces"), None, "kube-system")
        born = (
            None if custom or system is None else system["metadata"].get("creationTimestamp")
        )  # with the server
        self.store.create(
            self.apiservices,
            {
                "metadata": {
                    "name": name,
                    "labels": {AUTOMANAGED: "true" if custom else "onstart"},
                    "creationTimestamp": born,
                },
                "spec": spec,
                "status": {
                    "conditions": [self._condition("True", "Local", "Local APIServices are always available")]
                },
            },
        )

    @staticmethod
    def _condition(status: str, reason: str, message: str, since: str | None = None) -> dict[str, Any]:
        return {
            "type": "Available",
            "status": status,
            "lastTransitionTime": since or now_iso(),
            "reason": reason,
            "message": message,
        }

    def registered(self, group: str, version: str) -> bool:
        return self.store.find(self.apiservices, None, name_of(group, version)) is not None

    def available(self, group: str, version: str) -> bool:
        obj = self.store.find(self.apiservices, None, name_of(group, version))
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)

    def _availability(self, obj: dict[str, Any]) -> None:
        service = obj["spec"]["service"]
        ns, name = service.get("namespace", ""), service.get("name", "")
        svc = self.store.find(self._res("", "v1", "services"), ns, name)
        eps = self.store.find(self._res("", "v1", "endpoints"), ns, name)
        if svc is None:
            want = ("False", "ServiceNotFound", f'service/{name} in "{ns}" is not present')
        elif not any(s.get("addresses") for s in (eps or {}).get("subsets") or []):
            want = ("False", "MissingEndpoints", f'endpoints for service/{name} in "{ns}" have no addresses')
        else:
            want = ("True", "Passed", "all checks passed")
        current = next(
            (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Available"), None
        )
        if current and (current["status"], current["reason"], current["message"]) == want:
            return
        since = current["lastTransitionTime"] if current and current["status"] == want[0] else None
        status = {"conditions": [self._condition(*want, since=since)]}
        self.store.update(self.apiservices, {**obj, "status": status}, subresource="status", force=True)
