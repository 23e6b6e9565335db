"""``--action replace-node --target k3s-w2``: a worker's server replaced by a fresh one, traffic unharmed.

The order is chosen so production never loses a working path:

1. **Preflight** (exit 3 when it fails): the cluster is at full steady state (every node Ready, every
   load-balancer target healthy, CNPG healthy with its replica streaming, workloads spread) and the
   target is an agent.  The control-plane node is refused: with one embedded-etcd server, replacing it is
   the cluster-restore procedure (``--action restore-cluster``), not a node swap.
2. **Steady-state probes** of the prod and staging health URLs every 0.5 s, from now to the end.
3. **Cordon**, then **remove the target from the load balancer** (new connections stop going to it
   before anything on it stops), then **drain** through the Eviction API (PodDisruptionBudgets honoured;
   CNPG moves a primary off a cordoned node on its own, which is waited for).
4. **Delete the Node object** (its pods go with it), **delete the server**, **create** a new one with the
   same name, type, image, location, private IP, placement group, firewall and key (the provision
   action's own step), **join** it to K3s as an agent (the token read from the server, sent on stdin).
5. **Add it back** as a load-balancer target and wait until it is healthy, and until the cluster is at
   full steady state again.

Before the old server is deleted, a failure rolls back (uncordon, target re-added).  After it, there is
nothing to roll back to: the failure says so, and ``--action provision --yes`` converges — it creates the
missing server, joins it and re-adds the target.  The verdict is PASS when production answered every
probe.  Each step is timed; the report has the new server's ID.

A new server has a new SSH host key on a real project: remove the old ``known_hosts`` line for the alias
before the join step can verify it (the lab keeps host keys per node name).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actions.drill_checks import steady_state
from actions.provision import (
    TOKEN_FILE,
    install_k3s,
    plan_load_balancer,
    plan_server,
    retry_ssh,
)
from actions.steady import until_steady
from console.action import Action, Outcome, Plan, param
from console.clients.hetzner import RequestCounter, client, wait_action
from console.clients.kube import KubeError, delete, request, set_schedulable
from console.config import Config, NodeConfig
from console.drain import evict_all, evictable
from console.errors import ActionFailed, Refused, UsageError, Verdict, as_ops_error
from console.events import Check, PlanItem, ProbeSample, StepFinished, StepStarted
from console.k3s import read_root_file
from console.kubeobj import is_ready
from console.model import Snapshot
from console.outages import longest, outages
from console.probes import SteadyProbes
from console.runner import Run
from console.snapshot import build


def _target_health(config: Config, counter: RequestCounter, name: str) -> list[str]:
    """The health states of ``name``'s load-balancer target, per port (empty: not a target)."""
    c = client(config, counter)
    lb: Any = c.load_balancers.get_by_name(config.hetzner.load_balancer.name)
    server: Any = c.servers.get_by_name(name)
    if lb is None or server is None:
        return []
    return [
        str(h.status)
        for t in lb.targets or []
        if t.type == "server" and t.server is not None and t.server.id == server.id
        for h in t.health_status or []
    ]


def _remove_target(config: Config, counter: RequestCounter, name: str) -> str:
    c = client(config, counter)
    lb: Any = c.load_balancers.get_by_name(config.hetzner.load_balancer.name)
    server: Any = c.servers.get_by_name(name)
    if lb is None or server is None:
        return "not a target"
    targeted = any(
        t.type == "server" and t.server is not None and t.server.id == server.id for t in lb.targets
    )
    if not targeted:
        return "not a target"
    from hcloud.load_balancers import LoadBalancerTarget

    target = LoadBalancerTarget(
        type="server", server=server, use_private_ip=config.hetzner.load_balancer.use_private_ip
    )
    wait_action(lb.remove_target(target), config.provision.action_timeout_s)
    return "removed"


def _readd_targets(config: Config, counter: RequestCounter) -> str:
    done = [ch.run() for ch in plan_load_balancer(config, client(config, counter)) if ch.run is not None]
    return ", ".join(done) or "already a target"


def _delete_server(config: Config, counter: RequestCounter, name: str) -> str:
    c = client(config, counter)
    server: Any = c.servers.get_by_name(name)
    if server is None:
        return "already gone"
    wait_action(server.delete(), config.provision.action_timeout_s)
    return f"#{server.id} deleted"


def _create_server(config: Config, counter: RequestCounter, node: NodeConfig) -> str:
    changes = plan_server(config, client(config, counter), node)
    create = next((ch for ch in changes if ch.op == "create" and ch.run is not None), None)
    if create is None or create.run is None:
        raise ActionFailed(f"a server named {node.name} still exists")
    return create.run()


def _workers(config: Config) -> list[str]:
    return [n.name for n in config.nodes if n.role == "agent"]


@dataclass(frozen=True)
class ReplaceParams:
    target: str | None = param("--target", "the worker to replace", choices=_workers, required=True)


