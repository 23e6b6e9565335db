"""The twin's object store: objects, one global resourceVersion, watch fan-out and a bounded history.

Semantics kept from the real API server (etcd3 storage + generic registry):

* ``resourceVersion`` is one cluster-wide counter; every write bumps it.
* ``metadata.generation`` increases when anything but metadata/status changes.
* Updates carrying a ``resourceVersion`` that is not the stored one fail with 409 Conflict.
* For kinds with a ``status`` subresource, the main endpoint ignores status changes and ``/status``
  ignores everything but status.
* Deletion with finalizers sets ``deletionTimestamp`` and waits for the finalizers to be removed.
  Dependents (``ownerReferences``) are garbage-collected in the background unless orphaned.
* Watches replay history after the requested resourceVersion; one older than the retained window gets
  410 Gone ("too old resource version"), as from the watch cache.
* Continue tokens live until etcd compacts their revision: kube-apiserver compacts every 5 minutes
  (``--etcd-compaction-interval``) to the revision it saw at the previous tick, so a token lives 5 to 10
  minutes of wall time (``etcd_floor``) — the lab's speed does not shorten it.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import json
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lab.kube import defaults
from lab.kube.errors import (
    KubeError,
    already_exists,
    bad_request,
    conflict,
    gone,
    namespace_terminating,
    not_found,
)
from lab.kube.resources import Resource

HISTORY = 5000  # events kept per resource type for watch resumption
COMPACTION_INTERVAL_S = 300.0  # kube-apiserver's --etcd-compaction-interval
NAME_ALPHABET = defaults.NAME_ALPHABET  # what the API server's generateName draws from
NAMESPACES = "/namespaces"  # the namespaces' table (Store.key of the core group's namespaces)
IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")  # NamespaceLifecycle refuses their deletion


def detached(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy sharing nothing, not even within itself: a client's object may use one dict in two places
    (a template's labels as its spread constraint's selector), and a stored object must not."""
    copied: dict[str, Any] = json.loads(json.dumps(obj))
    return copied


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(stamp: str | None) -> float | None:
    """A metav1.Time (``2026-12-06T13:05:36Z``) as a UNIX time; None when absent."""
    if not stamp:
        return None
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


@dataclass
class WatchEvent:
    rv: int
    type: str
    obj: dict[str, Any]


@dataclass(eq=False)
class Watcher:
    namespace: str | None
    predicate: Callable[[dict[str, Any]], bool]
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)


