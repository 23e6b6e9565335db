"""A Deployment's ``restart`` (``kubectl rollout restart``, watched to the end) and ``scale --replicas N``,
and a pod's ``delete-pod`` — from the Workloads panel or headless, ``--target NS/NAME``.

``scale`` is journaled before it is made and undone to the previous count; a restart and a deleted pod
have no undo (their controllers make new pods: the plan says which controller).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from console.action import Action, Outcome, Plan, param
from console.clients.kube import MERGE_PATCH, KubeError, delete, patch, request, rollout_restart
from console.config import Config
from console.errors import ActionFailed, Refused, UsageError, Verdict
from console.events import Check, PlanItem, Progress
from console.kubeobj import rolled_out, split_target
from console.runner import Run

ROLLOUT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DeploymentParams:
    target: str | None = param("--target", "NAMESPACE/DEPLOYMENT", required=True)


@dataclass(frozen=True)
class ScaleParams(DeploymentParams):
    replicas: int | None = param("--replicas", "how many replicas", required=True)


class _OnDeployment(Action[Any]):
    """What the Deployment actions share: the object read in the preflight, its rollout waited for."""

    def __init__(self, config: Config, params: Any) -> None:
        super().__init__(config, params)
        self.deployment: dict[str, Any] = {}

    @property
    def path(self) -> str:
        ns, name = split_target(self.name, self.params.target, "DEPLOYMENT")
        return f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"

    def confirm_word(self) -> str:
        return str(self.params.target)

    def validate(self) -> None:
        split_target(self.name, self.params.target, "DEPLOYMENT")

    async def preflight(self, run: Run) -> list[Check]:
        try:
            self.deployment = await request(await run.kube(), "GET", self.path)
        except KubeError as exc:
            if exc.status == 404:
                raise Refused(f"there is no Deployment {self.params.target}") from None
            raise
        d = self.deployment
        ready = (d.get("status") or {}).get("readyReplicas", 0)
        return [
            Check(
                "deployment", True, True, f"{self.params.target}: {ready}/{d['spec'].get('replicas')} ready"
            )
        ]

    async def rolled_out(self, run: Run) -> dict[str, Any]:
        """Until the rollout finished (updated, ready, no old replica left): the Deployment then."""
        deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
        while True:
            d = await request(await run.kube(), "GET", self.path)
            st = d.get("status") or {}
            want = d["spec"].get("replicas", 1)
            ready = int(st.get("readyReplicas", 0))
            said = f"{st.get('updatedReplicas', 0)}/{want} updated, {ready}/{want} ready"
            run.emit(Progress("rollout", said, items=ready))
            if rolled_out(d):
                return d
            if time.monotonic() > deadline:
                raise ActionFailed(f"{self.params.target} did not roll out within {ROLLOUT_TIMEOUT_S:g} s")
            await asyncio.sleep(0.5)


class Restart(_OnDeployment):
    name = "restart"
    title = "Restart a Deployment"
    description = "a rollout restart of a Deployment (--target NS/NAME), watched to the end"
    Params = DeploymentParams

    async def plan(self, run: Run) -> Plan:
        n = self.deployment["spec"].get("replicas", 1)
        return Plan(
            [
                PlanItem(
                    "change",
                    f"replace the {n} pods of {self.params.target}, one rollout",
                    str(self.params.target),
                )
            ]
        )

    async def execute(self, run: Run) -> Outcome:
        ns, name = split_target(self.name, self.params.target, "DEPLOYMENT")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        run.step("restart", "started", {"deployment": self.params.target})
        await rollout_restart(await run.kube(), ns, name, stamp)
        d = await self.rolled_out(run)
        return Outcome(
            Verdict.DONE, f"{self.params.target} restarted: {d['status'].get('readyReplicas')} ready"
        )


class Scale(_OnDeployment):
    name = "scale"
    title = "Scale a Deployment"
    description = "set a Deployment's replicas (--target NS/NAME --replicas N), watched until ready"
    Params = ScaleParams

    def validate(self) -> None:
        super().validate()
        if self.params.replicas is None or self.params.replicas < 0:
            raise UsageError("--action scale needs --replicas N (0 or more)")

    async def plan(self, run: Run) -> Plan:
        now = int(self.deployment["spec"].get("replicas", 1))
        if now == self.params.replicas:
            return Plan(
                nothing_to_do=f"{self.params.target} has {now} replicas already", done_verdict=Verdict.CLEAN
            )
        return Plan(
            [
                PlanItem(
                    "change",
                    f"{self.params.target}: {now} -> {self.params.replicas} replicas",
                    str(self.params.target),
                )
            ]
        )

    async def execute(self, run: Run) -> Outcome:
        before = int(self.deployment["spec"].get("replicas", 1))
        run.applied("scale", "replicas", deployment=self.params.target, replicas=before)
        await self._set(run, int(self.params.replicas or 0))
        await self.rolled_out(run)
        return Outcome(Verdict.DONE, f"{self.params.target}: {before} -> {self.params.replicas} replicas")

    async def _set(self, run: Run, replicas: int) -> None:
        await patch(await run.kube(), f"{self.path}/scale", {"spec": {"replicas": replicas}}, MERGE_PATCH)

    async def undo(self, run: Run, data: dict[str, Any]) -> str:
        await self._set(run, int(data["replicas"]))
        return f"{data.get('deployment')} back to {data['replicas']} replicas"


@dataclass(frozen=True)
class PodParams:
    target: str | None = param("--target", "NAMESPACE/POD", required=True)


class DeletePod(Action[PodParams]):
    """A pod deleted (its grace period honoured); the plan names the controller that replaces it."""

    name = "delete-pod"
    title = "Delete a pod"
    description = "delete a pod (--target NS/POD); the plan names the controller that makes a new one"
    Params = PodParams

    def __init__(self, config: Config, params: PodParams) -> None:
        super().__init__(config, params)
        self.owner = ""

    @property
    def path(self) -> str:
        ns, name = split_target(self.name, self.params.target, "POD")
        return f"/api/v1/namespaces/{ns}/pods/{name}"

    def confirm_word(self) -> str:
        return str(self.params.target).partition("/")[2]

    def validate(self) -> None:
        split_target(self.name, self.params.target, "POD")

    async def preflight(self, run: Run) -> list[Check]:
        try:
            pod = await request(await run.kube(), "GET", self.path)
        except KubeError as exc:
            if exc.status == 404:
                raise Refused(f"there is no pod {self.params.target}") from None
            raise
        owners = (pod.get("metadata") or {}).get("ownerReferences") or []
        self.owner = f"the {owners[0]['kind']} {owners[0]['name']}" if owners else ""
        return [
            Check("pod", True, True, f"{self.params.target} on {(pod.get('spec') or {}).get('nodeName')}")
        ]

    async def plan(self, run: Run) -> Plan:
        then = (
            f"{self.owner} will make a new one"
            if self.owner
            else "nothing makes a new one: it is gone for good"
        )
        return Plan([PlanItem("delete", f"delete {self.params.target}: {then}", str(self.params.target))])

    async def execute(self, run: Run) -> Outcome:
        run.step("delete", "started", {"pod": self.params.target})
        await delete(await run.kube(), self.path)
        return Outcome(
            Verdict.DONE,
            f"{self.params.target} deleted" + (f"; {self.owner} replaces it" if self.owner else ""),
        )
