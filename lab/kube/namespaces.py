"""Namespaces as a real control plane keeps them: created with what every namespace holds, deleted by
emptying them first.

* **Namespace controller** (kube-controller-manager, ``pkg/controller/namespace``): a deleted Namespace
  is ``Terminating`` (the store marks it; its ``kubernetes`` finalizer holds it).  5 s later (×speed;
  ``namespaceDeletionGracePeriod``) the controller deletes its pods, waits until they are gone (their
  grace periods, the kubelet's work), then every other namespaced object (background propagation, so
  owners' dependents go too); objects held by finalizers keep it waiting.  Each pass writes the five
  deletion conditions as the real controller words them; when nothing is left it removes ``kubernetes``
  from ``spec.finalizers`` (the ``finalize`` subresource) and the Namespace is gone.  Meanwhile the store
  refuses new content in it with the NamespaceLifecycle admission's 403.
* **ServiceAccounts controller**: every Active namespace has a ``default`` ServiceAccount.
* **Root CA publisher**: every Active namespace has the ``kube-root-ca.crt`` ConfigMap with the API
  server's CA (the lab's own), put back if changed or deleted.
* **The API server's own Service**: ``default/kubernetes`` (10.43.0.1:443 → the server's 6443) and its
  Endpoints, while the ``default`` namespace exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lab.kube.errors import KubeError
from lab.kube.resources import VIRTUAL, Registry, Resource
from lab.kube.store import Store, now_iso, parse_iso

DELETION_GRACE_S = 5.0  # namespaceDeletionGracePeriod: the controller's first look at a deleted namespace
FINALIZER_WAIT_S = 15.0  # finalizerEstimateSeconds: the requeue while objects with finalizers remain
ROOT_CA = "kube-root-ca.crt"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
    "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
    "distributions of Kubernetes clusters."
)

# (type, reason and message when fine) in the order the controller keeps them.
CONDITIONS = (
    ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered", "All resources successfully discovered"),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    ("NamespaceFinalizersRemaining", "ContentHasNoFinalizers", "All content-preserving finalizers finished"),
)


class Namespaces:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        ca_pem: str,
        api_endpoint: tuple[str, int],
        speed: float,
        wake_at: Callable[[float], None],
    ) -> None:
        self.store = store
        self.registry = registry
        self.ca_pem = ca_pem
        self.api_endpoint = api_endpoint
        self.speed = speed
        self.wake_at = wake_at

    def _res(self, group: str, plural: str) -> Resource:
        res = next(
            (r for r in self.registry.by_key.values() if r.group == group and r.plural == plural), None
        )
        assert res is not None, plural
        return res

    def reconcile(self) -> None:
        for ns in self.store.list(self._res("", "namespaces")):
            if ns["metadata"].get("deletionTimestamp"):
                self._delete(ns)
            elif (ns.get("status") or {}).get("phase", "Active") == "Active":
                self._populate(ns["metadata"]["name"], ns["metadata"].get("creationTimestamp"))
        self._kubernetes_service()

    # ---- what every namespace holds --------------------------------------------------------------------

    def _populate(self, namespace: str, born: str | None) -> None:
        """``born``: the namespace's creation — these are made with it (a seeded namespace's are as old)."""
        accounts = self._res("", "serviceaccounts")
        if self.store.find(accounts, namespace, "default") is None:
            meta = {"name": "default", "namespace": namespace, "creationTimestamp": born}
            self.store.create(accounts, {"metadata": meta})
        maps = self._res("", "configmaps")
        want = {
            "metadata": {
                "name": ROOT_CA,
                "namespace": namespace,
                "creationTimestamp": born,
                "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION},
            },
            "data": {"ca.crt": self.ca_pem},
        }
        current = self.store.find(maps, namespace, ROOT_CA)
        if current is None:
            self.store.create(maps, want)
        elif (
            current.get("data") != want["data"]
            or (current["metadata"].get("annotations") or {}).get("kubernetes.io/description")
            != ROOT_CA_DESCRIPTION
        ):
            fixed = {**current, "data": want["data"]}
            fixed["metadata"] = {
                **current["metadata"],
                "annotations": {
                    **(current["metadata"].get("annotations") or {}),
                    "kubernetes.io/description": ROOT_CA_DESCRIPTION,
                },
            }
            self.store.update(maps, fixed, force=True)

    def _kubernetes_service(self) -> None:
        namespaces = self._res("", "namespaces")
        default = self.store.find(namespaces, None, "default")
        if default is None or default["metadata"].get("deletionTimestamp"):
            return
        services, endpoints = self._res("", "services"), self._res("", "endpoints")
        ip, port = self.api_endpoint
        labels = {"component": "apiserver", "provider": "kubernetes"}
        if self.store.find(services, "default", "kubernetes") is None:
            self.store.create(
                services,
                {
                    "metadata": {
                        "name": "kubernetes",
                        "namespace": "default",
                        "labels": labels,
                        "creationTimestamp": default["metadata"].get("creationTimestamp"),
                    },
                    "spec": {
                        "type": "ClusterIP",
                        "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": port}],
                    },
                },
            )
        subsets = [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
        current = self.store.find(endpoints, "default", "kubernetes")
        if current is None:
            self.store.create(
                endpoints,
                {
                    "metadata": {
                        "name": "kubernetes",
                        "namespace": "default",
                        "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
                        "creationTimestamp": default["metadata"].get("creationTimestamp"),
                    },
                    "subsets": subsets,
                },
            )
        elif current.get("subsets") != subsets:
            self.store.update(endpoints, {**current, "subsets": subsets}, force=True)

    # ---- deletion -------------------------------------------------------------------------------------

    def _delete(self, ns: dict[str, Any]) -> None:
        name = ns["metadata"]["name"]
        if "kubernetes" not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        waited = time.time() - (parse_iso(ns["metadata"]["deletionTimestamp"]) or time.time())
        if waited < DELETION_GRACE_S * self.speed:
            self.wake_at(time.monotonic() + DELETION_GRACE_S * self.speed - waited + 0.05)
            return
        pods = self._res("", "pods")
        if self._delete_all(pods, name):
            self._conditions(ns, {})
            # the controller's requeue: half the longest grace period left, plus a second
            grace = max((int((p.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
                         for p in self.store.list(pods, name)), default=0)  # fmt: skip
            self.wake_at(time.monotonic() + (grace / 2 + 1) * self.speed)
            return
        left: dict[str, tuple[int, int]] = {}
        for res in self._namespaced():
            if res is pods:
                continue
            if count := self._delete_all(res, name):
                held = sum(1 for o in self.store.list(res, name) if o["metadata"].get("finalizers"))
                left[f"{res.plural}.{res.group}"] = (count, held)
        if left:
            self._conditions(ns, left)
            wait = FINALIZER_WAIT_S if any(h for _, h in left.values()) else 1.0
            self.wake_at(time.monotonic() + wait * self.speed)
            return
        self._conditions(ns, {})
        self._finalize(name)

    def _finalize(self, name: str) -> None:
        """Nothing left: the garbage collector's ``orphan``/``foregroundDeletion`` finalizers go (nothing
        depends on the namespace any more), then the controller's ``kubernetes`` through ``/finalize``."""
        namespaces = self._res("", "namespaces")
        fresh = self.store.get(namespaces, None, name)
        meta = fresh["metadata"]
        kept = [f for f in meta.get("finalizers") or [] if f not in ("orphan", "foregroundDeletion")]
        if kept != (meta.get("finalizers") or []):
            fresh = self.store.update(
                namespaces, {**fresh, "metadata": {**meta, "finalizers": kept}}, force=True
            )
        spec = fresh.get("spec") or {}
        finalized = {
            **fresh,
            "spec": {**spec, "finalizers": [f for f in spec.get("finalizers", []) if f != "kubernetes"]},
        }
        self.store.update(namespaces, finalized, subresource="finalize", force=True)

    def _namespaced(self) -> list[Resource]:
        return [
            r
            for r in self.registry.by_key.values()
            if r.namespaced and r.plural not in VIRTUAL and "delete" in r.verbs
        ]

    def _delete_all(self, res: Resource, namespace: str) -> int:
        """Delete every object of ``res`` in ``namespace`` (background propagation, each its own grace
        period); how many are still there after."""
        for obj in list(self.store.list(res, namespace)):
            if obj["metadata"].get("deletionTimestamp"):
                continue
            try:
                self.store.delete(res, namespace, obj["metadata"]["name"])
            except KubeError:
                continue  # gone meanwhile (a dependent collected with its owner)
        return len(self.store.list(res, namespace))

    def _conditions(self, ns: dict[str, Any], left: dict[str, tuple[int, int]]) -> None:
        """The five deletion conditions: all fine, or content (and finalizers) remaining."""
        remaining = ", ".join(sorted(f"{r} has {n} resource instances" for r, (n, _) in left.items()))
        finalizers = ", ".join(sorted(f"{r} in {h} resource instances" for r, (_, h) in left.items() if h))
        overrides = {}
        if remaining:
            overrides["NamespaceContentRemaining"] = (
                "True",
                "SomeResourcesRemain",
                f"Some resources are remaining: {remaining}",
            )
        if finalizers:
            overrides["NamespaceFinalizersRemaining"] = (
                "True",
                "SomeFinalizersRemain",
                f"Some content in the namespace has finalizers remaining: {finalizers}",
            )
        old = {c["type"]: c for c in (ns.get("status") or {}).get("conditions") or []}
        conditions = []
        for type_, reason, message in CONDITIONS:
            status, reason, message = overrides.get(type_, ("False", reason, message))
            prev = old.get(type_)
            since = prev["lastTransitionTime"] if prev and prev["status"] == status else now_iso()
            conditions.append(
                {
                    "type": type_,
                    "status": status,
                    "lastTransitionTime": since,
                    "reason": reason,
                    "message": message,
                }
            )
        status_ = {**(ns.get("status") or {}), "phase": "Terminating", "conditions": conditions}
        if status_ != ns.get("status"):
            self.store.update(
                self._res("", "namespaces"), {**ns, "status": status_}, subresource="status", force=True
            )
