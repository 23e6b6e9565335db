"""The system-upgrade-controller's behaviour on ``upgrade.cattle.io/v1`` Plans, emulated in the twin.

The lab has no controller binary and runs no upgrade Jobs: this loop does what the controller and its
``rancher/k3s-upgrade`` Jobs do to the cluster, in their order (github.com/rancher/system-upgrade-controller):

* a Plan is validated (``upgrade.image`` and one of ``version``/``channel``; a channel cannot be resolved on
  loopback, so only ``version`` resolves) — conditions ``Validated``, ``LatestResolved``, ``Complete``,
  ``status.latestVersion``, ``status.latestHash`` (sha224 of the spec);
* its nodes are those its ``nodeSelector`` selects; a node is done when it carries the label
  ``plan.upgrade.cattle.io/<plan>`` = the latest hash; at most ``concurrency`` nodes are in
  ``status.applying`` at once, in name order;
* ``prepare: {args: [prepare, <other plan>]}`` waits until that Plan is Complete (what the k3s-upgrade
  image's ``prepare`` does);
* per node: cordon (``cordon`` or ``drain``), drain through the Eviction API (PodDisruptionBudgets honoured,
  DaemonSet pods left) until ``drain.timeout`` — a drain that times out fails the Job: the Plan's Complete
  condition says so and the node stays cordoned, as the real controller leaves it —, the K3s upgrade (the
  lab's installer path, :func:`lab.k3s.reinstall`), then uncordon and the label.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from typing import Any

from console.drain import evictable
from lab import k3s
from lab.kube.cluster import match_labels
from lab.kube.errors import KubeError
from lab.kube.store import now_iso

log = logging.getLogger("lab.suc")
NAMESPACE = "system-upgrade"
LABEL = "plan.upgrade.cattle.io/"


def _duration_s(value: Any) -> float | None:
    """``drain.timeout``: an int is nanoseconds, a string a Go duration (``90s``, ``5m``, ``1h30m``)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value / 1e9
    total, units = 0.0, {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(value))
    if not parts:
        return None
    for num, unit in parts:
        total += float(num) * units[unit]
    return total


