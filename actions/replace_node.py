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
from typing import Any

from hcloud import APIException

from actions.drill_checks import spread_broken, steady_state
from actions.provision import (
    TOKEN_FILE,
    install_k3s,
    plan_load_balancer,
    plan_server,
    read_root_file,
    retry_ssh,
)
from console.clients.hetzner import HetznerError, RequestCounter, client, wait_action
from console.clients.kube import STRATEGIC_PATCH, KubeError, delete, patch, request, rollout_restart
from console.clients.ssh import SshError
from console.config import Config, NodeConfig
from console.drain import evict_all, evictable
from console.events import Event, Finished, Log, ProbeSample, StepFinished, StepStarted
from console.kubeobj import is_ready, rolled_out
from console.model import Snapshot
from console.outages import longest, outages
from console.probes import SteadyProbes
from console.runner import ActionSession, Refused
from console.snapshot import build
from console.store import ClusterStore

EXIT_FAILED, EXIT_REFUSED, EXIT_ROLLED_BACK = 1, 3, 4


class Watch:
    """The live view's sources for the whole replacement (one set of watches and polls, the Hetzner poll
    boosted as during a drill), and the steady-state judgement the drills use."""

    def __init__(self, config: Config) -> None:
        from console.live import LiveSources

        self.config = config
        self.live = LiveSources(ClusterStore(), config)

    async def __aenter__(self) -> Watch:
        await self.live.start()
        await self.live.synced(20.0)
        hetzner = self.live.sources.get("hetzner")
        if hetzner is not None and hasattr(hetzner, "boost"):
            hetzner.boost(self.config.drill.hetzner_poll_s)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.live.stop()

    def snapshot(self) -> Snapshot:
        return build(self.live.store, self.config, self.config.kubernetes.context)

    def gaps(self, snap: Snapshot | None = None) -> list[str]:
        self.live.refresh("postgres")
        return steady_state(snap or self.snapshot(), self.config)

    async def until_steady(self, api: Any, timeout: float, emit: Callable[[Event], None]) -> list[str]:
        """Wait for full steady state; once only the spread is missing (pods that fled the old node stay
        where they went), restart those Deployments — one at a time, each rollout finished before the
        next — so the scheduler spreads them again without several rollouts at once."""
        deadline = time.monotonic() + timeout
        restarted: set[str] = set()
        rolling: str | None = None
        generation = 0
        while True:
            snap = self.snapshot()
            gaps = self.gaps(snap)
            if not gaps or time.monotonic() > deadline:
                return gaps
            if rolling is not None and self._rolled(rolling, generation):
                rolling = None
            if rolling is None and all("not spread" in g for g in gaps):
                todo = [n for n in spread_broken(snap, self.config) if n not in restarted]
                if todo:
                    rolling = todo[0]
                    restarted.add(rolling)
                    ns, deploy = rolling.split("/", 1)
                    emit(Log("info", f"{rolling}: pods share a node; rolling restart to spread them"))
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    done = await rollout_restart(api, ns, deploy, stamp)
                    generation = int(done.get("metadata", {}).get("generation", 0))
            await asyncio.sleep(1.0)

    def _rolled(self, name: str, generation: int) -> bool:
        """The Deployment's rollout of ``generation`` (or later) finished: observed, every replica updated,
        ready, and no old one left."""
        ns, deploy = name.split("/", 1)
        d = self.live.store.objects.get("deployments", {}).get((ns, deploy))
        if d is None:
            return True
        return int(d["metadata"].get("generation", 0)) >= generation and rolled_out(d)


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
        raise RuntimeError(f"a server named {node.name} still exists")
    return create.run()


