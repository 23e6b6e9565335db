"""The cluster's behaviour: the controllers and kubelets that make the twin act like the seed's cluster.

One reconcile loop runs every controller over the whole store whenever something changes (or a timer it
asked for falls due).  Behaviour follows the objects, with every duration multiplied by ``speed``:

* **Node lifecycle** — each node's kubelet renews its Lease in ``kube-node-lease`` every 10 s while its
  Hetzner server runs (and k3s is not stopped).  The node lifecycle controller looks every 5 s; when the
  last renewal it saw is older than the grace period (50 s: the clocks are 1.34's, lab/kube/timing.py),
  the node turns ``Ready=Unknown``, gets the ``node.kubernetes.io/unreachable`` NoSchedule and NoExecute
  taints, and its pods are marked not ready.  Renewals resume -> Ready, taints removed.
* **Taint eviction** — a pod on a node with NoExecute taints is evicted after the smallest
  ``tolerationSeconds`` of the tolerations that match (at once if one taint is not tolerated; never if
  tolerated without seconds).  The API server's DefaultTolerationSeconds admission gives pods without
  their own tolerations 300 s.  Pods on an unreachable node stay ``Terminating`` until its kubelet returns.
* **Scheduler** — taints/tolerations, nodeSelector, required node affinity, required pod anti-affinity,
  topologySpreadConstraints (DoNotSchedule as a filter, ScheduleAnyway as a score), preferred
  anti-affinity and spreading as scores.
* **Deployments / ReplicaSets / DaemonSets / Jobs / Endpoints / PDB status** — as their controllers.
* **Kubelet** — starts pods on live nodes, runs readiness probes with the pod's own period and
  thresholds (real HTTP against the lab's DocFast processes; others pass), finishes graceful deletions.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from console.kubeobj import rolled_out
from lab.images import ImageRegistry
from lab.kube.defaults import NAME_ALPHABET
from lab.kube.logs import PodLogs
from lab.kube.resources import Registry, Resource
from lab.kube.runtime import Exit, Runtime
from lab.kube.store import Store, now_iso, parse_iso
from lab.kube.timing import Timing

log = logging.getLogger("lab.cluster")

UNREACHABLE = "node.kubernetes.io/unreachable"
READY_REASONS = {
    "Ready": "KubeletReady",
    "MemoryPressure": "KubeletHasSufficientMemory",
    "DiskPressure": "KubeletHasNoDiskPressure",
    "PIDPressure": "KubeletHasSufficientPID",
}
NOT_READY = "node.kubernetes.io/not-ready"

Probe = Callable[[dict[str, Any]], Awaitable[bool]]


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint.get("key")
    return bool(
        toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get("value", "")
    )


def tolerated(pod_spec: dict[str, Any], taint: dict[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in pod_spec.get("tolerations") or [])


def match_labels(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        k, op, vals = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def _node_term_matches(term: dict[str, Any], node: dict[str, Any]) -> bool:
    labels = node["metadata"].get("labels") or {}
    for expr in term.get("matchExpressions") or []:
        if not match_labels({"matchExpressions": [expr]}, labels):
            return False
    for expr in term.get("matchFields") or []:
        if expr["key"] == "metadata.name":
            ok = node["metadata"]["name"] in (expr.get("values") or [])
            if ok != (expr["operator"] == "In"):
                return False
    return True


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", [])
    )


def node_ready(node: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", [])
    )


def resolve_int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        frac = int(value[:-1]) * total / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(value)


def semantic(value: Any) -> Any:
    """A template as apimachinery's ``Semantic.DeepEqual`` sees it: null, empty maps and empty lists are
    the same as absent (nil and empty slices and maps compare equal)."""
    if isinstance(value, dict):
        out = {k: semantic(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [semantic(v) for v in value]
    return value


def _without_hash(template: dict[str, Any]) -> Any:
    t = semantic(template)
    labels = (t.get("metadata") or {}).get("labels")
    if labels and "pod-template-hash" in labels:
        labels = {k: v for k, v in labels.items() if k != "pod-template-hash"}
        t["metadata"] = (
            {**t["metadata"], "labels": labels}
            if labels
            else {k: v for k, v in t["metadata"].items() if k != "labels"}
        )
        if not t["metadata"]:
            del t["metadata"]
    return t


def equal_ignore_hash(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The deployment controller's ``EqualIgnoreHash``: two pod templates alike but for the hash label."""
    return bool(_without_hash(a) == _without_hash(b))


def template_hash(template: dict[str, Any], collisions: int = 0) -> str:
    """A pod template's hash as the controller writes it — FNV-32a (and the collision count, as 8 bytes),
    its decimal digits in the safe alphabet — over the template's semantic form (the real one hashes Go's
    dump of the struct: the letters differ, equal templates still hash equal)."""
    h = 0x811C9DC5
    data = json.dumps(_without_hash(template), sort_keys=True).encode()
    if collisions:
        data += collisions.to_bytes(4, "little") + bytes(4)
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(NAME_ALPHABET[ord(c) % len(NAME_ALPHABET)] for c in str(h))


def _controller(kind: str) -> str:
    """The component a workload controller's events come from (``replicaset-controller`` …)."""
    return "replication-controller" if kind == "ReplicationController" else f"{kind.lower()}-controller"


def _revision(rs: dict[str, Any]) -> int:
    return int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))


# A pod template annotated so makes the lab's kubelet misbehave (lab/README.md, "Faults"): ``crash``
# (the container exits 1), ``oom`` (killed over its memory limit).
FAULT_ANNOTATION = "lab.opsconsole.dev/fault"
CRASH_LINES = {  # what a faulty container writes last, by how it ends
    "Error": "Error: connect ECONNREFUSED 10.43.0.10:5432 (the fault: the process exits 1)",
    "OOMKilled": "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
}


def _died(cs: dict[str, Any], reason: str, code: int, restarts: int, ended: str) -> None:
    """A container status after its process ended: the termination kept as ``lastState``, waiting to be
    restarted."""
    started = ((cs.get("state") or {}).get("running") or {}).get("startedAt", ended)
    last = {"reason": reason, "exitCode": code, "startedAt": started, "finishedAt": ended}
    back_off = f"back-off restarting failed container {cs['name']}"
    cs.update(
        ready=False,
        started=False,
        restartCount=restarts,
        lastState={"terminated": last},
        state={"waiting": {"reason": "CrashLoopBackOff", "message": back_off}},
    )


