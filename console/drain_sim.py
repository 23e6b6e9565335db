"""What draining a node would do, worked out before anything changes (an upgrade's plan shows it).

From one read of the nodes, pods and PodDisruptionBudgets:

* **blocking budgets** — a budget selecting pods on the node that allows no disruption now holds the
  drain until its pods are healthy elsewhere, which a drain cannot make happen: the drain would hang.
  CNPG's ``<cluster>-primary`` budget is no hold when the drain switches the primary over first;
* **the primary** — whether the CNPG primary runs there and must move first (and to which replica);
* **room** — whether the other schedulable nodes that tolerate each pod (a CAX11 has 2 vCPU and 4 GB)
  can hold the evicted pods' requests on top of what already runs there;
* **nowhere to go** — pods that no other node may take (a required anti-affinity whose pair runs on each
  of them, a taint): they wait Pending until the node is back, which is fine for a pair that keeps one
  replica serving, and said.  CNPG instances are not moved: their volume is on the node, so CNPG starts
  them again there once it is uncordoned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity as _parse

from console.drain import evictable, held_by_budgets, selects


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity ("100m", "3908848Ki") as a number (the client library's parser)."""
    return Decimal(_parse(text))  # type: ignore[no-untyped-call]


GIB = Decimal(1024**3)


def _requests(pod: dict[str, Any]) -> tuple[Decimal, Decimal]:
    cpu = mem = Decimal(0)
    for c in (pod.get("spec") or {}).get("containers") or []:
        req = (c.get("resources") or {}).get("requests") or {}
        cpu += parse_quantity(req["cpu"]) if "cpu" in req else Decimal(0)
        mem += parse_quantity(req["memory"]) if "memory" in req else Decimal(0)
    return cpu, mem


def _tolerates(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for t in (node.get("spec") or {}).get("taints") or []:
        if t.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(
            (tol.get("operator") == "Exists" and tol.get("key") in (None, "", t["key"]))
            or (tol.get("key") == t["key"] and tol.get("value", "") == t.get("value", ""))
            for tol in tolerations
            if tol.get("effect") in (None, "", t["effect"])
        ):
            return False
    return True


def _ready(node: dict[str, Any]) -> bool:
    conds = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds) or not conds


def _holds_room(pod: dict[str, Any]) -> bool:
    """A pod whose requests count against its node: not finished, not on its way out."""
    done = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    return not done and not pod["metadata"].get("deletionTimestamp")