class Replacement:
    def __init__(
        self,
        config: Config,
        node: NodeConfig,
        emit: Callable[[Event], None],
        session: ActionSession,
        watch: Watch,
    ):
        self.config = config
        self.node = node
        self.emit = emit
        self.s = session
        self.watch = watch
        self.counter = RequestCounter()
        self.timings: dict[str, float] = {}

    async def step(self, name: str, what: str, fn: Callable[[], Any], thread: bool = False) -> Any:
        self.emit(StepStarted(name, what))
        t0 = time.monotonic()
        result = await (asyncio.to_thread(fn) if thread else fn())
        self.timings[name] = round(time.monotonic() - t0, 2)
        self.s.step(name, "done", {})
        self.emit(StepFinished(name, True, f"{result or 'done'} ({self.timings[name]:.1f} s)"))
        return result

    async def cordon(self, on: bool) -> str:
        await patch(
            self.s.api, f"/api/v1/nodes/{self.node.name}", {"spec": {"unschedulable": on}}, STRATEGIC_PATCH
        )
        return "cordoned" if on else "uncordoned"

    async def delete_node(self) -> str:
        await delete(self.s.api, f"/api/v1/nodes/{self.node.name}")
        return "deleted (its pods are garbage-collected)"

    async def drain(self) -> str:
        """Wait for CNPG to move a primary off the cordoned node, then evict; both read from the live
        store the watches keep (no polling of the API)."""
        name, store = self.node.name, self.watch.live.store

        def primary_here() -> bool:
            db = self.watch.snapshot().database
            return db is not None and any(m.name == db.primary and m.node == name for m in db.members)

        deadline = time.monotonic() + 90
        while primary_here():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the database primary is still on {name}: switch it over first")
            await asyncio.sleep(0.5)
        pending = evictable(store.items("pods"), name)
        await evict_all(self.s.api, pending, 180, lambda m: self.emit(Log("info", m)))
        deadline = time.monotonic() + 180
        while evictable(store.items("pods"), name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"pods still on {name} after the drain")
            await asyncio.sleep(0.5)
        return f"{len(pending)} pods evicted"

    async def join(self) -> str:
        server = next(n for n in self.config.nodes if n.role == "server")
        token = (await read_root_file(self.config, server, TOKEN_FILE)).strip()
        said = await retry_ssh(lambda: install_k3s(self.config, self.node, token))
        deadline = time.monotonic() + self.config.provision.node_ready_timeout_s
        while True:
            try:
                obj = await request(self.s.api, "GET", f"/api/v1/nodes/{self.node.name}")
                if is_ready(obj):
                    return f"{said}; Ready"
            except KubeError as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.node.name} did not turn Ready")
            await asyncio.sleep(1.0)

    async def healthy_target(self) -> str:
        deadline = time.monotonic() + 180
        while True:
            states = await asyncio.to_thread(_target_health, self.config, self.counter, self.node.name)
            if states and all(s == "healthy" for s in states):
                return f"healthy on {len(states)} ports"
            if time.monotonic() > deadline:
                raise RuntimeError(f"target {self.node.name} not healthy: {states}")
            await asyncio.sleep(2.0)


async def run_replace_node(
    config: Config, emit: Callable[[Event], None], target: str | None, yes: bool
) -> int:
    node = next((n for n in config.nodes if n.name == target), None)
    if node is None:
        emit(
            Finished(
                "REFUSED",
                EXIT_REFUSED,
                f"--target must name a node: {', '.join(n.name for n in config.nodes)}",
            )
        )
        return EXIT_REFUSED
    if node.role == "server":
        emit(
            Finished(
                "REFUSED",
                EXIT_REFUSED,
                f"{node.name} is the only (embedded-etcd) server: replacing it is a cluster restore — "
                "`--action restore-cluster` on a fresh server, not a node swap",
            )
        )
        return EXIT_REFUSED
    async with Watch(config) as watch:
        return await _run(config, node, emit, yes, watch)


async def _run(
    config: Config, node: NodeConfig, emit: Callable[[Event], None], yes: bool, watch: Watch
) -> int:
    emit(StepStarted("preflight", "full steady state before anything changes"))
    gaps = watch.gaps()
    emit(StepFinished("preflight", not gaps, "; ".join(gaps) if gaps else "steady"))
    if gaps:
        emit(Finished("REFUSED", EXIT_REFUSED, "not at steady state: " + "; ".join(gaps)))
        return EXIT_REFUSED
    plan = [
        f"cordon {node.name}",
        f"remove {node.name} from {config.hetzner.load_balancer.name}",
        f"drain {node.name}",
        f"delete Node {node.name} and its server",
        f"create server {node.name} ({config.hetzner.server_type}, {node.private_ipv4}) and join it to K3s",
        f"add it back to {config.hetzner.load_balancer.name} and wait until healthy and steady",
    ]
    for line in plan:
        emit(Log("plan", line))
    if not yes:
        emit(
            Finished(
                "PLAN", 0, f"replacing {node.name} takes these steps; add --yes to run them", {"plan": plan}
            )
        )
        return 0
    try:
        async with ActionSession(config, "replace-node", {"target": node.name}, emit) as s:
            return await _replace(config, node, emit, s, watch)
    except Refused as exc:
        emit(Finished("REFUSED", EXIT_REFUSED, str(exc)))
        return EXIT_REFUSED


