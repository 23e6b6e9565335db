"""``--route suc``: the upgrade's per-node work left to system-upgrade-controller (SUC) Plans.

Two Plans in ``system-upgrade`` (the controller's namespace), as the K3s docs write them:

* ``k3s-server`` selects the control plane (``node-role.kubernetes.io/control-plane In [true]``) and
  cordons it;
* ``k3s-agent`` selects the rest, waits for the server Plan (``prepare: [prepare, k3s-server]``, what the
  ``rancher/k3s-upgrade`` image does), ``concurrency: 1``, and cordons and drains each node with
  ``--timeout`` (``drain.timeout``; ``ignoreDaemonSets``, ``deleteEmptydirData``).

Both carry ``version`` (no channel: the operator chose the version) and select only the nodes this run
changes (``kubernetes.io/hostname In [...]``).  The run follows them to completion: a node is done when it
carries ``plan.upgrade.cattle.io/<plan>`` = the Plan's ``status.latestHash`` and runs the target Ready and
schedulable; a Plan whose ``Complete`` condition says a Job failed stops the run (the node in
``status.applying`` is rolled back over SSH as on the ssh route, and the Plans are deleted, so the
controller starts nothing more).  After a success the Plans are deleted too: pinned to one version and
one set of nodes they would only mislead a later run (the journal and the report keep what was applied;
the nodes keep the controller's ``plan.upgrade.cattle.io/<plan>`` labels).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from actions.upgrade_node import journal_install
from console.clients.kube import TRANSIENT, KubeError, answered, request
from console.errors import ActionFailed
from console.events import Check, Log, StepFinished, StepStarted
from console.k3s import node_version
from console.kubeobj import is_ready
from console.runner import Run

if TYPE_CHECKING:
    from actions.upgrade import Upgrade

NAMESPACE = "system-upgrade"
GROUP = "/apis/upgrade.cattle.io/v1"
PLANS = f"{GROUP}/namespaces/{NAMESPACE}/plans"
LABEL = "plan.upgrade.cattle.io/"
SERVER_PLAN, AGENT_PLAN = "k3s-server", "k3s-agent"
IMAGE = "rancher/k3s-upgrade"
CONTROLLER = "system-upgrade-controller"
NODE_TIMEOUT_S = 600.0


async def controller_check(api: Any) -> Check:
    """SUC is installed and runs: its Plan kind is served and its Deployment has an available replica."""
    try:
        await request(
            api, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/plans.upgrade.cattle.io"
        )
        dep = await request(api, "GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{CONTROLLER}")
    except KubeError as exc:
        if exc.status != 404:
            raise
        return Check(
            "suc-installed",
            False,
            True,
            "system-upgrade-controller is not installed (no plans.upgrade.cattle.io or no "
            f"{NAMESPACE}/{CONTROLLER} Deployment): apply its manifest first, or use --route ssh",
        )
    available = int((dep.get("status") or {}).get("availableReplicas", 0))
    if available < 1:
        why = f"{NAMESPACE}/{CONTROLLER} has no available replica: nothing would act on the Plans"
        return Check("suc-installed", False, True, why)
    return Check("suc-installed", True, True, "system-upgrade-controller runs and its Plans are served")


def plans(version: str, servers: list[str], agents: list[str], drain_timeout_s: int) -> list[dict[str, Any]]:
    def selector(role: str, names: list[str]) -> dict[str, Any]:
        op = "In" if role == "server" else "DoesNotExist"
        return {
            "matchExpressions": [
                {
                    "key": "node-role.kubernetes.io/control-plane",
                    "operator": op,
                    **({"values": ["true"]} if op == "In" else {}),
                },
                {"key": "kubernetes.io/hostname", "operator": "In", "values": names},
            ]
        }

    out = []
    if servers:
        out.append(
            {
                "apiVersion": "upgrade.cattle.io/v1",
                "kind": "Plan",
                "metadata": {
                    "name": SERVER_PLAN,
                    "namespace": NAMESPACE,
                    "labels": {"app.kubernetes.io/managed-by": "opsconsole"},
                },
                "spec": {
                    "concurrency": 1,
                    "cordon": True,
                    "nodeSelector": selector("server", servers),
                    "tolerations": [
                        {
                            "key": "node-role.kubernetes.io/control-plane",
                            "operator": "Exists",
                            "effect": "NoSchedule",
                        }
                    ],
                    "serviceAccountName": "system-upgrade",
                    "upgrade": {"image": IMAGE},
                    "version": version,
                },
            }
        )
    if agents:
        spec: dict[str, Any] = {
            "concurrency": 1,
            "cordon": True,
            "drain": {
                "timeout": f"{drain_timeout_s}s",
                "ignoreDaemonSets": True,
                "deleteEmptydirData": True,
                "force": False,
            },
            "nodeSelector": selector("agent", agents),
            "serviceAccountName": "system-upgrade",
            "upgrade": {"image": IMAGE},
            "version": version,
        }
        if servers:
            spec["prepare"] = {"image": IMAGE, "args": ["prepare", SERVER_PLAN]}
        out.append(
            {
                "apiVersion": "upgrade.cattle.io/v1",
                "kind": "Plan",
                "metadata": {
                    "name": AGENT_PLAN,
                    "namespace": NAMESPACE,
                    "labels": {"app.kubernetes.io/managed-by": "opsconsole"},
                },
                "spec": spec,
            }
        )
    return out


async def _apply(api: Any, plan: dict[str, Any]) -> None:
    path = f"{PLANS}/{plan['metadata']['name']}"
    try:
        cur = await request(api, "GET", path)
    except KubeError as exc:
        if exc.status != 404:
            raise
        await request(api, "POST", PLANS, plan)
        return
    body = {**plan, "metadata": {**plan["metadata"], "resourceVersion": cur["metadata"]["resourceVersion"]}}
    await request(api, "PUT", path, body)


async def delete_plans(api: Any, names: list[str]) -> str:
    gone = []
    for name in names:
        try:
            await answered(partial(request, api, "DELETE", f"{PLANS}/{name}"))
            gone.append(name)
        except KubeError as exc:
            if exc.status != 404:
                raise
    return f"Plans {', '.join(gone)} deleted" if gone else "no Plan left to delete"


def _journal(up: Upgrade, run: Run, node: str, names: list[str]) -> None:
    """The node's change, journaled as the ssh route journals it (a rollback puts its version back),
    with the Plans to delete before that, so the controller cannot start it again."""
    step = up.steps[node]
    step.state, up.stopped_at = "upgrading", f"{node} ({step.role})"
    journal_install(run, up.objs[node], step.before, plans=names)


def _failed(plan: dict[str, Any]) -> str | None:
    for c in (plan.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Validated", "LatestResolved") and c.get("reason") in (
            "JobFailed",
            "Error",
        ):
            return str(c.get("message") or c.get("reason"))
    return None


class Follow:
    """One run's Plans: applied phase by phase (the server's, then — after the HA re-check — the agents'),
    each followed until its nodes are done; the Plans deleted at the end, or first thing on any failure."""

    def __init__(self, up: Upgrade, run: Run) -> None:
        self.up, self.run = up, run
        servers = [n for n in up.order if up.steps[n].role == "server"]
        agents = [n for n in up.order if up.steps[n].role != "server"]
        self.docs = {d["metadata"]["name"]: d for d in plans(up.target, servers, agents, up.params.timeout)}
        self.plan_of = {n: SERVER_PLAN for n in servers} | {n: AGENT_PLAN for n in agents}
        self.marks: dict[str, dict[str, float]] = {n: {} for n in up.order}
        self.journaled: set[str] = set()
        self.applied = False

    @property
    def names(self) -> list[str]:
        return list(self.docs)

    async def phase(self, role: str) -> None:
        """Apply the Plan for ``role``'s nodes (if any) and follow it to completion."""
        nodes = [n for n in self.up.order if (self.up.steps[n].role == "server") == (role == "server")]
        if not nodes:
            return
        api, name = await self.run.kube(), SERVER_PLAN if role == "server" else AGENT_PLAN
        if not self.applied:
            self.applied = True
            self.run.applied("plans", "suc-plans", plans=self.names)
        self.run.emit(StepStarted("plans", f"system-upgrade-controller Plan {name} for {self.up.target}"))
        try:
            await answered(partial(_apply, api, self.docs[name]))
            self.run.emit(StepFinished("plans", True, f"{name} applied"))
            await self._until_done(api, name, nodes)
        except BaseException:
            with contextlib.suppress(Exception):  # the controller starts nothing more once they are gone
                await delete_plans(api, self.names)
                self.run.step("rollback", "rolled-back", {"key": "suc-plans"})
            raise

    async def finish(self) -> None:
        """Every Plan done: deleted (pinned to this version, they would only mislead a later run)."""
        self.run.emit(Log("info", await delete_plans(await self.run.kube(), self.names)))
        self.run.step("plans", "superseded", {"key": "suc-plans"})

    async def _until_done(self, api: Any, name: str, nodes: list[str]) -> None:
        deadline = time.monotonic() + NODE_TIMEOUT_S * len(nodes)
        while True:
            if time.monotonic() > deadline:
                raise ActionFailed(f"Plan {name} did not finish in {NODE_TIMEOUT_S * len(nodes):g} s")
            try:
                plan = await request(api, "GET", f"{PLANS}/{name}")
                objs = {n: await request(api, "GET", f"/api/v1/nodes/{n}") for n in nodes}
            except KubeError as exc:
                if exc.status not in TRANSIENT:
                    raise
                await asyncio.sleep(0.5)  # the server restarting: its API does not answer for a while
                continue
            self._failed_job(plan)
            if all([self._node(n, objs[n], plan) for n in nodes]):
                return
            await asyncio.sleep(0.5)

    def _failed_job(self, plan: dict[str, Any]) -> None:
        why = _failed(plan)
        if why is None:
            return
        for n in (plan.get("status") or {}).get("applying") or []:
            if n in self.up.steps and n not in self.journaled:  # its Job ran while the API did not answer
                self.journaled.add(n)
                _journal(self.up, self.run, n, self.names)
            if n in self.up.steps:
                self.up.steps[n].state, self.up.stopped_at = "failed", f"{n} ({self.up.steps[n].role})"
        raise ActionFailed(f"Plan {plan['metadata']['name']}: {why}")

    def _node(self, n: str, obj: dict[str, Any], plan: dict[str, Any]) -> bool:
        """Whether ``n`` is done; journals it as it starts and times its steps (at the poll's 0.5 s)."""
        up, t, status = self.up, self.marks[n], plan.get("status") or {}
        if n in (status.get("applying") or []) and n not in self.journaled:
            self.journaled.add(n)  # before its k3s changes: what a rollback puts back
            _journal(up, self.run, n, self.names)
            t["start"] = time.monotonic()
            self.run.emit(Log("info", f"{n}: the controller is applying {self.plan_of[n]}"))
        if node_version(obj) == up.target and "start" in t:
            t.setdefault("installed", time.monotonic())
        labelled = (obj["metadata"].get("labels") or {}).get(LABEL + self.plan_of[n]) == status.get(
            "latestHash"
        )
        schedulable = not (obj.get("spec") or {}).get("unschedulable")
        done = labelled and node_version(obj) == up.target and is_ready(obj) and schedulable
        if done and up.steps[n].state != "done":
            start = t.get("start", time.monotonic())
            # drain: cordon, drain and the Job until the version changed; ready: until Ready, uncordoned
            up.steps[n].timings = {
                "drain": round(t.get("installed", start) - start, 2),
                "ready": round(time.monotonic() - t.get("installed", start), 2),
            }
            up.steps[n].state, up.steps[n].after = "done", up.target
            self.run.step("node", "superseded", {"key": f"k3s:{n}"})
            self.run.emit(Log("info", f"{n} runs {up.target} (Plan {self.plan_of[n]})"))
        return done