class SucTwin:
    def __init__(self, kube: Any, config: Any, speed: float) -> None:
        self.kube = kube
        self.config = config
        self.speed = speed
        reg = kube.registry
        self.plans = reg.get("upgrade.cattle.io", "v1", "plans")
        self.nodes = reg.get("", "v1", "nodes")
        self.pods = reg.get("", "v1", "pods")
        self.jobs: dict[tuple[str, str], asyncio.Task[None]] = {}
        # (plan, hash) → (the node, why): a failed Job stays failed (and its node in status.applying, as
        # the controller keeps a Job that did not complete) until the Plan changes.
        self.failed: dict[tuple[str, str], tuple[str, str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        kube.store.listeners.append(self._on_change)

    def _on_change(self, res: Any, _type: str, _obj: dict[str, Any]) -> None:
        if res.plural in ("plans", "nodes", "deployments"):
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        for task in [self._task, *self.jobs.values()]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _loop(self) -> None:
        while True:
            try:
                self.reconcile()
            except Exception:  # a bad Plan never stops the controller
                log.exception("plan reconcile failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.2, self.speed))

    # ---- the Plan ----------------------------------------------------------------------------------

    def running(self) -> bool:
        """The controller's Deployment has a ready replica (a controller that does not run does nothing)."""
        deploy = self.kube.registry.get("apps", "v1", "deployments")
        dep = self.kube.store.find(deploy, NAMESPACE, "system-upgrade-controller")
        return dep is not None and int((dep.get("status") or {}).get("readyReplicas", 0)) > 0

    def reconcile(self) -> None:
        if not self.running():
            return  # Jobs already started go on, as Jobs do without their controller
        for plan in self.kube.store.list(self.plans, NAMESPACE):
            self._plan(plan)

    @staticmethod
    def _hash(plan: dict[str, Any]) -> str:
        return hashlib.sha224(json.dumps(plan.get("spec") or {}, sort_keys=True).encode()).hexdigest()

    def selected(self, plan: dict[str, Any]) -> list[dict[str, Any]]:
        selector = (plan.get("spec") or {}).get("nodeSelector") or {}
        nodes = self.kube.store.list(self.nodes)
        return sorted(
            (n for n in nodes if match_labels(selector, n["metadata"].get("labels") or {})),
            key=lambda n: n["metadata"]["name"],
        )

    def complete(self, name: str) -> bool:
        plan = self.kube.store.find(self.plans, NAMESPACE, name)
        conds = ((plan or {}).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Complete" and c.get("status") == "True" for c in conds)

    def _plan(self, plan: dict[str, Any]) -> None:
        spec, name = plan.get("spec") or {}, plan["metadata"]["name"]
        digest = self._hash(plan)
        valid = bool((spec.get("upgrade") or {}).get("image")) and bool(
            spec.get("version") or spec.get("channel")
        )
        resolved = bool(spec.get("version"))
        todo = [
            n["metadata"]["name"]
            for n in self.selected(plan)
            if (n["metadata"].get("labels") or {}).get(LABEL + name) != digest
        ]
        applying = [node for (p, node) in self.jobs if p == name]
        failed = self.failed.get((name, digest))
        why = failed[1] if failed else None
        if failed and failed[0] not in applying:
            applying.append(failed[0])
        if not valid:
            done, reason, message = (
                False,
                "Error",
                "spec.upgrade.image and spec.version or spec.channel are required",
            )
        elif not resolved:
            done, reason, message = (
                False,
                "Error",
                "the channel cannot be resolved from the lab (loopback only)",
            )
        elif why:
            done, reason, message = False, "JobFailed", why
        else:
            done, reason, message = not todo, "" if not todo else "Applying", ""
        waits = self._prepare_waits(spec)
        if valid and resolved and not why and todo and not waits:
            room = max(1, int(spec.get("concurrency") or 1)) - len(applying)
            for node in [n for n in todo if n not in applying][: max(0, room)]:
                applying.append(node)
                self.jobs[(name, node)] = asyncio.ensure_future(self._job(name, node, digest, spec))
        if waits and todo and not why:
            reason, message = "Waiting", f"waiting for plan {waits} to complete (prepare)"
        status = {
            "conditions": [
                self._cond("Validated", valid, "" if valid else "Error", "" if valid else message),
                self._cond("LatestResolved", resolved, "Version" if resolved else "Error", ""),
                self._cond("Complete", done, reason, message),
            ],
            "latestVersion": spec.get("version", ""),
            "latestHash": digest,
            **({"applying": sorted(applying)} if applying else {}),
        }
        old = plan.get("status") or {}
        if self._comparable(old) != self._comparable(status):
            for c, o in zip(status["conditions"], old.get("conditions") or [], strict=False):
                if (c["type"], c["status"]) == (o.get("type"), o.get("status")):
                    c["lastUpdateTime"] = o.get("lastUpdateTime", c["lastUpdateTime"])
            self.kube.store.update(self.plans, {**plan, "status": status}, subresource="status", force=True)

    def _prepare_waits(self, spec: dict[str, Any]) -> str | None:
        args = (spec.get("prepare") or {}).get("args") or []
        if len(args) >= 2 and args[0] == "prepare" and not self.complete(str(args[1])):
            return str(args[1])
        return None

    @staticmethod
    def _cond(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": kind,
            "status": "True" if ok else "False",
            "lastUpdateTime": now_iso(),
            **({"reason": reason} if reason else {}),
            **({"message": message} if message else {}),
        }

    @staticmethod
    def _comparable(status: dict[str, Any]) -> Any:
        conds = [
            {k: v for k, v in c.items() if k != "lastUpdateTime"} for c in status.get("conditions") or []
        ]
        return {**status, "conditions": conds}

    # ---- one node's Job ----------------------------------------------------------------------------

    async def _job(self, plan: str, node: str, digest: str, spec: dict[str, Any]) -> None:
        try:
            cordon = bool(spec.get("cordon") or spec.get("drain"))
            if cordon:
                self._schedulable(node, False)
            if spec.get("drain") is not None:
                await self._drain(node, _duration_s(spec["drain"].get("timeout")))
            obj = self.kube.store.find(self.nodes, None, node)
            args = json.loads((obj["metadata"].get("annotations") or {}).get("k3s.io/node-args") or "[]")
            role = args[0] if args else "agent"
            await k3s.reinstall(
                self.kube,
                self.config,
                node,
                role,
                args[1:],
                {"INSTALL_K3S_VERSION": spec["version"]},
                self.speed,
            )
            if node in self.kube.dataplane.k3s_stopped:  # the upgrade container waits for k3s to run again
                raise k3s.InstallError(f"k3s did not start again at {spec['version']}")
            if cordon:
                self._schedulable(node, True)
            obj = self.kube.store.find(self.nodes, None, node)
            labels = {**(obj["metadata"].get("labels") or {}), LABEL + plan: digest}
            self.kube.store.update(
                self.nodes, {**obj, "metadata": {**obj["metadata"], "labels": labels}}, force=True
            )
        except (k3s.InstallError, TimeoutError) as exc:
            self.failed[(plan, digest)] = (node, f"the Job on {node} failed: {exc}"[:400])
            log.warning("plan %s on %s failed: %s", plan, node, exc)
        finally:
            self.jobs.pop((plan, node), None)
            self._wake.set()

    def _schedulable(self, node: str, yes: bool) -> None:
        obj = self.kube.store.find(self.nodes, None, node)
        spec = {k: v for k, v in (obj.get("spec") or {}).items() if k != "unschedulable"}
        if not yes:
            spec["unschedulable"] = True
        self.kube.store.update(self.nodes, {**obj, "spec": spec}, force=True)

    def _evictable(self, node: str) -> list[dict[str, Any]]:
        """What ``kubectl drain --ignore-daemonsets`` evicts (console/drain.py's rule), the terminating
        ones included: the drain waits for them to go."""
        pods = self.kube.store.list(self.pods)
        keys = set(evictable(pods, node))
        return [
            p
            for p in pods
            if (p["metadata"]["namespace"], p["metadata"]["name"]) in keys
            or ((p.get("spec") or {}).get("nodeName") == node and p["metadata"].get("deletionTimestamp"))
        ]

    async def _drain(self, node: str, timeout: float | None) -> None:
        """``kubectl drain --ignore-daemonsets``: evict until none is left; TimeoutError after ``timeout``."""
        evict = self.kube.api.subresource_hooks["eviction"]
        deadline = time.monotonic() + (timeout if timeout is not None else 3600.0)
        while True:
            left = self._evictable(node)
            if not left:
                return
            for p in left:
                if p["metadata"].get("deletionTimestamp"):
                    continue
                with contextlib.suppress(KubeError):  # 429: a budget holds it; try again
                    await evict(p["metadata"]["namespace"], p["metadata"]["name"], {})
            if time.monotonic() > deadline:
                names = ", ".join(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in left[:3])
                raise TimeoutError(f"drain did not complete within {timeout:g} s (left: {names})")
            await asyncio.sleep(max(0.2, self.speed))