class Cluster:
    def __init__(
        self, store: Store, registry: Registry, speed: float = 1.0, timing: Timing | None = None
    ) -> None:
        self.store = store
        self.registry = registry
        self.speed = speed
        self.timing = timing or Timing()
        self._next_monitor = 0.0  # the node lifecycle controller's next look (monotonic)
        self._seen_renew: dict[str, float] = {}  # each node's last renewal it saw…
        self._probed: dict[str, float] = {}  # …and when it saw it (its probeTimestamp)
        self.res: dict[str, Resource] = {}
        for gv, plural in (
            ("v1", "nodes"),
            ("v1", "pods"),
            ("v1", "namespaces"),
            ("v1", "events"),
            ("v1", "services"),
            ("v1", "endpoints"),
            ("apps/v1", "deployments"),
            ("apps/v1", "replicasets"),
            ("v1", "replicationcontrollers"),
            ("apps/v1", "daemonsets"),
            ("batch/v1", "jobs"),
            ("coordination.k8s.io/v1", "leases"),
            ("policy/v1", "poddisruptionbudgets"),
        ):
            group, _, version = gv.rpartition("/")
            res = registry.get(group, version, plural)
            assert res is not None
            self.res[plural] = res
        self.node_alive: Callable[[str], bool] = lambda name: True
        self.probe: Callable[[dict[str, Any], dict[str, Any]], Awaitable[bool] | None] = lambda pod, probe: (
            None
        )
        self.logs = PodLogs()  # the API server's, once the twin is built (lab/twin.py)
        # A twin of a cluster that has been running: once the seed's workloads first settle, their pods
        # and ReplicaSets are given the age each namespace has (``history_ages``; the rest: ``history_age``).
        self.history_ages: dict[str, float] = {}
        self.history_age = 40 * 86400.0
        self.history_needs: set[str] = set()  # namespaces whose pods must exist first (the database's)
        self._backdated = False
        self.seeded_namespaces: set[str] = set()  # those the cluster had when the lab started
        self.on_pod_start: list[Callable[[dict[str, Any]], Awaitable[None]]] = []
        self.on_pod_stop: list[Callable[[dict[str, Any]], Awaitable[None]]] = []
        self.last_renew: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._timers: list[float] = []
        self._probe_tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping: set[str] = set()
        self._terminating: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._ip_seq: dict[str, int] = {}
        self.ground: list[dict[str, Any]] = []  # when nodes actually changed state (lab truth)
        self.changes = 0  # changes to objects the controllers manage
        self.skip_namespaces: set[str] = set()  # left alone by the controllers (the --scale load)
        self.virtual_nodes: set[str] = set()  # always Ready, no kubelet lease (the --scale nodes)
        self.images = ImageRegistry()  # what each container's imageID names (lab/images.py)
        self.runtime = Runtime(store, registry, lambda: self.logs)  # what run-to-completion pods run
        self._job_retry: dict[
            tuple[str, int], float
        ] = {}  # (job uid, failures) -> when the next pod may start
        self.controllers: list[Callable[[], None]] = []  # more controllers, run after these (namespaces)
        store.listeners.append(self._on_change)

    # ---- loop -----------------------------------------------------------------------------------------

    def _on_change(self, res: Resource, type_: str, obj: dict[str, Any]) -> None:
        if obj.get("metadata", {}).get("namespace") not in self.skip_namespaces:
            self.changes += 1
            self._wake.set()

    def pods(self) -> list[dict[str, Any]]:
        """Every pod the controllers manage (all but the --scale load).

        Read namespace by namespace from the store's index, never by filtering every pod: each reconcile
        pass asks six times, and filtering 10,000 scale pods each time kept the twin's loop busy for most
        of every second — its watch streams then delivered changes up to a second late."""
        res = self.res["pods"]
        if not self.skip_namespaces:
            return self.store.list(res)
        return [
            p
            for ns in self.store.namespaces(res)
            if ns not in self.skip_namespaces
            for p in self.store.list(res, ns)
        ]

    def managed_nodes(self) -> list[dict[str, Any]]:
        return [
            n for n in self.store.list(self.res["nodes"]) if n["metadata"]["name"] not in self.virtual_nodes
        ]

    def s(self, seconds: float) -> float:
        return seconds * self.speed

    def wake_at(self, when: float) -> None:
        self._timers.append(when)

    def start(self) -> None:
        self.seeded_namespaces = {n["metadata"]["name"] for n in self.store.list(self.res["namespaces"])}
        now = time.monotonic()
        for node in self.store.list(self.res["nodes"]):
            self.last_renew[node["metadata"]["name"]] = now
            self._set_node_ready(node, True, initial=True)
            name = node["metadata"]["name"]
            fresh = self.store.get(self.res["nodes"], None, name)
            self.event(fresh, "RegisteredNode", f"Node {name} event: Registered Node {name} in Controller",
                       component="node-controller")  # fmt: skip
        self._tasks.append(asyncio.ensure_future(self._loop()))
        self._tasks.append(asyncio.ensure_future(self._heartbeats()))

    async def close(self) -> None:
        for task in [*self._tasks, *self._probe_tasks.values()]:
            task.cancel()
        for task in [*self._tasks, *self._probe_tasks.values()]:
            with contextlib.suppress(BaseException):
                await task

    async def _loop(self) -> None:
        while True:
            now = time.monotonic()
            self._timers = [t for t in self._timers if t > now]
            timeout = min(self._timers) - now if self._timers else 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.01, timeout))
            self._wake.clear()
            for _ in range(20):  # converge: each pass may enable the next
                seen = self.changes
                try:
                    await self.reconcile()
                except Exception:
                    log.exception("reconcile failed")
                if self.changes == seen:
                    break
            if not self._backdated and self._settled():
                self._backdate()
            await asyncio.sleep(0.005)

    def _settled(self) -> bool:
        """Every seeded Deployment rolled out, every pod Running and Ready, the awaited namespaces' in."""
        pods = self.pods()
        if not pods or not self.history_needs <= {p["metadata"]["namespace"] for p in pods}:
            return False
        deployments = self.store.list(self.res["deployments"])
        return all(rolled_out(d) for d in deployments) and all(
            p.get("status", {}).get("phase") == "Running" and pod_ready(p) for p in pods
        )

    def _backdate(self) -> None:
        """Shift the settled pods' and ReplicaSets' timestamps back by their namespace's age: a promotion's
        soak gate, an age column and a restart's "last" read as on a cluster deployed long before."""
        self._backdated = True

        def older(stamp: Any, ns: str) -> Any:
            if not isinstance(stamp, str) or not stamp.endswith("Z"):
                return stamp
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            age = self.history_ages.get(ns, self.history_age)
            return datetime.fromtimestamp(when - age, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        seeded = self.seeded_namespaces  # anything made since the lab started is as new as it is
        for res in (self.res["replicasets"], self.res["pods"]):
            for obj in self.store.list(res):
                ns = obj["metadata"]["namespace"]
                if ns not in seeded:
                    continue
                new = copy.deepcopy(obj)
                new["metadata"]["creationTimestamp"] = older(new["metadata"].get("creationTimestamp"), ns)
                st = new.get("status") or {}
                if "startTime" in st:
                    st["startTime"] = older(st["startTime"], ns)
                for c in st.get("conditions") or []:
                    c["lastTransitionTime"] = older(c.get("lastTransitionTime"), ns)
                for cs in st.get("containerStatuses") or []:
                    running = (cs.get("state") or {}).get("running")
                    if running:
                        running["startedAt"] = older(running.get("startedAt"), ns)
                self.store.rewrite(res, new)
        log.info("lab history: the seed's pods and ReplicaSets back-dated")

    async def reconcile(self) -> None:
        """One pass of every controller, in the order each enables the next; one that fails is logged and
        the others still run (as separate controllers would)."""
        steps: list[Callable[[], Any]] = [
            self.node_lifecycle,
            self.taint_eviction,
            self.deployments,
            self.replicasets,
            self.daemonsets,
            self.jobs,
            self.schedule,
            self.kubelets,
            self.endpoints,
            self.pdbs,
            self.pod_gc,
            *self.controllers,
        ]
        for step in steps:
            try:
                done = step()
                if asyncio.iscoroutine(done):
                    await done
            except Exception:
                log.exception("%s failed", getattr(step, "__name__", step))

    def pod_gc(self) -> None:
        """The pod garbage collector's orphan sweep: pods bound to a Node that no longer exists are deleted
        at once (their kubelet is gone; nobody else would finish them) — what `kubectl delete node` leads
        to on a real cluster within its GC period."""
        names = {n["metadata"]["name"] for n in self.store.list(self.res["nodes"])} | set(self.virtual_nodes)
        for pod in self.pods():
            node = (pod.get("spec") or {}).get("nodeName")
            if node and node not in names:
                meta = pod["metadata"]
                self.store.delete(self.res["pods"], meta["namespace"], meta["name"], grace=0)
                self.event(pod, "PodGCOrphaned", f"node {node} is gone", component="pod-garbage-collector")

    # ---- events ---------------------------------------------------------------------------------------

    def event(
        self, obj: dict[str, Any], reason: str, message: str, type_: str = "Normal", component: str = ""
    ) -> None:
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        if self.store.terminating(ns):
            return  # the API refuses new content there (a real recorder's event is dropped)
        ts = now_iso()
        self.store.create(
            self.res["events"],
            {
                "metadata": {"generateName": f"{meta['name']}.", "namespace": ns},
                "involvedObject": {
                    "kind": obj.get("kind"),
                    "namespace": meta.get("namespace"),
                    "name": meta["name"],
                    "uid": meta.get("uid"),
                    "apiVersion": obj.get("apiVersion"),
                },
                "reason": reason,
                "message": message,
                "type": type_,
                "count": 1,
                "firstTimestamp": ts,
                "lastTimestamp": ts,
                "source": {"component": component or "lab"},
                "reportingComponent": component or "lab",
                "reportingInstance": "",
            },
            ns,
        )
        events = self.store.list(self.res["events"])
        if len(events) > 2000:
            for old in sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))[:200]:
                self.store.delete(self.res["events"], old["metadata"]["namespace"], old["metadata"]["name"])

    # ---- nodes ----------------------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        """Each live node's kubelet renews its Lease (and the node lifecycle reads the renewals)."""
        lease_res = self.res["leases"]
        while True:
            now = time.monotonic()
            for node in self.managed_nodes():
                name = node["metadata"]["name"]
                if not self.node_alive(name):
                    continue
                self.last_renew[name] = now
                lease = self.store.find(lease_res, "kube-node-lease", name)
                spec = {
                    "holderIdentity": name,
                    "leaseDurationSeconds": int(self.timing.node_lease_duration),
                    "renewTime": now_micro(),
                }
                if lease is None:
                    self.store.create(
                        lease_res,
                        {
                            "metadata": {
                                "name": name,
                                "namespace": "kube-node-lease",
                                "ownerReferences": [_owner(node)],
                            },
                            "spec": spec,
                        },
                    )
                else:
                    lease = copy.deepcopy(lease)
                    lease["spec"].update(spec)
                    self.store.update(lease_res, lease, force=True)
            self._wake.set()
            await asyncio.sleep(self.s(self.timing.lease_renew_interval))

    def _set_node_ready(self, node: dict[str, Any], ready: bool, initial: bool = False) -> None:
        node = copy.deepcopy(node)
        ts = now_iso()
        types = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
        if ready:
            conds = [
                {
                    "type": t,
                    "status": "True" if t == "Ready" else "False",
                    "lastHeartbeatTime": ts,
                    "lastTransitionTime": ts,
                    "reason": READY_REASONS[t],
                    "message": "kubelet is posting ready status" if t == "Ready" else "kubelet is healthy",
                }
                for t in types
            ]
            taints = [t for t in node["spec"].get("taints", []) if t["key"] not in (UNREACHABLE, NOT_READY)]
        else:
            conds = [
                {
                    "type": t,
                    "status": "Unknown",
                    "lastHeartbeatTime": ts,
                    "lastTransitionTime": ts,
                    "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status.",
                }
                for t in types
            ]
            taints = [t for t in node["spec"].get("taints", []) if t["key"] not in (UNREACHABLE, NOT_READY)]
            taints += [
                {"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": ts},
                {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": ts},
            ]
        node["status"]["conditions"] = conds
        if taints:
            node["spec"]["taints"] = taints
        else:
            node["spec"].pop("taints", None)
        self.store.update(self.res["nodes"], node, force=True)
        fresh = self.store.get(self.res["nodes"], None, node["metadata"]["name"])
        self.store.update(
            self.res["nodes"], {**fresh, "status": node["status"]}, subresource="status", force=True
        )
        if not initial:
            self.ground.append({"at": time.time(), "node": node["metadata"]["name"], "ready": ready})
            self.event(
                fresh,
                "NodeReady" if ready else "NodeNotReady",
                f"Node {node['metadata']['name']} status is now: {'NodeReady' if ready else 'NodeNotReady'}",
                component="node-controller",
            )

    def node_lifecycle(self) -> None:
        """The kubelet marks its node Ready as soon as it runs again; the node lifecycle controller looks
        every ``node-monitor-period``, notes when it first saw each Lease renewal, and marks a node whose
        last one it saw more than ``node-monitor-grace-period`` ago ``Unknown`` (lab/kube/timing.py)."""
        now = time.monotonic()
        for node in self.managed_nodes():
            name = node["metadata"]["name"]
            if self.node_alive(name) and not node_ready(node):
                self.last_renew[name] = now
                self._set_node_ready(node, True)
        if now < self._next_monitor:
            self.wake_at(self._next_monitor)
            return
        self._next_monitor = now + self.s(self.timing.node_monitor_period)
        self.wake_at(self._next_monitor)
        for node in self.managed_nodes():
            name = node["metadata"]["name"]
            renewed = self.last_renew.get(name, now)
            if self._seen_renew.get(name) != renewed:
                self._seen_renew[name], self._probed[name] = renewed, now
            if node_ready(node) and now > self._probed[name] + self.s(self.timing.node_monitor_grace_period):
                self._set_node_ready(node, False)
                self._mark_pods_not_ready(name)

    def _mark_pods_not_ready(self, node: str) -> None:
        for pod in self.pods():
            if pod["spec"].get("nodeName") == node and pod_ready(pod):
                self._set_pod_ready(pod, False)

    # ---- eviction -------------------------------------------------------------------------------------

    def taint_eviction(self) -> None:
        now_wall = time.time()
        nodes = {n["metadata"]["name"]: n for n in self.managed_nodes()}
        for pod in self.pods():
            node = nodes.get(pod["spec"].get("nodeName", ""))
            if node is None or pod["metadata"].get("deletionTimestamp"):
                continue
            taints = [t for t in node["spec"].get("taints", []) if t.get("effect") == "NoExecute"]
            if not taints:
                continue
            deadline: float | None = None
            for taint in taints:
                matching = [t for t in pod["spec"].get("tolerations") or [] if tolerates(t, taint)]
                if not matching:
                    deadline = now_wall
                    break
                secs = [t["tolerationSeconds"] for t in matching if t.get("tolerationSeconds") is not None]
                if secs:
                    added = parse_iso(taint.get("timeAdded")) or now_wall
                    when = added + self.s(max(0, min(secs)))
                    deadline = when if deadline is None else min(deadline, when)
            if deadline is None:
                continue
            if deadline <= now_wall:
                self.event(
                    pod,
                    "TaintManagerEviction",
                    f"Marking for deletion Pod {pod['metadata']['namespace']}/{pod['metadata']['name']}",
                    component="taint-eviction-controller",
                )
                self.store.delete(self.res["pods"], pod["metadata"]["namespace"], pod["metadata"]["name"])
            else:
                self.wake_at(time.monotonic() + (deadline - now_wall))

    # ---- workloads ------------------------------------------------------------------------------------

    def _owned(self, plural: str, owner: dict[str, Any]) -> list[dict[str, Any]]:
        uid = owner["metadata"]["uid"]
        return [
            o
            for o in self.store.list(self.res[plural], owner["metadata"]["namespace"])
            if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
        ]

    def deployments(self) -> None:
        """The deployment controller: the ReplicaSet of the current template (found, or made), then the
        rollout by the strategy, then the status."""
        for d in self.store.list(self.res["deployments"]):
            if d["metadata"].get("deletionTimestamp") or self.store.terminating(d["metadata"]["namespace"]):
                continue
            spec = d["spec"]
            rss = self._owned("replicasets", d)
            # FindNewReplicaSet: the oldest whose template matches, the hash label aside.
            new = next(
                (
                    r
                    for r in sorted(rss, key=lambda r: r["metadata"]["creationTimestamp"])
                    if equal_ignore_hash(r["spec"]["template"], spec["template"])
                ),
                None,
            )
            revisions = [_revision(r) for r in rss]
            if new is None:
                new = self._new_replicaset(d, max(revisions, default=0) + 1)
                if new is None:
                    continue
            elif len(rss) > 1 and _revision(new) < max(revisions):
                new = self._revived(new, max(revisions) + 1)
            olds = [r for r in rss if r["metadata"]["uid"] != new["metadata"]["uid"]]
            if (spec.get("strategy") or {}).get("type") == "Recreate":
                self._recreate(new, olds, int(spec.get("replicas", 1)))
            else:
                self._roll(d, new, olds)
            self._deployment_status(d, new)

    def _new_replicaset(self, d: dict[str, Any], revision: int) -> dict[str, Any] | None:
        """A ReplicaSet for the Deployment's template, named by the template's hash; a name already taken
        by another template is a hash collision, counted in ``status.collisionCount`` and hashed again."""
        spec, meta = d["spec"], d["metadata"]
        collisions = int((d.get("status") or {}).get("collisionCount", 0))
        while True:
            h = template_hash(spec["template"], collisions)
            if self.store.find(self.res["replicasets"], meta["namespace"], f"{meta['name']}-{h}") is None:
                break
            collisions += 1
        if collisions != int((d.get("status") or {}).get("collisionCount", 0)):
            status = {**(d.get("status") or {}), "collisionCount": collisions}
            self.store.update(
                self.res["deployments"], {**d, "status": status}, subresource="status", force=True
            )
        tmpl = copy.deepcopy(spec["template"])
        tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
        sel = copy.deepcopy(spec["selector"])
        sel.setdefault("matchLabels", {})["pod-template-hash"] = h
        rs = self.store.create(
            self.res["replicasets"],
            {
                "metadata": {
                    "name": f"{meta['name']}-{h}",
                    "namespace": meta["namespace"],
                    "labels": tmpl["metadata"]["labels"],
                    "ownerReferences": [_owner(d, controller=True)],
                    "annotations": {
                        "deployment.kubernetes.io/revision": str(revision),
                        "deployment.kubernetes.io/desired-replicas": str(int(spec.get("replicas", 1))),
                    },
                },
                "spec": {
                    "replicas": 0,
                    "selector": sel,
                    "template": tmpl,
                    "minReadySeconds": spec.get("minReadySeconds", 0),
                },
            },
        )
        self.event(d, "ScalingReplicaSet", f"Scaled up replica set {rs['metadata']['name']} from 0",
                   component="deployment-controller")  # fmt: skip
        return rs

    def _revived(self, rs: dict[str, Any], revision: int) -> dict[str, Any]:
        """Rolling back to an older template: its ReplicaSet becomes the newest revision again, and keeps
        the revision it had in its history."""
        rs = copy.deepcopy(rs)
        notes = rs["metadata"].setdefault("annotations", {})
        before = notes.get("deployment.kubernetes.io/revision")
        notes["deployment.kubernetes.io/revision"] = str(revision)
        if before:
            history = notes.get("deployment.kubernetes.io/revision-history")
            notes["deployment.kubernetes.io/revision-history"] = f"{history},{before}" if history else before
        return self.store.update(self.res["replicasets"], rs, force=True)

    def _recreate(self, new: dict[str, Any], olds: list[dict[str, Any]], desired: int) -> None:
        if any(int(r["spec"].get("replicas", 0)) or r.get("status", {}).get("replicas", 0) for r in olds):
            for r in olds:
                self._scale_rs(r, 0)
        else:
            self._scale_rs(new, desired)

    def _roll(self, d: dict[str, Any], new: dict[str, Any], olds: list[dict[str, Any]]) -> None:
        """RollingUpdate: the new ReplicaSet up by ``maxSurge``, the old ones down as far as
        ``maxUnavailable`` lets availability fall (those not available at once)."""
        spec = d["spec"]
        desired = int(spec.get("replicas", 1))
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        surge = resolve_int_or_percent(ru.get("maxSurge", "25%"), desired, True)
        unavailable = resolve_int_or_percent(ru.get("maxUnavailable", "25%"), desired, False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        rss = [new, *olds]
        total = sum(int(r["spec"].get("replicas", 0)) for r in rss)
        new_replicas = int(new["spec"].get("replicas", 0))
        if new_replicas < desired:
            room = desired + surge - total
            if room > 0:
                self._scale_rs(new, min(desired, new_replicas + room))
        elif new_replicas > desired:
            self._scale_rs(new, desired)
        available = sum(int(r.get("status", {}).get("availableReplicas", 0)) for r in rss)
        can_down = available - (desired - unavailable)
        for r in sorted(olds, key=lambda r: r["metadata"]["creationTimestamp"]):
            cur = int(r["spec"].get("replicas", 0))
            if cur == 0:
                continue
            unhealthy = cur - int(r.get("status", {}).get("availableReplicas", 0))
            step = min(cur, max(0, unhealthy) + max(0, can_down))
            if step > 0:
                self._scale_rs(r, cur - step)
                can_down -= max(0, step - max(0, unhealthy))

    def _scale_rs(self, rs: dict[str, Any], replicas: int) -> None:
        cur = self.store.get(self.res["replicasets"], rs["metadata"]["namespace"], rs["metadata"]["name"])
        if int(cur["spec"].get("replicas", 0)) == replicas:
            return
        new = copy.deepcopy(cur)
        new["spec"]["replicas"] = replicas
        self.store.update(self.res["replicasets"], new, force=True)

    def _deployment_status(self, d: dict[str, Any], new_rs: dict[str, Any]) -> None:
        d = self.store.get(self.res["deployments"], d["metadata"]["namespace"], d["metadata"]["name"])
        rss = self._owned("replicasets", d)
        new_rs = next((r for r in rss if r["metadata"]["name"] == new_rs["metadata"]["name"]), new_rs)
        desired = int(d["spec"].get("replicas", 1))
        st = {
            k: sum(int(r.get("status", {}).get(k, 0)) for r in rss)
            for k in ("replicas", "readyReplicas", "availableReplicas")
        }
        updated = int(new_rs.get("status", {}).get("replicas", 0))
        ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        max_unavail = resolve_int_or_percent(ru.get("maxUnavailable", "25%"), desired, False)
        complete = updated == desired and st["replicas"] == desired and st["availableReplicas"] == desired
        old = d.get("status", {})
        ts = now_iso()

        def cond(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
            prev = next((c for c in old.get("conditions", []) if c["type"] == type_), None)
            same = prev and prev["status"] == status and prev["reason"] == reason
            return {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastUpdateTime": prev["lastUpdateTime"] if same and prev else ts,
                "lastTransitionTime": prev["lastTransitionTime"] if prev and prev["status"] == status else ts,
            }

        available_ok = st["availableReplicas"] >= desired - max_unavail
        status = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": st["replicas"],
            "updatedReplicas": updated,
            "readyReplicas": st["readyReplicas"],
            "availableReplicas": st["availableReplicas"],
            "unavailableReplicas": max(0, desired - st["availableReplicas"]),
            "conditions": [
                cond(
                    "Available",
                    "True" if available_ok else "False",
                    "MinimumReplicasAvailable" if available_ok else "MinimumReplicasUnavailable",
                    "Deployment has minimum availability."
                    if available_ok
                    else "Deployment does not have minimum availability.",
                ),
                cond(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                    f'ReplicaSet "{new_rs["metadata"]["name"]}" has '
                    + ("successfully progressed." if complete else "is progressing."),
                ),
            ],
        }
        for k in ("readyReplicas", "availableReplicas", "unavailableReplicas", "updatedReplicas", "replicas"):
            if not status[k]:
                status.pop(k)
        if old.get("collisionCount"):
            status["collisionCount"] = old["collisionCount"]
        revision = new_rs["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision")
        if (
            revision
            and d["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision") != revision
        ):
            upd = copy.deepcopy(d)
            upd["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = revision
            d = self.store.update(self.res["deployments"], upd, force=True)
        if d.get("status") != status:
            self.store.update(
                self.res["deployments"], {**d, "status": status}, subresource="status", force=True
            )

    def _new_pod(
        self,
        owner: dict[str, Any],
        template: dict[str, Any],
        name: str | None = None,
        node: str | None = None,
    ) -> dict[str, Any] | None:
        if self.store.terminating(owner["metadata"]["namespace"]):
            return None  # refused there (403); the namespace controller is removing the owner anyway
        spec = copy.deepcopy(template.get("spec") or {})  # defaulted and admitted by the store
        if node:
            spec["nodeName"] = node
        meta = {
            "namespace": owner["metadata"]["namespace"],
            "labels": dict((template.get("metadata") or {}).get("labels") or {}),
            "ownerReferences": [_owner(owner, controller=True)],
        }
        if annotations := (template.get("metadata") or {}).get("annotations"):
            meta["annotations"] = dict(annotations)
        if name:
            meta["name"] = name
        else:
            meta["generateName"] = owner["metadata"]["name"] + "-"
        pod = self.store.create(
            self.res["pods"],
            {"metadata": meta, "spec": spec},
        )
        self.event(
            owner,
            "SuccessfulCreate",
            f"Created pod: {pod['metadata']['name']}",
            component=_controller(owner["kind"]),
        )
        return pod

    @staticmethod
    def _active(pod: dict[str, Any]) -> bool:
        return not pod["metadata"].get("deletionTimestamp") and pod.get("status", {}).get("phase") not in (
            "Succeeded",
            "Failed",
        )

    def replicasets(self) -> None:
        """The ReplicaSet controller, and the replication manager for ReplicationControllers (the same
        rule; an RC's selector is a plain map)."""
        nodes = {n["metadata"]["name"]: n for n in self.store.list(self.res["nodes"])}
        sets = [
            (self.res[plural], rs)
            for plural in ("replicasets", "replicationcontrollers")
            for rs in self.store.list(self.res[plural])
        ]
        for rs_res, rs in sets:
            if rs["metadata"].get("deletionTimestamp"):
                continue
            pods = [p for p in self._owned("pods", rs) if self._active(p)]
            want = int(rs["spec"].get("replicas", 1))
            if len(pods) < want:
                for _ in range(want - len(pods)):
                    self._new_pod(rs, rs["spec"]["template"])
            elif len(pods) > want:

                def rank(p: dict[str, Any]) -> tuple[int, int, int, str]:
                    node = nodes.get(p["spec"].get("nodeName", ""))
                    return (
                        0 if not p["spec"].get("nodeName") else 1,
                        0 if node and not node_ready(node) else 1,
                        1 if pod_ready(p) else 0,
                        "~" + p["metadata"]["creationTimestamp"],
                    )

                for p in sorted(pods, key=rank)[: len(pods) - want]:
                    self.store.delete(self.res["pods"], p["metadata"]["namespace"], p["metadata"]["name"])
                self.event(
                    rs,
                    "SuccessfulDelete",
                    f"Deleted {len(pods) - want} pod(s)",
                    component=_controller(rs["kind"]),
                )
            pods = [p for p in self._owned("pods", rs) if self._active(p)]
            ready = sum(1 for p in pods if pod_ready(p))
            status = {
                "replicas": len(pods),
                "fullyLabeledReplicas": len(pods),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": rs["metadata"].get("generation", 1),
            }
            status = {k: v for k, v in status.items() if v or k in ("replicas",)}
            if rs.get("status") != status:
                self.store.update(rs_res, {**rs, "status": status}, subresource="status", force=True)

    def _node_eligible(self, spec: dict[str, Any], node: dict[str, Any], running: bool = False) -> bool:
        """Whether a pod of ``spec`` may go to ``node`` — or, ``running`` there already, stay: then only
        NoExecute taints count (a NoSchedule taint keeps new pods off, never evicts)."""
        effects = ("NoExecute",) if running else ("NoSchedule", "NoExecute")
        for taint in node["spec"].get("taints", []):
            if taint.get("effect") in effects and not tolerated(spec, taint):
                return False
        labels = node["metadata"].get("labels") or {}
        for k, v in (spec.get("nodeSelector") or {}).items():
            if labels.get(k) != v:
                return False
        required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        return not (
            required and not any(_node_term_matches(t, node) for t in required.get("nodeSelectorTerms", []))
        )

    def daemonsets(self) -> None:
        nodes = self.managed_nodes()
        for ds in self.store.list(self.res["daemonsets"]):
            if ds["metadata"].get("deletionTimestamp"):
                continue
            h = template_hash(ds["spec"]["template"])
            tmpl = copy.deepcopy(ds["spec"]["template"])
            tmpl.setdefault("metadata", {}).setdefault("labels", {})["controller-revision-hash"] = h
            spec = tmpl.setdefault("spec", {})
            tols = spec.setdefault("tolerations", [])
            for key, effect in (
                (NOT_READY, "NoExecute"),
                (UNREACHABLE, "NoExecute"),
                ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ):
                tols.append({"key": key, "operator": "Exists", "effect": effect})
            pods = [p for p in self._owned("pods", ds) if self._active(p)]
            by_node: dict[str, list[dict[str, Any]]] = {}
            for p in pods:
                by_node.setdefault(p["spec"].get("nodeName", ""), []).append(p)
            eligible = [
                n
                for n in nodes
                if self._node_eligible(spec, n)
                or (
                    n["metadata"]["name"] in by_node
                    and self._node_eligible(
                        {**spec, "tolerations": [*tols, {"key": UNREACHABLE, "operator": "Exists"}]},
                        n,
                        running=True,
                    )
                )
            ]
            names = {n["metadata"]["name"] for n in eligible}
            for n in eligible:
                name = n["metadata"]["name"]
                if name not in by_node and not any(
                    t["key"] == UNREACHABLE for t in n["spec"].get("taints", [])
                ):
                    node_spec = copy.deepcopy(tmpl)
                    node_spec["spec"]["affinity"] = {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchFields": [
                                            {"key": "metadata.name", "operator": "In", "values": [name]}
                                        ]
                                    }
                                ]
                            }
                        }
                    }
                    self._new_pod(ds, node_spec, node=name)
            for node_name, ps in by_node.items():
                if node_name not in names:
                    for p in ps:
                        self.store.delete(self.res["pods"], p["metadata"]["namespace"], p["metadata"]["name"])
            # Rolling update: one outdated pod at a time, once all others are ready.
            outdated = [
                p for p in pods if p["metadata"].get("labels", {}).get("controller-revision-hash") != h
            ]
            if outdated and all(pod_ready(p) for p in pods if p not in outdated):
                p = outdated[0]
                self.store.delete(self.res["pods"], p["metadata"]["namespace"], p["metadata"]["name"])
            pods = [p for p in self._owned("pods", ds) if self._active(p)]
            ready = sum(1 for p in pods if pod_ready(p))
            status = {
                "desiredNumberScheduled": len(names),
                "currentNumberScheduled": len(pods),
                "numberReady": ready,
                "numberAvailable": ready,
                "numberMisscheduled": 0,
                "updatedNumberScheduled": sum(
                    1 for p in pods if p["metadata"]["labels"].get("controller-revision-hash") == h
                ),
                "observedGeneration": ds["metadata"].get("generation", 1),
            }
            if ds.get("status") != status:
                self.store.update(
                    self.res["daemonsets"], {**ds, "status": status}, subresource="status", force=True
                )

    def jobs(self) -> None:
        """The Job controller for the Jobs the lab runs (one completion, no parallelism): a pod at a time;
        a failed pod is replaced until more have failed than ``backoffLimit``, then the Job fails; one
        that succeeded completes it.  The conditions and reasons are the controller's own."""
        for job in self.store.list(self.res["jobs"]):
            st = job.get("status") or {}
            if job["metadata"].get("deletionTimestamp") or st.get("completionTime"):
                continue
            if any(
                c.get("type") == "Failed" and c.get("status") == "True" for c in st.get("conditions") or []
            ):
                continue
            pods = self._owned("pods", job)
            succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
            failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
            active = [p for p in pods if self._active(p)]
            ts = now_iso()
            status: dict[str, Any] = {
                **st,
                "startTime": st.get("startTime", ts),
                "ready": 0,
                "terminating": 0,
            }
            status.update({k: v for k, v in (("succeeded", succeeded), ("failed", failed)) if v})
            if succeeded:
                status.update(
                    active=0,
                    completionTime=ts,
                    conditions=_job_conditions(ts, ("SuccessCriteriaMet", "Complete"), "CompletionsReached",
                                               "Reached expected number of succeeded pods"),
                )  # fmt: skip
                status.pop("active")
                self.event(job, "Completed", "Job completed", component="job-controller")
            elif self._past_backoff_limit(job, pods, failed):
                for p in active:
                    self.store.delete(self.res["pods"], p["metadata"]["namespace"], p["metadata"]["name"])
                message = "Job has reached the specified backoff limit"
                status.pop("active", None)
                status["conditions"] = _job_conditions(
                    ts, ("FailureTarget", "Failed"), "BackoffLimitExceeded", message
                )
                self.event(job, "BackoffLimitExceeded", message, "Warning", component="job-controller")
            elif not active and failed and not self._retry_due(job, failed):
                status["active"] = 0
            elif not active:
                self._new_pod(job, job["spec"]["template"])
                status["active"] = 1
            else:
                status["active"] = len(active)
            if job.get("status") != status:
                self.store.update(
                    self.res["jobs"], {**job, "status": status}, subresource="status", force=True
                )

    @staticmethod
    def _past_backoff_limit(job: dict[str, Any], pods: list[dict[str, Any]], failed: int) -> bool:
        """More pods failed than ``backoffLimit`` — or, for pods restarted in place (``OnFailure``), their
        containers restarted that often."""
        limit = int(job["spec"].get("backoffLimit", 6))
        restarts = sum(
            int(c.get("restartCount", 0))
            for p in pods
            if (p.get("status") or {}).get("phase") in ("Running", "Pending")
            for c in (p.get("status") or {}).get("containerStatuses") or []
        )
        return failed > limit or (restarts >= limit if limit else restarts > 0)

    def _retry_due(self, job: dict[str, Any], failed: int) -> bool:
        """Whether a failed Job's next pod may start: the controller's back-off, 10 s doubling per
        failure (at most 6 min)."""
        key = (job["metadata"]["uid"], failed)
        now = time.monotonic()
        due = self._job_retry.setdefault(key, now + self.s(min(10.0 * 2 ** (failed - 1), 360.0)))
        if now >= due:
            return True
        self.wake_at(due)
        return False

    # ---- scheduling -----------------------------------------------------------------------------------

    def schedule(self) -> None:
        nodes = self.managed_nodes()
        pods = self.pods()
        for pod in pods:
            if pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                continue
            placed = [p for p in self.pods() if p["spec"].get("nodeName") and self._active(p)]
            node = self._pick(pod, nodes, placed)
            if node is None:
                conds = pod.get("status", {}).get("conditions", [])
                if not any(c["type"] == "PodScheduled" and c["status"] == "False" for c in conds):
                    msg = f"0/{len(nodes)} nodes are available: no node satisfies the pod's constraints."
                    self._pod_status(
                        pod,
                        {
                            "phase": "Pending",
                            "conditions": [
                                {
                                    "type": "PodScheduled",
                                    "status": "False",
                                    "reason": "Unschedulable",
                                    "message": msg,
                                    "lastTransitionTime": now_iso(),
                                }
                            ],
                        },
                    )
                    self.event(pod, "FailedScheduling", msg, "Warning", component="default-scheduler")
                continue
            name = node["metadata"]["name"]
            new = copy.deepcopy(pod)
            new["spec"]["nodeName"] = name
            self.store.update(self.res["pods"], new, subresource="binding", force=True)
            fresh = self.store.get(self.res["pods"], pod["metadata"]["namespace"], pod["metadata"]["name"])
            self._pod_status(
                fresh,
                {
                    "phase": "Pending",
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_iso()}
                    ],
                },
            )
            self.event(
                fresh,
                "Scheduled",
                f"Successfully assigned {pod['metadata']['namespace']}/{pod['metadata']['name']} to {name}",
                component="default-scheduler",
            )

    def _pick(
        self, pod: dict[str, Any], nodes: list[dict[str, Any]], placed: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        spec = pod["spec"]
        ns = pod["metadata"]["namespace"]
        affinity = spec.get("affinity") or {}
        anti = affinity.get("podAntiAffinity") or {}
        candidates = []
        for node in nodes:
            if node["spec"].get("unschedulable") or not self._node_eligible(spec, node):
                continue
            name = node["metadata"]["name"]
            on_node = [
                p for p in placed if p["spec"]["nodeName"] == name and p["metadata"]["namespace"] == ns
            ]
            if any(
                any(
                    match_labels(term.get("labelSelector"), p["metadata"].get("labels") or {})
                    for p in on_node
                )
                for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []
            ):
                continue
            ok = True
            for c in spec.get("topologySpreadConstraints") or []:
                if c.get("whenUnsatisfiable", "DoNotSchedule") != "DoNotSchedule":
                    continue
                skew = self._skew(c, ns, nodes, placed, spec, name)
                if skew > int(c.get("maxSkew", 1)):
                    ok = False
            if ok:
                candidates.append(node)
        if not candidates:
            return None

        def score(node: dict[str, Any]) -> tuple[float, float]:
            name = node["metadata"]["name"]
            on_node = [p for p in placed if p["spec"]["nodeName"] == name]
            s = 0.0
            for term in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
                t = term["podAffinityTerm"]
                if any(
                    p["metadata"]["namespace"] == ns
                    and match_labels(t.get("labelSelector"), p["metadata"].get("labels") or {})
                    for p in on_node
                ):
                    s -= term.get("weight", 1)
            for c in spec.get("topologySpreadConstraints") or []:
                if c.get("whenUnsatisfiable") == "ScheduleAnyway":
                    s -= self._skew(c, ns, nodes, placed, spec, name)
            same_owner = [
                p
                for p in on_node
                if p["metadata"].get("ownerReferences") == pod["metadata"].get("ownerReferences")
            ]
            return (s - 5 * len(same_owner), -len(on_node) + random.random() * 0.1)

        return max(candidates, key=score)

    def _skew(
        self,
        c: dict[str, Any],
        ns: str,
        nodes: list[dict[str, Any]],
        placed: list[dict[str, Any]],
        spec: dict[str, Any],
        target: str,
    ) -> int:
        key = c.get("topologyKey", "kubernetes.io/hostname")
        eligible = [
            n for n in nodes if self._node_eligible(spec, n) and key in (n["metadata"].get("labels") or {})
        ]
        counts = {n["metadata"]["labels"][key]: 0 for n in eligible}
        node_domain = {n["metadata"]["name"]: n["metadata"]["labels"][key] for n in eligible}
        for p in placed:
            if p["metadata"]["namespace"] == ns and match_labels(
                c.get("labelSelector"), p["metadata"].get("labels") or {}
            ):
                dom = node_domain.get(p["spec"]["nodeName"])
                if dom is not None:
                    counts[dom] += 1
        if target not in node_domain:
            return 0
        counts[node_domain[target]] += 1
        return max(counts.values()) - min(counts.values()) if counts else 0

    # ---- kubelet --------------------------------------------------------------------------------------

    def _pod_status(self, pod: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        status = copy.deepcopy(pod.get("status") or {})
        conds = {c["type"]: c for c in status.get("conditions", [])}
        for c in patch.pop("conditions", []):
            prev = conds.get(c["type"])
            if prev and prev["status"] == c["status"]:
                c["lastTransitionTime"] = prev.get("lastTransitionTime", c.get("lastTransitionTime"))
            conds[c["type"]] = {**(prev or {}), **c}
        status.update(patch)
        if conds:
            status["conditions"] = list(conds.values())
        fresh = self.store.find(self.res["pods"], pod["metadata"]["namespace"], pod["metadata"]["name"])
        if fresh is None:
            return pod
        return self.store.update(
            self.res["pods"], {**fresh, "status": status}, subresource="status", force=True
        )

    def _set_pod_ready(self, pod: dict[str, Any], ready: bool) -> None:
        val = "True" if ready else "False"
        ts = now_iso()
        statuses = copy.deepcopy(pod.get("status", {}).get("containerStatuses", []))
        for cs in statuses:
            cs["ready"] = ready
        self._pod_status(
            pod,
            {
                "containerStatuses": statuses,
                "conditions": [
                    {"type": "ContainersReady", "status": val, "lastTransitionTime": ts},
                    {"type": "Ready", "status": val, "lastTransitionTime": ts},
                ],
            },
        )

    def _pod_ip(self, node: str) -> str:
        nodes = [n["metadata"]["name"] for n in self.store.list(self.res["nodes"])]
        idx = nodes.index(node) if node in nodes else 0
        seq = self._ip_seq.get(node, 1) + 1
        self._ip_seq[node] = seq if seq < 254 else 2
        return f"10.42.{idx}.{seq}"

    async def kubelets(self) -> None:
        for pod in self.pods():
            node = pod["spec"].get("nodeName")
            if not node or not self.node_alive(node):
                continue
            key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            if pod["metadata"].get("deletionTimestamp"):
                if key not in self._stopping:
                    self._stopping.add(key)
                    task = asyncio.ensure_future(self._terminate(pod, key))
                    self._terminating.add(task)
                    task.add_done_callback(self._terminating.discard)
                continue
            phase = pod.get("status", {}).get("phase", "Pending")
            if phase == "Pending" and not pod.get("status", {}).get("startTime"):
                ts = now_iso()
                containers = pod["spec"].get("containers", [])
                is_job = pod["spec"].get("restartPolicy") in ("Never", "OnFailure")
                if any(self.images.missing(c.get("image", "")) for c in containers):
                    self._cannot_pull(pod, key, ts)
                    continue
                fresh = self._pod_status(
                    pod,
                    {
                        "phase": "Running",
                        "podIP": self._pod_ip(node),
                        "podIPs": [],
                        "startTime": ts,
                        "hostIP": self._host_ip(node),
                        "containerStatuses": [
                            {
                                "name": c["name"],
                                "image": c.get("image", ""),
                                "imageID": self.images.image_id(c.get("image", "")),
                                "ready": False,
                                "restartCount": 0,
                                "started": True,
                                "state": {"running": {"startedAt": ts}},
                            }
                            for c in containers
                        ],
                        "conditions": [
                            {"type": "Initialized", "status": "True", "lastTransitionTime": ts},
                            {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts},
                            {"type": "ContainersReady", "status": "False", "lastTransitionTime": ts},
                            {"type": "Ready", "status": "False", "lastTransitionTime": ts},
                        ],
                    },
                )
                fresh["status"]["podIPs"] = [{"ip": fresh["status"]["podIP"]}]
                for hook in self.on_pod_start:
                    await hook(fresh)
                self.event(
                    fresh,
                    "Started",
                    f"Started container {containers[0]['name'] if containers else ''}",
                    component="kubelet",
                )
                fault = (fresh["metadata"].get("annotations") or {}).get(FAULT_ANNOTATION)
                if fault in ("crash", "oom"):
                    job: Any = self._crash_loop(fresh, fault)
                else:
                    job = self._run_to_completion(fresh, key) if is_job else self._readiness(fresh, key)
                self._probe_tasks[key] = asyncio.ensure_future(job)
            elif (
                phase == "Running"
                and key not in self._probe_tasks
                and pod["spec"].get("restartPolicy") not in ("Never", "OnFailure")
            ):
                # The node came back: its kubelet restarts the pods it still runs and probes them again.
                for hook in self.on_pod_start:
                    await hook(pod)
                self._probe_tasks[key] = asyncio.ensure_future(self._readiness(pod, key))

    def _cannot_pull(self, pod: dict[str, Any], key: str, ts: str) -> None:
        """A kubelet that cannot pull the image: the pod stays Pending, its container waiting —
        ``ErrImagePull`` at first, ``ImagePullBackOff`` once it has tried again."""
        containers = pod["spec"].get("containers", [])
        image = next(c.get("image", "") for c in containers if self.images.missing(c.get("image", "")))

        def waiting(reason: str, message: str) -> list[dict[str, Any]]:
            return [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"waiting": {"reason": reason, "message": message}},
                }
                for c in containers
            ]

        conds = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts},
            {"type": "Ready", "status": "False", "lastTransitionTime": ts, "reason": "ContainersNotReady"},
        ]
        pulled = f'failed to pull image "{image}": not found'
        status = {"startTime": ts, "containerStatuses": waiting("ErrImagePull", pulled), "conditions": conds}
        fresh = self._pod_status(pod, {**status, "hostIP": self._host_ip(pod["spec"]["nodeName"])})
        self.event(
            fresh, "Failed", f'Failed to pull image "{image}": not found', "Warning", component="kubelet"
        )

        async def back_off() -> None:
            await asyncio.sleep(self.s(2.0))
            now = self.store.find(self.res["pods"], pod["metadata"]["namespace"], pod["metadata"]["name"])
            if now is not None:
                said = f'Back-off pulling image "{image}"'
                self._pod_status(now, {"containerStatuses": waiting("ImagePullBackOff", said)})
                self.event(now, "BackOff", said, "Warning", component="kubelet")

        self._probe_tasks[key] = asyncio.ensure_future(back_off())

    def _set_containers(
        self, pod: dict[str, Any], change: Callable[[dict[str, Any]], None], **status: Any
    ) -> None:
        statuses = copy.deepcopy(pod["status"].get("containerStatuses", []))
        for cs in statuses:
            change(cs)
        self._pod_status(pod, {"containerStatuses": statuses, **status})

    async def _crash_loop(self, pod: dict[str, Any], fault: str) -> None:
        """A container that exits (``crash``: exit 1) or goes over its memory limit (``oom``: OOMKilled,
        137), restarted by the kubelet with a growing back-off — ``CrashLoopBackOff`` between runs."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        reason, code = ("OOMKilled", 137) if fault == "oom" else ("Error", 1)
        restarts = 0
        while True:
            await asyncio.sleep(self.s(2.0))  # it runs for a moment, then dies
            now = self.store.find(self.res["pods"], ns, name)
            if now is None or now["metadata"].get("deletionTimestamp"):
                return
            restarts += 1
            ended = now_iso()
            container = now["spec"]["containers"][0]["name"]
            self.logs.write(ns, name, container, CRASH_LINES[reason])
            self.logs.ended(ns, name, container)
            died = functools.partial(_died, reason=reason, code=code, restarts=restarts, ended=ended)
            not_ready = [
                {"type": "ContainersReady", "status": "False", "lastTransitionTime": ended},
                {"type": "Ready", "status": "False", "lastTransitionTime": ended},
            ]
            self._set_containers(now, died, conditions=not_ready)
            self.event(now, "BackOff", "Back-off restarting failed container", "Warning", component="kubelet")
            await asyncio.sleep(self.s(min(2.0**restarts, 10.0)))
            now = self.store.find(self.res["pods"], ns, name)
            if now is None or now["metadata"].get("deletionTimestamp"):
                return
            self.logs.started(ns, name, container)
            self.logs.write(ns, name, container, "docfast starting")
            self._set_containers(
                now, lambda cs: cs.update(started=True, state={"running": {"startedAt": now_iso()}})
            )

    def _host_ip(self, node: str) -> str:
        n = self.store.find(self.res["nodes"], None, node)
        for a in (n or {}).get("status", {}).get("addresses", []):
            if a["type"] == "InternalIP":
                return str(a["address"])
        return ""

    async def _run_to_completion(self, pod: dict[str, Any], key: str) -> None:
        """A pod whose containers run to their end (lab/kube/runtime.py); its phase is what they did:
        ``Succeeded`` when every one exited 0, ``Failed`` when one did not (``Never``) — ``OnFailure``
        restarts a failed container after the kubelet's back-off (10 s, doubling, at most 5 min)."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        try:
            exits = await asyncio.gather(
                *(self._run_container(pod, c) for c in pod["spec"].get("containers", []))
            )
        finally:
            self._probe_tasks.pop(key, None)
        fresh = self.store.find(self.res["pods"], ns, name)
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return
        ok = all(e.code == 0 for e in exits)
        ts = now_iso()
        reason = "PodCompleted" if ok else "PodFailed"
        self._pod_status(
            fresh,
            {
                "phase": "Succeeded" if ok else "Failed",
                "conditions": [
                    {"type": "PodReadyToStartContainers", "status": "False", "lastTransitionTime": ts},
                    {
                        "type": "Initialized",
                        "status": "True",
                        "lastTransitionTime": ts,
                        **({"reason": "PodCompleted"} if ok else {}),
                    },
                    {"type": "Ready", "status": "False", "lastTransitionTime": ts, "reason": reason},
                    {
                        "type": "ContainersReady",
                        "status": "False",
                        "lastTransitionTime": ts,
                        "reason": reason,
                    },
                ],
            },
        )

    async def _run_container(self, pod: dict[str, Any], container: dict[str, Any]) -> Exit:
        ns, name, cname = pod["metadata"]["namespace"], pod["metadata"]["name"], container["name"]
        restarts = 0
        while True:
            started = now_iso()
            result = await self.runtime.run(pod, container)
            self.logs.ended(ns, name, cname)
            fresh = self.store.find(self.res["pods"], ns, name)
            if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                return result
            terminated = {
                "exitCode": result.code,
                "reason": result.reason,
                **({"message": result.message} if result.message else {}),
                "startedAt": started,
                "finishedAt": now_iso(),
            }
            if result.code == 0 or fresh["spec"].get("restartPolicy") == "Never":
                self._container_state(
                    fresh, cname, ready=False, started=False, state={"terminated": terminated}
                )
                return result
            restarts += 1
            back_off = min(10.0 * 2 ** (restarts - 1), 300.0)
            uid = fresh["metadata"].get("uid", "")
            message = f"back-off {back_off:g}s restarting failed container={cname} pod={name}_{ns}({uid})"
            self._container_state(
                fresh,
                cname,
                ready=False,
                started=False,
                restartCount=restarts,
                lastState={"terminated": terminated},
                state={"waiting": {"reason": "CrashLoopBackOff", "message": message}},
            )
            said = f"Back-off restarting failed container {cname} in pod {name}_{ns}({uid})"
            self.event(fresh, "BackOff", said, "Warning", component="kubelet")
            await asyncio.sleep(self.s(back_off))
            fresh = self.store.find(self.res["pods"], ns, name)
            if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                return result
            self.logs.started(ns, name, cname)
            self._container_state(fresh, cname, started=True, state={"running": {"startedAt": now_iso()}})

    def _container_state(self, pod: dict[str, Any], container: str, **fields: Any) -> None:
        self._set_containers(pod, lambda cs: cs.update(fields) if cs["name"] == container else None)

    async def _readiness(self, pod: dict[str, Any], key: str) -> None:
        """Readiness per the first container's probe: period, failure and success thresholds."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        probe = next(
            (c.get("readinessProbe") for c in pod["spec"].get("containers", []) if c.get("readinessProbe")),
            None,
        )
        period = float((probe or {}).get("periodSeconds", 10))
        fail_n = int((probe or {}).get("failureThreshold", 3))
        ok_n = int((probe or {}).get("successThreshold", 1))
        await asyncio.sleep(self.s(float((probe or {}).get("initialDelaySeconds", 0))) + self.s(0.5))
        fails = oks = 0
        try:
            while True:
                cur = self.store.find(self.res["pods"], ns, name)
                if cur is None or cur["metadata"].get("deletionTimestamp"):
                    return
                if not self.node_alive(cur["spec"]["nodeName"]):
                    return  # the kubelet is gone with its node; resumed when the node returns
                result = self.probe(cur, probe or {})
                ok = True if result is None else await result
                if ok:
                    oks, fails = oks + 1, 0
                    if oks >= ok_n and not pod_ready(cur):
                        self._set_pod_ready(cur, True)
                else:
                    oks, fails = 0, fails + 1
                    if fails >= fail_n and pod_ready(cur):
                        self._set_pod_ready(cur, False)
                        self.event(cur, "Unhealthy", "Readiness probe failed", "Warning", component="kubelet")
                await asyncio.sleep(self.s(period) if probe else self.s(30))
        finally:
            self._probe_tasks.pop(key, None)

    async def _terminate(self, pod: dict[str, Any], key: str) -> None:
        try:
            task = self._probe_tasks.pop(key, None)
            if task:
                task.cancel()
            for hook in self.on_pod_stop:
                await hook(pod)
            grace = pod["metadata"].get("deletionGracePeriodSeconds", 30)
            await asyncio.sleep(self.s(min(float(grace or 0), 1.0)))
            node = pod["spec"].get("nodeName")
            if node and not self.node_alive(node):
                return  # the node died meanwhile; the deletion finishes when it returns
            self.store.finish_graceful_delete(
                self.res["pods"], pod["metadata"]["namespace"], pod["metadata"]["name"]
            )
        finally:
            self._stopping.discard(key)

    # ---- services and budgets -------------------------------------------------------------------------

    def endpoints(self) -> None:
        pods = self.pods()
        for svc in self.store.list(self.res["services"]):
            sel = svc["spec"].get("selector")
            if not sel:
                continue
            ns = svc["metadata"]["namespace"]
            ready: list[dict[str, Any]] = []
            not_ready: list[dict[str, Any]] = []
            for p in pods:
                if p["metadata"]["namespace"] != ns or not p.get("status", {}).get("podIP"):
                    continue
                if not all((p["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items()):
                    continue
                addr = {
                    "ip": p["status"]["podIP"],
                    "nodeName": p["spec"].get("nodeName"),
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": ns,
                        "name": p["metadata"]["name"],
                        "uid": p["metadata"]["uid"],
                    },
                }
                (ready if pod_ready(p) and not p["metadata"].get("deletionTimestamp") else not_ready).append(
                    addr
                )
            ports = [
                {
                    "name": pt.get("name", ""),
                    "port": int(pt.get("targetPort", pt["port"]))
                    if str(pt.get("targetPort", pt["port"])).isdigit()
                    else pt["port"],
                    "protocol": pt.get("protocol", "TCP"),
                }
                for pt in svc["spec"].get("ports", [])
            ]
            subset: dict[str, Any] = {"ports": ports}
            if ready:
                subset["addresses"] = sorted(ready, key=lambda a: a["ip"])
            if not_ready:
                subset["notReadyAddresses"] = sorted(not_ready, key=lambda a: a["ip"])
            subsets = [subset] if ready or not_ready else []
            ep_res = self.res["endpoints"]
            cur = self.store.find(ep_res, ns, svc["metadata"]["name"])
            body = {
                "metadata": {
                    "name": svc["metadata"]["name"],
                    "namespace": ns,
                    "labels": svc["metadata"].get("labels") or {},
                },
                "subsets": subsets,
            }
            if cur is None and not self.store.terminating(ns):
                self.store.create(ep_res, body)
            elif cur is not None and cur.get("subsets", []) != subsets:
                self.store.update(ep_res, {**cur, "subsets": subsets}, force=True)

    def pdbs(self) -> None:
        pods = self.pods()
        for pdb in self.store.list(self.res["poddisruptionbudgets"]):
            status = pdb_status(pdb, pods)
            old = (pdb.get("status") or {}).get("conditions") or []
            if old and old[0]["status"] == status["conditions"][0]["status"]:
                status["conditions"][0]["lastTransitionTime"] = old[0]["lastTransitionTime"]
            if pdb.get("status") != status:
                self.store.update(
                    self.res["poddisruptionbudgets"],
                    {**pdb, "status": status},
                    subresource="status",
                    force=True,
                )


def pdb_status(pdb: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    ns = pdb["metadata"]["namespace"]
    matching = [
        p
        for p in pods
        if p["metadata"]["namespace"] == ns
        and match_labels(pdb["spec"].get("selector"), p["metadata"].get("labels") or {})
        and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
    ]
    healthy = sum(1 for p in matching if pod_ready(p) and not p["metadata"].get("deletionTimestamp"))
    expected = len([p for p in matching if not p["metadata"].get("deletionTimestamp")]) or len(matching)
    spec = pdb["spec"]
    if "minAvailable" in spec:
        desired = resolve_int_or_percent(spec["minAvailable"], expected, True)
    elif "maxUnavailable" in spec:
        desired = max(0, expected - resolve_int_or_percent(spec["maxUnavailable"], expected, False))
    else:
        desired = expected
    allowed = max(0, healthy - desired)
    ts = now_iso()
    return {
        "observedGeneration": pdb["metadata"].get("generation", 1),
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": allowed,
        "conditions": [
            {
                "type": "DisruptionAllowed",
                "status": "True" if allowed > 0 else "False",
                "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
                "message": "",
                "lastTransitionTime": ts,
                "observedGeneration": pdb["metadata"].get("generation", 1),
            }
        ],
    }


def _job_conditions(ts: str, types: tuple[str, ...], reason: str, message: str) -> list[dict[str, Any]]:
    return [
        {
            "type": t,
            "status": "True",
            "lastProbeTime": ts,
            "lastTransitionTime": ts,
            "reason": reason,
            "message": message,
        }
        for t in types
    ]


def _owner(obj: dict[str, Any], controller: bool = False) -> dict[str, Any]:
    ref = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
    }
    if controller:
        ref.update(controller=True, blockOwnerDeletion=True)
    return ref


def now_micro() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
