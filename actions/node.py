"""``cordon`` and ``uncordon`` a node (``--target NODE``), from the Nodes panel or headless.

Cordoning marks the node unschedulable: its pods stay, nothing new lands there.  Each is journaled
before it is made and undone by the other (a failed verification, a killed console's recovery).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from console.action import Action, Outcome, Plan, param
from console.clients.kube import KubeError, request, set_schedulable
from console.config import Config
from console.errors import Refused, UsageError, Verdict
from console.events import Check, PlanItem
from console.runner import Run


def node_names(config: Config) -> list[str]:
    return [n.name for n in config.nodes]


@dataclass(frozen=True)
class NodeParams:
    target: str | None = param("--target", "the node", choices=node_names, required=True)


class _Schedulable(Action[NodeParams]):
    """What cordon and uncordon share: the node read once, the one write, its verification."""

    Params = NodeParams
    cordoned: ClassVar[bool]  # what the action makes the node

    def __init__(self, config: Config, params: NodeParams) -> None:
        super().__init__(config, params)
        self.pods = 0
        self.now: bool | None = None

    @property
    def node(self) -> str:
        return self.params.target or ""

    def confirm_word(self) -> str:
        return self.node

    def validate(self) -> None:
        if not self.params.target:
            names = ", ".join(node_names(self.config))
            raise UsageError(f"--action {self.name} needs --target NODE ({names})")

    async def preflight(self, run: Run) -> list[Check]:
        api = await run.kube()
        try:
            obj = await request(api, "GET", f"/api/v1/nodes/{self.node}")
        except KubeError as exc:
            if exc.status == 404:
                raise Refused(f"there is no node {self.node}") from None
            raise
        self.now = bool((obj.get("spec") or {}).get("unschedulable"))
        on_node = {"fieldSelector": f"spec.nodeName={self.node}"}
        pods = await request(api, "GET", "/api/v1/pods", query=on_node)
        self.pods = len(pods.get("items", []))
        return [Check("node-exists", True, True, f"{self.node}: {'cordoned' if self.now else 'schedulable'}")]

    async def plan(self, run: Run) -> Plan:
        verb = "cordon" if self.cordoned else "uncordon"
        if self.now is self.cordoned:
            state = "cordoned" if self.cordoned else "schedulable"
            return Plan(nothing_to_do=f"{self.node} is {state} already", done_verdict=Verdict.CLEAN)
        what = (
            f"its {self.pods} pods stay; nothing new is scheduled there"
            if self.cordoned
            else "new pods may be scheduled there again"
        )
        return Plan([PlanItem("change", f"{verb} {self.node}: {what}", self.node)])

    async def execute(self, run: Run) -> Outcome:
        run.applied(self.name, self.name, node=self.node)
        await set_schedulable(await run.kube(), self.node, not self.cordoned)
        return Outcome(Verdict.DONE, f"{self.node} {'cordoned' if self.cordoned else 'uncordoned'}")

    async def verify(self, run: Run) -> str | None:
        obj = await request(await run.kube(), "GET", f"/api/v1/nodes/{self.node}")
        now = bool((obj.get("spec") or {}).get("unschedulable"))
        return None if now is self.cordoned else f"{self.node} is {'not ' if self.cordoned else ''}cordoned"

    async def undo(self, run: Run, data: dict[str, Any]) -> str:
        node = str(data.get("node") or self.node)
        back = data.get("key") == "cordon"  # undoing a cordon uncordons, and the other way round
        try:
            await set_schedulable(await run.kube(), node, back)
        except KubeError as exc:
            if exc.status != 404:
                raise
            return f"{node} is gone: nothing to undo"
        return f"{node} {'uncordoned' if back else 'cordoned'} again"


class Cordon(_Schedulable):
    name = "cordon"
    title = "Cordon a node"
    description = "mark a node (--target) unschedulable: its pods stay, nothing new lands there"
    cordoned = True


class Uncordon(_Schedulable):
    name = "uncordon"
    title = "Uncordon a node"
    description = "make a cordoned node (--target) schedulable again"
    cordoned = False