class ReplaceNode(Action[ReplaceParams]):
    name = "replace-node"
    title = "Replace a node"
    description = "a worker (--target) onto a fresh server: drain, out of the LB, new server, join, back in"
    Params = ReplaceParams
    guide = (
        "Choose the worker to replace, then type its name. Then: preflight (full steady state), probes\n"
        "of prod and staging, cordon, out of the load balancer, drain, delete the Node and the server,\n"
        "create a new server, join it, back into the load balancer, wait for steady state. Before the old\n"
        "server is deleted a failure rolls back; after it, Provision converges."
    )

    def __init__(self, config: Config, params: ReplaceParams) -> None:
        super().__init__(config, params)
        self.node: NodeConfig | None = next((n for n in config.nodes if n.name == params.target), None)
        self.counter = RequestCounter()
        self.timings: dict[str, float] = {}
        self.samples: list[ProbeSample] = []
        self.probes: SteadyProbes | None = None
        self.past_rollback = False  # the old server is gone: nothing to roll back to
        self.live: Any = None
        self.new_server = ""

    def confirm_word(self) -> str | None:
        return self.params.target

    def unconfirmed(self) -> str:
        return f"replacing {self.params.target} takes these steps: add --yes to run them"

    def validate(self) -> None:
        names = ", ".join(n.name for n in self.config.nodes)
        if self.node is None:
            raise UsageError(f"--target must name a node: {names}")
        if self.node.role == "server":
            raise Refused(
                f"{self.node.name} is the only (embedded-etcd) server: replacing it is a cluster restore — "
                "`--action restore-cluster` on a fresh server, not a node swap"
            )

    @property
    def worker(self) -> NodeConfig:
        assert self.node is not None
        return self.node

    def snapshot(self) -> Snapshot:
        return build(self.live.store, self.config, self.config.kubernetes.context)

    async def preflight(self, run: Run) -> list[Check]:
        self.live = await run.sources()
        hetzner = self.live.sources.get("hetzner")
        if hetzner is not None and hasattr(hetzner, "boost"):
            hetzner.boost(self.config.drill.hetzner_poll_s)
        self.live.refresh("postgres")
        gaps = steady_state(self.snapshot(), self.config)
        return [Check("steady-state", not gaps, True, "; ".join(gaps) if gaps else "full steady state")]

    async def plan(self, run: Run) -> Plan:
        node, lb = self.worker, self.config.hetzner.load_balancer.name
        lines = [
            f"cordon {node.name}",
            f"remove {node.name} from {lb}",
            f"drain {node.name}",
            f"delete Node {node.name} and its server",
            f"create server {node.name} ({self.config.hetzner.server_type}, {node.private_ipv4}) "
            "and join it to K3s",
            f"add it back to {lb} and wait until healthy and steady",
        ]
        return Plan([PlanItem("step", line, node.name) for line in lines], report={"plan": lines})

    async def _step(self, run: Run, name: str, what: str, fn: Callable[[], Any], thread: bool = False) -> Any:
        run.emit(StepStarted(name, what))
        t0 = time.monotonic()
        result = await (asyncio.to_thread(fn) if thread else fn())
        self.timings[name] = round(time.monotonic() - t0, 2)
        run.step(name, "done", {})
        run.emit(StepFinished(name, True, f"{result or 'done'} ({self.timings[name]:.1f} s)"))
        return result

    async def execute(self, run: Run) -> Outcome:
        config, node, api = self.config, self.worker, await run.kube()
        d = config.drill
        self.probes = SteadyProbes(config, None, self.samples.append, d.probe_interval_s, d.probe_timeout_s)
        self.probes.start()
        started = time.monotonic()
        run.applied("cordon", "cordon", node=node.name)
        await self._step(run, "cordon", f"cordon {node.name}", lambda: _cordon(api, node.name, True))
        run.applied("lb-remove", "lb-target", node=node.name)
        await self._step(run, "lb-remove", f"{node.name} out of the load balancer",
                         lambda: _remove_target(config, self.counter, node.name), thread=True)  # fmt: skip
        await self._step(run, "drain", f"drain {node.name}", lambda: self._drain(api))
        # The point of no return: from here a failure is converged by provision, not undone, and a
        # recovery after a killed console must not try to uncordon a Node that is about to go.
        self.past_rollback = True
        for key in ("cordon", "lb-target"):
            run.step("point-of-no-return", "superseded", {"key": key})
        try:
            await self._step(
                run, "node-delete", f"delete Node {node.name}", lambda: _delete_node(api, node.name)
            )
            count = self.counter
            await self._step(run, "server-delete", f"delete server {node.name}",
                             lambda: _delete_server(config, count, node.name), thread=True)  # fmt: skip
            self.new_server = await self._step(
                run, "server-create", f"create server {node.name}",
                lambda: _create_server(config, count, node), thread=True,
            )  # fmt: skip
            await self._step(run, "join", f"join {node.name} to K3s", lambda: self._join(api))
            await self._step(run, "lb-add", f"{node.name} back into the load balancer",
                             lambda: _readd_targets(config, self.counter), thread=True)  # fmt: skip
            await self._step(run, "lb-healthy", f"target {node.name} healthy", self._healthy_target)
            run.emit(StepStarted("steady", "full steady state"))
            t0 = time.monotonic()
            gaps = await until_steady(self.live, config, api, d.steady_timeout_s, run.emit)
            self.timings["steady"] = round(time.monotonic() - t0, 2)
            detail = "; ".join(gaps) if gaps else f"steady ({self.timings['steady']:.1f} s)"
            run.emit(StepFinished("steady", not gaps, detail))
            if gaps:
                raise ActionFailed("not back at steady state: " + "; ".join(gaps))
        except Exception as exc:
            ops = as_ops_error(exc)
            why = ops.sentence() if ops is not None else f"{type(exc).__name__}: {exc}"
            raise ActionFailed(
                f"{why} after the old server was retired — `--action provision --yes` creates, joins and "
                "re-targets what is missing"
            ) from exc
        await self.probes.stop()
        prod = self.result()["probes"]["http-prod"]
        verdict = Verdict.PASS if prod["failed"] == 0 else Verdict.FAIL
        summary = (
            f"{node.name} replaced in {time.monotonic() - started:.1f} s ({self.new_server}); "
            "production answered "
            f"{prod['total'] - prod['failed']}/{prod['total']} probes"
        )
        return Outcome(verdict, summary, self.result())

    def can_roll_back(self) -> bool:
        return not self.past_rollback

    async def undo(self, run: Run, data: dict[str, Any]) -> str:
        key = data.get("key")
        if key == "cordon":
            try:
                await _cordon(await run.kube(), str(data["node"]), False)
            except KubeError as exc:
                if exc.status != 404:
                    raise
                return f"{data['node']} is gone: nothing to uncordon"
            return f"{data['node']} uncordoned"
        if key == "lb-target":
            return "target " + await asyncio.to_thread(_readd_targets, self.config, self.counter)
        return ""

    async def rollback(self, run: Run) -> str:
        run.emit(StepStarted("rollback", f"uncordon {self.worker.name}, target re-added"))
        said = await super().rollback(run)
        await self.close()
        run.emit(StepFinished("rollback", True, said))
        return said

    async def close(self) -> None:
        if self.probes is not None:
            await self.probes.stop()

    def result(self) -> dict[str, Any]:
        counts = {
            name: {
                "total": sum(1 for x in self.samples if x.probe == name),
                "failed": sum(1 for x in self.samples if x.probe == name and not x.ok),
                "longest_outage_s": longest(self.samples, name),
            }
            for name in ("http-prod", "http-staging")
        }
        return {
            "target": self.params.target,
            "new_server": self.new_server,
            "timings": self.timings,
            "total_s": round(sum(self.timings.values()), 2),
            "hetzner_requests": self.counter.requests,
            "probes": counts,
            "prod_outages": outages(self.samples, "http-prod"),
            "prod_failures": [
                {"at": x.at, "error": x.error} for x in self.samples if x.probe == "http-prod" and not x.ok
            ][:20],
        }

    async def _drain(self, api: Any) -> str:
        """Wait for CNPG to move a primary off the cordoned node, then evict; both read from the live
        store the watches keep (no polling of the API)."""
        name, store = self.worker.name, self.live.store

        def primary_here() -> bool:
            db = self.snapshot().database
            return db is not None and any(m.name == db.primary and m.node == name for m in db.members)

        deadline = time.monotonic() + 90
        while primary_here():
            if time.monotonic() > deadline:
                raise ActionFailed(f"the database primary is still on {name}: switch it over first")
            await asyncio.sleep(0.5)
        pending = evictable(store.items("pods"), name)
        await evict_all(api, pending, 180, lambda m: None)
        deadline = time.monotonic() + 180
        while evictable(store.items("pods"), name):
            if time.monotonic() > deadline:
                raise ActionFailed(f"pods still on {name} after the drain")
            await asyncio.sleep(0.5)
        return f"{len(pending)} pods evicted"

    async def _join(self, api: Any) -> str:
        node = self.worker
        server = next(n for n in self.config.nodes if n.role == "server")
        token = (await read_root_file(self.config, server, TOKEN_FILE)).strip()
        said = await retry_ssh(lambda: install_k3s(self.config, node, token))
        deadline = time.monotonic() + self.config.provision.node_ready_timeout_s
        while True:
            try:
                obj = await request(api, "GET", f"/api/v1/nodes/{node.name}")
                if is_ready(obj):
                    return f"{said}; Ready"
            except KubeError as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                raise ActionFailed(f"{node.name} did not turn Ready")
            await asyncio.sleep(1.0)

    async def _healthy_target(self) -> str:
        name = self.worker.name
        deadline = time.monotonic() + 180
        while True:
            states = await asyncio.to_thread(_target_health, self.config, self.counter, name)
            if states and all(s == "healthy" for s in states):
                return f"healthy on {len(states)} ports"
            if time.monotonic() > deadline:
                raise ActionFailed(f"target {name} not healthy: {states}")
            await asyncio.sleep(2.0)


async def _cordon(api: Any, node: str, on: bool) -> str:
    await set_schedulable(api, node, not on)
    return "cordoned" if on else "uncordoned"


async def _delete_node(api: Any, node: str) -> str:
    await delete(api, f"/api/v1/nodes/{node}")
    return "deleted (its pods are garbage-collected)"