class Store:
    def __init__(self) -> None:
        self.rv = 100
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.history: dict[str, deque[WatchEvent]] = {}
        self.compacted: dict[str, int] = {}
        self._etcd_floor = 0  # revisions below it are compacted away
        self._compaction_mark = self.rv  # the revision seen at the last compaction tick
        self._next_compaction = time.monotonic() + COMPACTION_INTERVAL_S
        self.watchers: dict[str, set[Watcher]] = {}
        self.resources: dict[str, Resource] = {}
        self._sorted: dict[str, list[tuple[str, str]]] = {}
        self._by_ns: dict[str, dict[str, list[tuple[str, str]]]] = {}
        # DefaultTolerationSeconds for new pods: (not-ready, unreachable), the API server's flags.
        self.toleration_seconds = (defaults.DEFAULT_TOLERATION_S, defaults.DEFAULT_TOLERATION_S)
        # Called synchronously after every committed change: (resource, type, new-or-deleted object).
        self.listeners: list[Callable[[Resource, str, dict[str, Any]], None]] = []

    @staticmethod
    def key(res: Resource) -> str:
        return f"{res.group}/{res.plural}"

    def table(self, res: Resource) -> dict[tuple[str, str], dict[str, Any]]:
        k = self.key(res)
        self.resources[k] = res
        return self.objects.setdefault(k, {})

    # ---- reads ----------------------------------------------------------------------------------------

    def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.table(res).get((namespace or "", name))
        if obj is None:
            raise not_found(res.plural, res.group, name)
        return obj

    def find(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.table(res).get((namespace or "", name))

    def list(self, res: Resource, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects sorted by (namespace, name); the key order is cached between creates and deletes."""
        table = self.table(res)
        k = self.key(res)
        keys = self._keys(res)
        if namespace is None:
            return [table[key] for key in keys]
        return [table[key] for key in self._by_ns[k].get(namespace, [])]

    def namespaces(self, res: Resource) -> builtins.list[str]:
        """The namespaces holding objects of ``res``, sorted (``list(res, ns)`` for each, in this order, is
        ``list(res)``)."""
        self._keys(res)
        return sorted(self._by_ns[self.key(res)])

    def _keys(self, res: Resource) -> builtins.list[tuple[str, str]]:
        k = self.key(res)
        keys = self._sorted.get(k)
        if keys is None:
            keys = self._sorted[k] = sorted(self.table(res))
            by_ns: dict[str, list[tuple[str, str]]] = {}
            for key in keys:
                by_ns.setdefault(key[0], []).append(key)
            self._by_ns[k] = by_ns
        return keys

    # ---- writes ---------------------------------------------------------------------------------------

    def etcd_floor(self) -> int:
        """The oldest revision etcd still holds.  The ticks are caught up lazily, here and before every
        write: the revision at a tick is the one before the first write after it."""
        now = time.monotonic()
        while now >= self._next_compaction:
            self._etcd_floor, self._compaction_mark = self._compaction_mark, self.rv
            self._next_compaction += COMPACTION_INTERVAL_S
        return self._etcd_floor

    def _commit(self, res: Resource, type_: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.etcd_floor()
        self.rv += 1
        if type_ != "DELETED":
            obj["metadata"]["resourceVersion"] = str(self.rv)
        else:
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
        k = self.key(res)
        hist = self.history.setdefault(k, deque(maxlen=HISTORY))
        if len(hist) == hist.maxlen:
            self.compacted[k] = hist[0].rv
        event = WatchEvent(self.rv, type_, copy.deepcopy(obj))
        hist.append(event)
        for w in list(self.watchers.get(k, ())):
            ns = obj["metadata"].get("namespace")
            if (w.namespace is None or w.namespace == ns) and w.predicate(event.obj):
                w.queue.put_nowait(event)
        for listener in list(self.listeners):
            listener(res, type_, obj)
        return obj

    def create(
        self, res: Resource, obj: dict[str, Any], namespace: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """Store a new object, defaulted and prepared; ``dry_run``: all of it but the storing."""
        obj = detached(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(random.choices(NAME_ALPHABET, k=5))
            else:
                raise KubeError(
                    422,
                    "Invalid",
                    f'{res.kind} in version "{res.version}" cannot be handled '
                    "as a " + res.kind + ": name or generateName is required",
                )
        if res.namespaced:
            ns = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") and meta["namespace"] != ns:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if res.namespaced and self.terminating(meta["namespace"]):
            raise namespace_terminating(res.plural, res.group, meta["name"], meta["namespace"])
        table = self.table(res)
        key = (meta.get("namespace", ""), meta["name"])
        if key in table:
            raise already_exists(res.plural, res.group, meta["name"])
        obj["apiVersion"] = res.group_version
        obj["kind"] = res.kind
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = meta.get("creationTimestamp") or now_iso()
        meta.pop("deletionTimestamp", None)
        meta.pop("resourceVersion", None)
        self._prepare_create(res, obj)
        if dry_run:
            return obj
        table[key] = obj
        self._sorted.pop(self.key(res), None)
        return self._commit(res, "ADDED", obj)

    def _prepare_create(self, res: Resource, obj: dict[str, Any]) -> None:
        """What the registry and admission do to every new object, after defaulting (lab/kube/defaults.py)."""
        defaults.default(res, obj)
        if defaults.tracks_generation(res):
            obj["metadata"]["generation"] = 1
        if "status" not in obj and (status := defaults.initial_status(res, obj)) is not None:
            obj["status"] = status
        if not res.group and res.kind == "Pod":
            defaults.pod_admission(obj, self.toleration_seconds)
            obj["status"].setdefault("qosClass", defaults.qos_class(obj["spec"]))
        elif not res.group and res.kind == "Service":
            used = (str((s.get("spec") or {}).get("clusterIP")) for s in self.list(res))
            defaults.allocate_cluster_ips(obj, used)
        elif res.group == "batch" and res.kind == "Job":
            defaults.job_selector(obj)
        elif not res.group and res.kind == "Namespace":
            defaults.namespace_finalizer(obj)

    def update(
        self,
        res: Resource,
        obj: dict[str, Any],
        subresource: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Replace an object (PUT semantics).  ``force`` skips the resourceVersion check (controllers);
        ``dry_run`` answers what would be stored without storing it."""
        meta = obj.get("metadata") or {}
        table = self.table(res)
        key = (meta.get("namespace", "") if res.namespaced else "", meta.get("name", ""))
        old = table.get(key)
        if old is None:
            raise not_found(res.plural, res.group, meta.get("name", ""))
        sent_rv = meta.get("resourceVersion")
        if not force and sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise conflict(res.plural, res.group, key[1])
        new = detached(obj)
        new["apiVersion"], new["kind"] = res.group_version, res.kind
        nm = new.setdefault("metadata", {})
        for immutable in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "namespace",
            "generation",
            "deletionGracePeriodSeconds",
        ):
            if immutable in old["metadata"]:
                nm[immutable] = old["metadata"][immutable]
            else:
                nm.pop(immutable, None)
        new = self._written(res, old, new, subresource)
        if new == old:
            return old  # a no-op write does not bump resourceVersion (as the real server)
        if dry_run:
            return new
        table[key] = new
        meta = new["metadata"]
        held = self._is_namespace(res) and (new.get("spec") or {}).get("finalizers")
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not held:
            return self._really_delete(res, key)
        return self._commit(res, "MODIFIED", new)

    def _written(
        self, res: Resource, old: dict[str, Any], new: dict[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        """What an update stores: a subresource changes its part only (a Pod's node, a Namespace's
        finalizers, a status); the main resource never the status, nor what the server allocated or
        holds (a Service's cluster IPs, a Namespace's finalizers), and moves the generation on a spec
        change."""
        if subresource is None:
            defaults.default(res, new)
            defaults.keep_allocated(res, old, new)
        if subresource in ("binding", "finalize"):
            part = ("spec", "nodeName") if subresource == "binding" else ("spec", "finalizers")
            value = (new.get(part[0]) or {}).get(part[1])
            new = copy.deepcopy(old)
            new.setdefault(part[0], {})[part[1]] = value
            if not value:
                new[part[0]].pop(part[1])
        elif subresource == "status":
            new = {**copy.deepcopy(old), "status": new.get("status")}
            if new["status"] is None:
                new.pop("status")
        elif "status" in res.subresources and subresource is None:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if subresource is None:
            nm = new["metadata"]
            changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
                k: v for k, v in old.items() if k not in ("metadata", "status")
            }
            if changed and "generation" in nm:
                nm["generation"] = int(nm["generation"]) + 1
        return new

    def rewrite(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an object whole, its immutable metadata included — the lab's own history (back-dated
        creation times), never an API write."""
        meta = obj["metadata"]
        key = (meta.get("namespace", "") if res.namespaced else "", meta["name"])
        if key not in self.table(res):
            raise not_found(res.plural, res.group, meta["name"])
        new = copy.deepcopy(obj)
        self.table(res)[key] = new
        return self._commit(res, "MODIFIED", new)

    def delete(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        *,
        grace: int | None = None,
        propagation: str = "Background",
        precondition_uid: str | None = None,
        precondition_rv: str | None = None,
    ) -> dict[str, Any]:
        """Delete (or mark for deletion when finalizers or a pod grace period hold it)."""
        key = (namespace or "" if res.namespaced else "", name)
        obj = self.table(res).get(key)
        if obj is None:
            raise not_found(res.plural, res.group, name)
        meta = obj["metadata"]
        if precondition_uid and precondition_uid != meta["uid"]:
            raise conflict(res.plural, res.group, name)
        if precondition_rv and precondition_rv != meta["resourceVersion"]:
            raise conflict(res.plural, res.group, name)
        if propagation == "Foreground":
            meta.setdefault("finalizers", [])
            if "foregroundDeletion" not in meta["finalizers"]:
                meta["finalizers"].append("foregroundDeletion")
        if self._is_namespace(res):
            if name in IMMORTAL_NAMESPACES:
                raise KubeError(
                    403,
                    "Forbidden",
                    f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                    {"name": name, "kind": "namespaces"},
                )
            if obj.get("spec", {}).get("finalizers"):
                return self._terminate_namespace(res, obj, propagation)
        graceful = res.plural == "pods" and grace != 0 and obj.get("spec", {}).get("nodeName")
        if meta.get("finalizers") or graceful:
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now_iso()
                if graceful:
                    period = (
                        grace if grace is not None else obj["spec"].get("terminationGracePeriodSeconds", 30)
                    )
                    meta["deletionGracePeriodSeconds"] = period
                obj = self._commit(res, "MODIFIED", obj)
            if propagation != "Orphan":
                self._collect_dependents(meta["uid"])
            return obj
        deleted = self._really_delete(res, key)
        if propagation != "Orphan":
            self._collect_dependents(meta["uid"])
        return deleted

    @staticmethod
    def _is_namespace(res: Resource) -> bool:
        return not res.group and res.plural == "namespaces"

    def _terminate_namespace(self, res: Resource, obj: dict[str, Any], propagation: str) -> dict[str, Any]:
        """A Namespace is not deleted but marked: ``Terminating`` until the namespace controller has
        emptied it and removed its ``kubernetes`` finalizer (lab/kube/namespaces.py)."""
        if obj["metadata"].get("deletionTimestamp"):
            return obj
        new = copy.deepcopy(obj)
        new["metadata"]["deletionTimestamp"] = now_iso()
        extra = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(propagation)
        if extra and extra not in new["metadata"].get("finalizers", []):
            new["metadata"]["finalizers"] = [*new["metadata"].get("finalizers", []), extra]
        new.setdefault("status", {})["phase"] = "Terminating"
        self.table(res)[("", obj["metadata"]["name"])] = new
        return self._commit(res, "MODIFIED", new)

    def terminating(self, namespace: str | None) -> bool:
        """Whether ``namespace`` is being deleted (nothing new may be created in it)."""
        if not namespace:
            return False
        ns = self.objects.get(NAMESPACES, {}).get(("", namespace))
        return bool(ns and ns["metadata"].get("deletionTimestamp"))

    def _really_delete(self, res: Resource, key: tuple[str, str]) -> dict[str, Any]:
        obj = self.table(res).pop(key)
        self._sorted.pop(self.key(res), None)
        return self._commit(res, "DELETED", obj)

    def _collect_dependents(self, uid: str) -> None:
        """Background garbage collection: delete every object owned by ``uid``."""
        for k, table in list(self.objects.items()):
            res = self.resources[k]
            for (ns, name), obj in list(table.items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs) and not obj["metadata"].get("deletionTimestamp"):
                    remaining = [r for r in refs if r.get("uid") != uid]
                    if remaining:
                        obj["metadata"]["ownerReferences"] = remaining
                        self._commit(res, "MODIFIED", obj)
                    else:
                        self.delete(res, ns or None, name)

    def finish_graceful_delete(self, res: Resource, namespace: str | None, name: str) -> None:
        """What the kubelet does once a terminating pod's containers stopped: remove the object."""
        key = (namespace or "", name)
        obj = self.table(res).get(key)
        if obj is not None and not obj["metadata"].get("finalizers"):
            self._really_delete(res, key)

    # ---- watch ----------------------------------------------------------------------------------------

    def replay(self, res: Resource, since: int) -> Iterable[WatchEvent]:
        """Events after ``since``; 410 Gone when ``since`` predates the retained history."""
        k = self.key(res)
        floor = self.compacted.get(k, 0)
        if since < floor:
            raise gone(f"too old resource version: {since} ({floor})")
        return [e for e in self.history.get(k, ()) if e.rv > since]

    def compact(self) -> None:
        """Forget all history (a lab fault): every watch resuming from an old version and every continue
        token issued before now get 410."""
        for k, hist in self.history.items():
            self.compacted[k] = self.rv
            hist.clear()
        self._etcd_floor = self._compaction_mark = self.rv

    def subscribe(self, res: Resource, watcher: Watcher) -> None:
        self.watchers.setdefault(self.key(res), set()).add(watcher)

    def unsubscribe(self, res: Resource, watcher: Watcher) -> None:
        self.watchers.get(self.key(res), set()).discard(watcher)

    def drop_watches(self) -> None:
        """End every open watch stream (a lab fault, like an API server restart)."""
        for watchers in self.watchers.values():
            for w in watchers:
                w.queue.put_nowait(None)