async def _replace(
    config: Config, node: NodeConfig, emit: Callable[[Event], None], s: ActionSession, watch: Watch
) -> int:
    r = Replacement(config, node, emit, s, watch)
    samples: list[ProbeSample] = []
    probes = SteadyProbes(
        config, None, samples.append, config.drill.probe_interval_s, config.drill.probe_timeout_s
    )
    probes.start()
    started = time.monotonic()
    point_of_no_return = False
    new_server = ""
    try:
        await r.step("cordon", f"cordon {node.name}", lambda: r.cordon(True))
        await r.step("lb-remove", f"{node.name} out of the load balancer",
                     lambda: _remove_target(config, r.counter, node.name), thread=True)  # fmt: skip
        await r.step("drain", f"drain {node.name}", r.drain)
        point_of_no_return = True
        await r.step("node-delete", f"delete Node {node.name}", r.delete_node)
        await r.step("server-delete", f"delete server {node.name}",
                     lambda: _delete_server(config, r.counter, node.name), thread=True)  # fmt: skip
        new_server = await r.step("server-create", f"create server {node.name}",
                                  lambda: _create_server(config, r.counter, node), thread=True)  # fmt: skip
        await r.step("join", f"join {node.name} to K3s", r.join)
        await r.step("lb-add", f"{node.name} back into the load balancer",
                     lambda: _readd_targets(config, r.counter), thread=True)  # fmt: skip
        await r.step("lb-healthy", f"target {node.name} healthy", r.healthy_target)
        emit(StepStarted("steady", "full steady state"))
        t0 = time.monotonic()
        gaps = await watch.until_steady(s.api, config.drill.steady_timeout_s, emit)
        r.timings["steady"] = round(time.monotonic() - t0, 2)
        emit(
            StepFinished(
                "steady", not gaps, "; ".join(gaps) if gaps else f"steady ({r.timings['steady']:.1f} s)"
            )
        )
        if gaps:
            raise RuntimeError("not back at steady state: " + "; ".join(gaps))
    except (KubeError, APIException, SshError, HetznerError, RuntimeError) as exc:
        why = exc.message if isinstance(exc, (KubeError, APIException)) else str(exc)
        await probes.stop()
        if point_of_no_return:
            s.result = {"failed": why, "timings": r.timings}
            emit(Finished("FAIL", EXIT_FAILED,
                          f"replace-node failed after the old server was retired: {why} — "
                          "`--action provision --yes` creates, joins and re-targets what is missing",
                          {"timings": r.timings, "hetzner_requests": r.counter.requests}))  # fmt: skip
            return EXIT_FAILED
        emit(StepStarted("rollback", f"uncordon {node.name}, target re-added"))
        await r.cordon(False)
        await asyncio.to_thread(_readd_targets, config, r.counter)
        emit(StepFinished("rollback", True, "rolled back"))
        s.result = {"failed": why, "rolled_back": True}
        emit(Finished("ABORTED", EXIT_ROLLED_BACK, f"replace-node stopped and rolled back: {why}"))
        return EXIT_ROLLED_BACK
    await probes.stop()
    counts = {
        name: {
            "total": sum(1 for x in samples if x.probe == name),
            "failed": sum(1 for x in samples if x.probe == name and not x.ok),
            "longest_outage_s": longest(samples, name),
        }
        for name in ("http-prod", "http-staging")
    }
    prod_failed, prod_total = counts["http-prod"]["failed"], counts["http-prod"]["total"]
    total = time.monotonic() - started
    report = {
        "target": node.name,
        "new_server": new_server,
        "timings": r.timings,
        "total_s": round(total, 2),
        "hetzner_requests": r.counter.requests,
        "probes": counts,
        "prod_outages": outages(samples, "http-prod"),
        "prod_failures": [
            {"at": x.at, "error": x.error} for x in samples if x.probe == "http-prod" and not x.ok
        ][:20],
    }
    s.result = {"new_server": new_server, "prod_failed": prod_failed}
    verdict, code = ("PASS", 0) if prod_failed == 0 else ("FAIL", EXIT_FAILED)
    emit(
        Finished(
            verdict,
            code,
            f"{node.name} replaced in {total:.1f} s ({new_server}); production answered "
            f"{prod_total - prod_failed}/{prod_total} probes",
            report,
        )
    )
    return code
