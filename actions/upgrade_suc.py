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
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from console.clients.kube import TRANSIENT, KubeError, answered, request
from console.errors import ActionFailed
from console.events import Check, Log, StepFinished, StepStarted
from console.k3s import node_args, node_env, node_version
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
NODE_TIMEOUT_S = 600.0


async def controller_check(api: Any) -> Check:
    """SUC is installed: its Plan kind is served and its namespace exists."""
    try:
        await request(
            api, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/plans.upgrade.cattle.io"
        )
        await request(api, "GET", f"/api/v1/namespaces/{NAMESPACE}")
    except KubeError as exc:
        if exc.status != 404:
            raise
        return Check(
            "suc-installed",
            False,
            True,
            "system-upgrade-controller is not installed (no plans.upgrade.cattle.io or no system-upgrade "
            "namespace): apply its manifest first, or use --route ssh",
        )
    return Check("suc-installed", True, True, "system-upgrade-controller's Plans are served")


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


def _journal(up: Upgrade, run: Run, node: str) -> None:
    """The node's change, journaled as the ssh route journals it: a rollback puts its version back."""
    step = up.steps[node]
    step.state, up.stopped_at = "upgrading", f"{node} ({step.role})"
    args, url = node_args(up.objs[node]), node_env(up.objs[node]).get("K3S_URL")
    run.applied("install", f"k3s:{node}", node=node, previous=step.before, args=args, k3s_url=url)


def _failed(plan: dict[str, Any]) -> str | None:
    for c in (plan.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Validated", "LatestResolved") and c.get("reason") in (
            "JobFailed",
            "Error",
        ):
            return str(c.get("message") or c.get("reason"))
    return None


async def follow_plans(up: Upgrade, run: Run) -> None:
    """Apply the Plans, then follow every node to the target; ActionFailed when a Job fails or stalls."""
    api = await run.kube()
    servers = [n for n in up.order if up.steps[n].role == "server"]
    agents = [n for n in up.order if up.steps[n].role != "server"]
    docs = plans(up.target, servers, agents, up.params.timeout)
    names = [d["metadata"]["name"] for d in docs]
    run.applied("plans", "suc-plans", plans=names)
    run.emit(StepStarted("plans", f"system-upgrade-controller Plans {', '.join(names)} for {up.target}"))
    # The agent Plan first: it waits for the server Plan, which restarts the API server once applied.
    for d in reversed(docs):
        await answered(partial(_apply, api, d))
    run.emit(StepFinished("plans", True, "applied"))
    plan_of = {n: SERVER_PLAN for n in servers} | {n: AGENT_PLAN for n in agents}
    marks: dict[str, dict[str, float]] = {n: {} for n in up.order}
    journaled: set[str] = set()
    deadline = time.monotonic() + NODE_TIMEOUT_S * max(1, len(up.order))
    while True:
        try:
            state = {
                d["metadata"]["name"]: await request(api, "GET", f"{PLANS}/{d['metadata']['name']}")
                for d in docs
            }
            nodes = {n: await request(api, "GET", f"/api/v1/nodes/{n}") for n in up.order}
        except KubeError as exc:
            if exc.status not in TRANSIENT:
                raise
            await asyncio.sleep(0.5)  # the server restarting: its API does not answer for a while
            continue
        for name, plan in state.items():
            why = _failed(plan)
            if why:  # the controller starts nothing more once its Plans are gone; then the node goes back
                for n in (plan.get("status") or {}).get("applying") or []:
                    if n in up.steps and n not in journaled:  # its Job ran while the API did not answer
                        journaled.add(n)
                        _journal(up, run, n)
                    up.steps[n].state, up.stopped_at = "failed", f"{n} ({up.steps[n].role})"
                await delete_plans(api, names)
                run.step("rollback", "rolled-back", {"key": "suc-plans"})
                raise ActionFailed(f"Plan {name}: {why}")
        pending = []
        for n in up.order:
            obj, plan = nodes[n], state[plan_of[n]]
            applying = n in ((plan.get("status") or {}).get("applying") or [])
            if applying and n not in journaled:  # before its k3s changes: what a rollback puts back
                journaled.add(n)
                _journal(up, run, n)
                marks[n]["start"] = time.monotonic()
                run.emit(Log("info", f"{n}: the controller is applying {plan_of[n]}"))
            labelled = (obj["metadata"].get("labels") or {}).get(LABEL + plan_of[n]) == (
                plan.get("status") or {}
            ).get("latestHash")
            if node_version(obj) == up.target and "installed" not in marks[n] and "start" in marks[n]:
                marks[n]["installed"] = time.monotonic()
            done = (
                labelled
                and node_version(obj) == up.target
                and is_ready(obj)
                and not (obj.get("spec") or {}).get("unschedulable")
            )
            if done and up.steps[n].state != "done":
                t = marks[n]
                start = t.get("start", time.monotonic())
                up.steps[n].timings = {
                    "drain": round(
                        t.get("installed", start) - start, 2
                    ),  # cordon, drain and the Job until the version changed
                    "ready": round(time.monotonic() - t.get("installed", start), 2),
                }
                up.steps[n].state, up.steps[n].after = "done", up.target
                for key in (f"k3s:{n}",):
                    run.step("node", "superseded", {"key": key})
                run.emit(Log("info", f"{n} runs {up.target} (Plan {plan_of[n]})"))
            if not done:
                pending.append(n)
        if not pending:  # done: the Plans go (pinned to this version, they would only mislead later)
            run.emit(Log("info", await delete_plans(api, names)))
            run.step("plans", "superseded", {"key": "suc-plans"})
            return
        if time.monotonic() > deadline:
            raise ActionFailed(f"the Plans did not finish: {', '.join(pending)} still pending")
        await asyncio.sleep(0.5)