def _selects(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    """The pod's ``nodeSelector`` and required node affinity (any one of its terms) admit the node."""
    labels = node["metadata"].get("labels") or {}
    spec = pod.get("spec") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = [t for t in required.get("nodeSelectorTerms") or [] if t.get("matchExpressions")]
    return not terms or any(selects({"matchExpressions": t["matchExpressions"]}, labels) for t in terms)


def _repelled(pod: dict[str, Any], node: str, pods: list[dict[str, Any]]) -> bool:
    """A required pod anti-affinity (per hostname) that a pod already on ``node`` matches."""
    terms = (((pod.get("spec") or {}).get("affinity") or {}).get("podAntiAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or []
    for term in terms:
        if term.get("topologyKey") != "kubernetes.io/hostname":
            continue
        for other in pods:
            if (other.get("spec") or {}).get("nodeName") != node or other["metadata"].get(
                "deletionTimestamp"
            ):
                continue
            same_ns = other["metadata"]["namespace"] == pod["metadata"]["namespace"]
            if same_ns and selects(term.get("labelSelector"), other["metadata"].get("labels") or {}):
                return True
    return False


@dataclass
class DrainSimulation:
    node: str
    moving: list[str] = field(default_factory=list)
    staying: list[str] = field(default_factory=list)  # CNPG instances: started again on the node
    blocked: list[str] = field(default_factory=list)
    primary: str | None = None
    switch_to: str | None = None
    pending: list[str] = field(default_factory=list)
    need: tuple[Decimal, Decimal] = (Decimal(0), Decimal(0))
    free: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    short: list[str] = field(default_factory=list)  # pods no other node has room for

    @property
    def fits(self) -> bool:
        return not self.short

    def lines(self) -> list[str]:
        """The plan's words."""
        cpu, mem = self.need
        room = ", ".join(f"{n} {c:.2f} CPU / {m / GIB:.1f} GiB free" for n, (c, m) in self.free.items())
        out = [
            f"drain {self.node}: {len(self.moving)} pods move "
            f"(requests {cpu:.2f} CPU / {mem / GIB:.2f} GiB); "
            + (room or "no other node takes them")
            + ("" if self.fits else f" — not enough for {', '.join(self.short[:3])}")
        ]
        if self.primary:
            out.append(
                f"the primary {self.primary} runs on {self.node}: switch over to {self.switch_to} first"
                if self.switch_to
                else f"the primary {self.primary} runs on {self.node} and no ready replica runs elsewhere"
            )
        if self.staying:
            out.append(
                f"{', '.join(self.staying)}: CNPG starts it again on {self.node} once it is uncordoned"
            )
        if self.pending:
            out.append(
                f"{', '.join(self.pending)}: no other node may take it; Pending until {self.node} is back"
            )
        out += self.blocked
        return out


def simulate(
    node: str,
    nodes: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    budgets: list[dict[str, Any]],
    primary: str | None = None,
    db_namespace: str = "",
    switch_to: str | None = None,
) -> DrainSimulation:
    sim = DrainSimulation(node, primary=None, switch_to=switch_to)
    by_key = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
    evicted = [by_key[k] for k in evictable(pods, node) if k in by_key]
    others = [
        n
        for n in nodes
        if n["metadata"]["name"] != node and not (n.get("spec") or {}).get("unschedulable") and _ready(n)
    ]
    for n in others:
        alloc = (n.get("status") or {}).get("allocatable") or {}
        cpu = parse_quantity(alloc.get("cpu", "0"))
        mem = parse_quantity(alloc.get("memory", "0"))
        for p in pods:
            if (p.get("spec") or {}).get("nodeName") == n["metadata"]["name"] and _holds_room(p):
                c, m = _requests(p)
                cpu, mem = cpu - c, mem - m
        sim.free[n["metadata"]["name"]] = (cpu, mem)
    free = dict(sim.free)
    candidates: set[str] = set()
    need_cpu = need_mem = Decimal(0)
    for p in evicted:
        key = f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        owners = p["metadata"].get("ownerReferences") or []
        owner: dict[str, Any] = next((o for o in owners if o.get("controller")), {})
        if owner.get("kind") == "Cluster":
            sim.staying.append(p["metadata"]["name"])
            if p["metadata"]["name"] == primary and p["metadata"]["namespace"] == db_namespace:
                sim.primary = primary
            continue
        sim.moving.append(key)
        c, m = _requests(p)
        need_cpu, need_mem = need_cpu + c, need_mem + m
        homes = [
            n
            for n in others
            if _tolerates(p, n) and _selects(p, n) and not _repelled(p, n["metadata"]["name"], pods)
        ]
        candidates.update(n["metadata"]["name"] for n in homes)
        if not homes:
            sim.pending.append(key)
            continue
        home = next((n["metadata"]["name"] for n in homes if free[n["metadata"]["name"]] >= (c, m)), None)
        best = max(homes, key=lambda n: free[n["metadata"]["name"]])["metadata"]["name"]
        room = free[home] if home else free[best]
        if home is None or room[0] < c or room[1] < m:
            sim.short.append(key)
            continue
        free[home] = (room[0] - c, room[1] - m)
    sim.need = (need_cpu, need_mem)
    sim.free = {n: room for n, room in sim.free.items() if n in candidates}  # the nodes that may take them
    moving_primary = sim.primary if sim.primary and switch_to else None  # CNPG's own budget: no hold then
    on_node = [
        by_key[k] for k in evictable(pods, node) if k in by_key and k != (db_namespace, moving_primary)
    ]
    for name, held in held_by_budgets(budgets, on_node):
        sim.blocked.append(
            f"the PodDisruptionBudget {name} allows no disruption now and holds {', '.join(held)}: "
            "the drain would wait on it forever"
        )
    return sim
