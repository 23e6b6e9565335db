"""``--action provision``: the seed's cluster from config.toml onto a Hetzner project, then K3s over SSH.

**Plan** (``--plan``): every Hetzner resource the seed describes — SSH key, network and subnet, firewall with
its rules, a ``spread`` placement group, the three servers (type, image, location, private IP), the load
balancer (services 80/443, TCP health checks 15 s / 10 s / 3, targets over the private network) — is looked
up **by name** and marked ``create``, ``keep`` or ``change`` (with what differs); then per node whether K3s
runs (``systemctl is-active`` over SSH).  Resources carrying the cluster's label that config does not
describe are listed as ``delete`` and removed only with ``--allow-delete``.  Things the API cannot change
in place on a running server (its type, a placement group) are named as notes, never acted on.

**Apply** (``--yes``): the plan's steps in dependency order, each a Hetzner call followed until its action
finishes, timed; then K3s: the server with ``--cluster-init``, its private ``--node-ip``, ``--flannel-iface``,
the control-plane taint and the seed's etcd snapshot schedule; agents join with the server's private URL
and the join token — read from the server over SSH and handed to the agents on **stdin**, never on a
command line, in a log or in the journal.  Then the kubeconfig is fetched (kept 0600 in the state
directory; the API address rewritten to the server's public IP) and the nodes are waited for until Ready.
Running it again converges: kept resources and running K3s are left alone.

Every Hetzner request is counted (a response hook on the library's HTTP session) and the report says how
many a provision spent and how many the project had left (``RateLimit-Remaining``); the library itself
backs off and retries on 429.

**Workloads** (when ``[provision] manifests`` lists directories): once the nodes are Ready, each directory
is applied and waited for in order (``actions/manifests.py``: the operators, then the database ``Cluster``
and ``Pooler``, then DocFast), and then the seed's HA state (``actions/ha.py``) — each an action of its own
holding the cluster lock.  The plan lists every object as ``create`` or ``keep``.  The disaster recovery
(``actions/disaster.py``) skips this stage: its workloads come from the etcd snapshot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import requests
import yaml
from hcloud import APIException, Client
from hcloud.firewalls import FirewallRule
from hcloud.images import Image
from hcloud.load_balancer_types import LoadBalancerType
from hcloud.load_balancers import (
    LoadBalancerAlgorithm,
    LoadBalancerHealthCheck,
    LoadBalancerService,
    LoadBalancerTarget,
)
from hcloud.locations import Location
from hcloud.networks import NetworkSubnet
from hcloud.server_types import ServerType

from console.action import Action, NoParams, Outcome, Plan, param
from console.clients.hetzner import RequestCounter, client, wait_action
from console.clients.ssh import SshError, connect
from console.config import Config, NodeConfig
from console.errors import ActionFailed, OpsError, Unreachable, Verdict
from console.events import Log, PlanItem, StepFinished, StepStarted
from console.k3s import TOKEN_PATH, install_args, installer_command, read_root_file, run_installer
from console.manifests import ManifestError
from console.paths import state_home
from console.report import Report, Section, Table
from console.runner import Run, run_sub

TOKEN_FILE = TOKEN_PATH
KUBECONFIG_FILE = "/etc/rancher/k3s/k3s.yaml"


@dataclass
class Change:
    """One line of the plan; ``run`` (for create/change/delete) performs it and says what it did."""

    kind: str
    name: str
    op: str  # create | keep | change | delete
    detail: str = ""
    run: Callable[[], str] | None = field(default=None, repr=False)

    def row(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "op": self.op, "detail": self.detail}


def _labels(config: Config, **extra: str) -> dict[str, str]:
    return {"cluster": config.cluster.name, **extra}


def _then(message: str, call: Callable[[], Any], timeout: float) -> Callable[[], str]:
    """A plan step: make the call, follow the action(s) it returned, say ``message``."""

    def run() -> str:
        result = call()
        for action in result if isinstance(result, list) else [result]:
            if action is not None and hasattr(action, "status"):
                wait_action(action, timeout)
        return message

    return run


def _rule_key(r: Any) -> tuple[Any, ...]:
    return (
        r.direction,
        r.protocol,
        r.port or None,
        tuple(sorted(r.source_ips or [])),
        tuple(sorted(r.destination_ips or [])),
    )


# ---- the Hetzner plan ---------------------------------------------------------------------------------


def plan_hetzner(config: Config, c: Client) -> list[Change]:
    """What must be created or changed so the project matches config; reads only (a dozen GETs)."""
    hz, pv = config.hetzner, config.provision
    timeout = pv.action_timeout_s
    out: list[Change] = []

    key: Any = c.ssh_keys.get_by_name(pv.ssh_key_name)
    public_key = pv.public_key()
    if key is None:

        def create_key() -> str:
            return f"created #{c.ssh_keys.create(pv.ssh_key_name, public_key, labels=_labels(config)).id}"

        out.append(Change("ssh_key", pv.ssh_key_name, "create", "from " + pv.ssh_public_key_file, create_key))
    elif str(key.public_key).split()[:2] != public_key.split()[:2]:
        out.append(Change("ssh_key", pv.ssh_key_name, "keep", "note: a different public key has this name"))
    else:
        out.append(Change("ssh_key", pv.ssh_key_name, "keep"))

    net: Any = c.networks.get_by_name(hz.network.name)
    subnet = NetworkSubnet(type="cloud", ip_range=hz.network.subnet, network_zone=hz.network.network_zone)
    if net is None:

        def create_network() -> str:
            n = c.networks.create(hz.network.name, hz.network.ip_range, [subnet], labels=_labels(config))
            return f"created #{n.id} {hz.network.ip_range}"

        what = f"{hz.network.ip_range}, subnet {hz.network.subnet}"
        out.append(Change("network", hz.network.name, "create", what, create_network))
    elif hz.network.subnet not in [s.ip_range for s in net.subnets or []]:
        add = _then("subnet added", lambda: net.add_subnet(subnet), timeout)
        out.append(Change("network", hz.network.name, "change", f"add subnet {hz.network.subnet}", add))
    else:
        note = "" if net.ip_range == hz.network.ip_range else f"note: ip_range is {net.ip_range}"
        out.append(Change("network", hz.network.name, "keep", note))

    rules = [
        FirewallRule(
            direction=r.direction,
            protocol=r.protocol,
            source_ips=r.source_ips,
            destination_ips=r.destination_ips,
            port=r.port,
            description=r.description or None,
        )
        for r in hz.firewall.rules
    ]
    fw: Any = c.firewalls.get_by_name(hz.firewall.name)
    if fw is None:

        def create_firewall() -> str:
            labels: Any = _labels(config)  # the library's annotation says str; the API takes a mapping
            return f"created #{c.firewalls.create(hz.firewall.name, rules, labels=labels).firewall.id}"

        out.append(Change("firewall", hz.firewall.name, "create", f"{len(rules)} rules", create_firewall))
    elif sorted(map(_rule_key, fw.rules or [])) != sorted(map(_rule_key, rules)):
        set_rules = _then(f"{len(rules)} rules set", lambda: fw.set_rules(rules), timeout)
        out.append(Change("firewall", hz.firewall.name, "change", "rules differ", set_rules))
    else:
        out.append(Change("firewall", hz.firewall.name, "keep"))

    if c.placement_groups.get_by_name(pv.placement_group) is None:

        def create_pg() -> str:
            made = c.placement_groups.create(pv.placement_group, "spread", _labels(config))
            return f"created #{made.placement_group.id}"

        out.append(Change("placement_group", pv.placement_group, "create", "type spread", create_pg))
    else:
        out.append(Change("placement_group", pv.placement_group, "keep"))

    for node in config.nodes:
        out += plan_server(config, c, node)
    out += plan_load_balancer(config, c)

    desired = {("server", n.name) for n in config.nodes} | {("load_balancer", hz.load_balancer.name)}
    selector = f"cluster={config.cluster.name}"
    listings: list[tuple[str, Any]] = [("server", c.servers), ("load_balancer", c.load_balancers)]
    for kind, listing in listings:
        for obj in listing.get_all(label_selector=selector):
            if (kind, obj.name) not in desired:
                what = f"#{obj.id}: labelled {selector}, not in config"
                out.append(
                    Change(kind, obj.name, "delete", what, _then(f"deleted #{obj.id}", obj.delete, timeout))
                )
    return out


def plan_server(config: Config, c: Client, node: NodeConfig) -> list[Change]:
    hz, pv = config.hetzner, config.provision
    timeout = pv.action_timeout_s
    role = "control-plane" if node.role == "server" else "worker"
    server: Any = c.servers.get_by_name(node.name)
    if server is None:

        def create() -> str:
            net: Any = c.networks.get_by_name(hz.network.name)
            key: Any = c.ssh_keys.get_by_name(pv.ssh_key_name)
            fw: Any = c.firewalls.get_by_name(hz.firewall.name)
            resp = c.servers.create(
                node.name,
                server_type=ServerType(name=hz.server_type),
                image=Image(name=hz.image),
                ssh_keys=[key],
                firewalls=[fw] if node.name in hz.firewall.applied_to else None,
                labels=_labels(config, role=role),
                location=Location(name=hz.location),
                placement_group=c.placement_groups.get_by_name(pv.placement_group),
            )
            wait_action(resp.action, timeout)
            for a in resp.next_actions or []:
                wait_action(a, timeout)
            made: Any = resp.server
            wait_action(made.attach_to_network(net, ip=node.private_ipv4), timeout)
            fresh: Any = c.servers.get_by_id(made.id)
            return f"created #{fresh.id}, public {fresh.public_net.ipv4.ip}, private {node.private_ipv4}"

        what = f"{hz.server_type} {hz.image} {hz.location}, {node.private_ipv4}"
        return [Change("server", node.name, "create", what, create)]
    out: list[Change] = []
    notes = []
    if server.server_type.name != hz.server_type:
        notes.append(f"type is {server.server_type.name} (a resize needs a power-off: left alone)")
    if server.placement_group is None or server.placement_group.name != pv.placement_group:
        notes.append("not in the placement group (joining needs a power-off: left alone)")
    private = {p.network.id: p.ip for p in server.private_net or []}
    net: Any = c.networks.get_by_name(hz.network.name)
    wanted = _labels(config, role=role)
    if net is not None and private.get(net.id) != node.private_ipv4:
        if net.id in private:
            notes.append(f"private IP is {private[net.id]} (want {node.private_ipv4}: left alone)")
        else:
            attach = _then("attached", lambda: server.attach_to_network(net, ip=node.private_ipv4), timeout)
            what = f"attach to {hz.network.name} as {node.private_ipv4}"
            out.append(Change("server", node.name, "change", what, attach))
    labels = dict(server.labels or {})
    if any(labels.get(k) != v for k, v in wanted.items()):
        relabel = _then("labelled", lambda: server.update(labels={**labels, **wanted}), timeout)
        out.append(Change("server", node.name, "change", f"labels {wanted}", relabel))
    if not out:
        out.append(Change("server", node.name, "keep", "; ".join(f"note: {n}" for n in notes)))
    return out


def _services(config: Config) -> list[LoadBalancerService]:
    lbc = config.hetzner.load_balancer
    hc = lbc.health_check
    return [
        LoadBalancerService(
            protocol="tcp",
            listen_port=port,
            destination_port=port,
            proxyprotocol=False,
            health_check=LoadBalancerHealthCheck(
                protocol=hc.protocol,
                port=port,
                interval=hc.interval_s,
                timeout=hc.timeout_s,
                retries=hc.retries,
            ),
        )
        for port in lbc.ports
    ]


def plan_load_balancer(config: Config, c: Client) -> list[Change]:
    hz = config.hetzner
    lbc, timeout = hz.load_balancer, config.provision.action_timeout_s
    lb: Any = c.load_balancers.get_by_name(lbc.name)
    out: list[Change] = []

    def add_targets(lb_id: int, names: list[str]) -> None:
        bound: Any = c.load_balancers.get_by_id(lb_id)
        for name in names:
            server = c.servers.get_by_name(name)
            if server is None:
                raise ActionFailed(f"target {name}: no such server")
            target = LoadBalancerTarget(type="server", server=server, use_private_ip=lbc.use_private_ip)
            wait_action(bound.add_target(target), timeout)

    def attach(bound: Any) -> Any:
        return bound.attach_to_network(c.networks.get_by_name(hz.network.name), ip=lbc.private_ipv4)

    if lb is None:

        def create() -> str:
            resp = c.load_balancers.create(
                lbc.name,
                load_balancer_type=LoadBalancerType(name=lbc.type),
                algorithm=LoadBalancerAlgorithm(type=lbc.algorithm),
                services=_services(config),
                labels=_labels(config),
                location=Location(name=hz.location),
            )
            wait_action(resp.action, timeout)
            made: Any = resp.load_balancer
            wait_action(attach(made), timeout)
            add_targets(made.id, lbc.targets)
            fresh: Any = c.load_balancers.get_by_id(made.id)
            return f"created #{fresh.id}, public {fresh.public_net.ipv4.ip} (point DNS here)"

        ports = "/".join(map(str, lbc.ports))
        what = f"{lbc.type}, tcp {ports}, targets {', '.join(lbc.targets)}"
        return [Change("load_balancer", lbc.name, "create", what, create)]
    if not lb.private_net:
        out.append(
            Change(
                "load_balancer",
                lbc.name,
                "change",
                f"attach to {hz.network.name}",
                _then("attached", lambda: attach(lb), timeout),
            )
        )
    have = {s.listen_port: s for s in lb.services or []}
    for svc in _services(config):
        cur, hc = have.get(svc.listen_port), svc.health_check
        assert hc is not None
        if cur is None:
            add = _then("service added", partial(lb.add_service, svc), timeout)
            out.append(Change("load_balancer", lbc.name, "change", f"add service tcp {svc.listen_port}", add))
            continue
        now = cur.health_check
        if (now.interval, now.timeout, now.retries) != (hc.interval, hc.timeout, hc.retries):
            update = _then("service updated", partial(lb.update_service, svc), timeout)
            what = f"health check of {svc.listen_port}: {hc.interval} s / {hc.timeout} s / {hc.retries}"
            out.append(Change("load_balancer", lbc.name, "change", what, update))
    servers = {s.id: s.name for s in c.servers.get_all()}
    targeted = {
        servers.get(t.server.id) for t in lb.targets or [] if t.type == "server" and t.server is not None
    }
    missing = [n for n in lbc.targets if n not in targeted]
    if missing:
        add_missing = _then("targets added", lambda: add_targets(lb.id, missing), timeout)
        out.append(
            Change("load_balancer", lbc.name, "change", f"add targets {', '.join(missing)}", add_missing)
        )
    if not out:
        out.append(Change("load_balancer", lbc.name, "keep"))
    return out


# ---- K3s over SSH -------------------------------------------------------------------------------------


async def k3s_state(config: Config, node: NodeConfig) -> str:
    """ "running", "absent" (reachable, no K3s) or "unreachable" (no server yet, or powered off)."""
    unit = "k3s" if node.role == "server" else "k3s-agent"
    try:
        conn = await connect(node.ssh_host, config.ssh)
    except SshError:
        return "unreachable"
    async with conn:
        result = await conn.run(f"systemctl is-active {unit}", check=False)
    return "running" if result.exit_status == 0 else "absent"


async def install_k3s(config: Config, node: NodeConfig, token: str | None) -> str:
    """Run the K3s installer on ``node`` with this project's flags; for an agent the join token goes in on
    stdin."""
    server = next(n for n in config.nodes if n.role == "server")
    env = {"K3S_URL": f"https://{server.private_ipv4}:6443"} if node.role == "agent" else {}
    command = installer_command(install_args(config, node), config.cluster.k3s_version, env)
    return await run_installer(config, node, command, token)


def _save_kubeconfig(config: Config, server: NodeConfig, text: str) -> Path:
    """Keep the fetched admin kubeconfig (0600) with its API address pointed at the server's public IP."""
    doc = yaml.safe_load(text)
    for cl in doc.get("clusters") or []:
        url = cl.get("cluster", {}).get("server", "")
        if "127.0.0.1:6443" in url or "localhost:6443" in url:
            cl["cluster"]["server"] = f"https://{server.public_ipv4}:6443"
    path = state_home() / f"kubeconfig-{config.cluster.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def _nodes_ready(config: Config, timeout: float) -> list[str]:
    """Wait until every configured node is Ready in the API; the ones that are not (empty: all Ready)."""
    from console.clients.kube import KubeError, request
    from console.kubeobj import is_ready
    from console.sources.kube import api_client

    api: Any = await api_client(config.kubernetes.kubeconfig or None, config.kubernetes.context)
    want = {n.name for n in config.nodes}
    missing = sorted(want)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                items = (await request(api, "GET", "/api/v1/nodes")).get("items", [])
            except KubeError:
                items = []
            ready = {n["metadata"]["name"] for n in items if is_ready(n)}
            missing = sorted(want - ready)
            if not missing:
                return []
            await asyncio.sleep(1.0)
    finally:
        await api.close()
    return missing


# ---- the action -----------------------------------------------------------------------------------------


def _k3s_rows(config: Config, k3s: dict[str, str]) -> list[dict[str, str]]:
    return [
        {
            "kind": "k3s",
            "name": n.name,
            "op": "keep" if k3s[n.name] == "running" else "create",
            "detail": f"{n.role} {config.cluster.k3s_version}"
            + ("" if k3s[n.name] == "running" else f" ({k3s[n.name]})"),
        }
        for n in config.nodes
    ]


async def _manifest_rows(config: Config, k3s: dict[str, str]) -> list[dict[str, str]]:
    """The workloads stage's rows: asked of the cluster when its server runs K3s, else all ``create``."""
    from actions.manifests import plan_rows
    from console.clients.kube import KubeError
    from console.sources.kube import api_client

    if not config.provision.manifests:
        return []
    server = next(n for n in config.nodes if n.role == "server")
    if k3s[server.name] != "running":
        return await plan_rows(config, None)
    saved = state_home() / f"kubeconfig-{config.cluster.name}.yaml"
    k = (fresh_config(config) if saved.exists() else config).kubernetes
    api: Any = await api_client(k.kubeconfig or None, k.context)
    try:
        return await plan_rows(config, api)
    except KubeError as exc:
        raise ManifestError(f"the cluster's API did not answer the plan: {exc.message}") from None
    finally:
        await api.close()


def _item(row: dict[str, str]) -> PlanItem:
    text = f"{row['kind']:<16} {row['name']:<22} {row['detail']}".rstrip()
    return PlanItem(row["op"], text, f"{row['kind']} {row['name']}", row["detail"])


@dataclass(frozen=True)
class ProvisionParams:
    plan: bool = param("--plan", "show the plan only (changes nothing; as --dry-run)", False, tui=False)
    allow_delete: bool = param("--allow-delete", "also delete labelled resources not in config", False)
    workloads: bool = True  # the manifests and HA stages (the disaster recovery skips them: not a flag)


@dataclass(frozen=True)
class ProvisionReport(Report):
    kind = "provision"
    timings: dict[str, float]
    total_s: float = 0.0
    hetzner_requests: int = 0
    rate_limit_remaining: int | None = None

    def sections(self, full: bool) -> list[Section]:
        rows = [(k, f"{v:.1f}") for k, v in self.timings.items()]
        return [Table("steps", ("step", "seconds"), rows)] if full else []


class Provision(Action[ProvisionParams]):
    """The Hetzner resources and K3s, then the workloads stages (module docstring).  The journal records it;
    the cluster Lease cannot guard it — before K3s runs there is no API to hold a Lease in — so the
    workloads stages, each an action of its own, take the lock."""

    name = "provision"
    title = "Provision the cluster"
    description = (
        "Hetzner resources and K3s from config: --plan shows create/keep/change/delete, --yes applies"
    )
    Params = ProvisionParams
    takes_lock = False
    nothing_without = "provision creates servers: add --yes (or --plan to see what)"
    guide = "Creates what the plan below says is missing (nothing is deleted). Type the cluster's name."

    def __init__(self, config: Config, params: ProvisionParams) -> None:
        super().__init__(config, params)
        self.counter = RequestCounter()
        self.changes: list[Change] = []
        self.timings: dict[str, float] = {}
        self.started = 0.0

    def confirm_word(self) -> str:
        return self.config.cluster.name

    def dry_run_requested(self) -> bool:
        return self.params.plan

    def journal_params(self) -> dict[str, Any]:
        return {"allow_delete": self.params.allow_delete}

    async def plan(self, run: Run) -> Plan:
        try:
            c = client(self.config, self.counter)
            self.changes = await asyncio.to_thread(plan_hetzner, self.config, c)
        except requests.RequestException:
            raise Unreachable(f"the Hetzner API at {self.config.hetzner.endpoint} is unreachable") from None
        except APIException as exc:
            raise OpsError(f"Hetzner API refused the plan: {exc.message} ({exc.code})") from None
        k3s = {n.name: await k3s_state(self.config, n) for n in self.config.nodes}
        rows = [ch.row() for ch in self.changes] + _k3s_rows(self.config, k3s)
        if self.params.workloads:
            rows += await _manifest_rows(self.config, k3s)
        pending = [r for r in rows if r["op"] != "keep"]
        counts = {op: sum(1 for r in rows if r["op"] == op) for op in ("create", "change", "delete", "keep")}
        said = ", ".join(f"{n} to {op}" for op, n in counts.items() if n and op != "keep") or "no changes"
        summary = f"{said} ({counts['keep']} kept; {self.counter.requests} Hetzner requests to plan)"
        report = {"changes": rows, "pending": len(pending), "hetzner_requests": self.counter.requests}
        return Plan([_item(r) for r in rows], summary, report)

    async def execute(self, run: Run) -> Outcome:
        self.started = time.monotonic()
        await self._infra(run)
        took = time.monotonic() - self.started
        infra = f"provisioned in {took:.1f} s with {self.counter.requests} Hetzner requests"
        if self.counter.remaining is not None:
            infra += f" ({self.counter.remaining} left this hour)"
        if not self.params.workloads or not self.config.provision.manifests:
            return Outcome(Verdict.DONE, infra, self.result())
        run.emit(Log("info", f"DONE: {infra}"))
        from actions.ha import Ha
        from actions.manifests import ApplyManifests

        fresh = fresh_config(self.config)
        for part, stage in (("manifests", ApplyManifests(fresh, NoParams())), ("ha", Ha(fresh, NoParams()))):
            what = (
                "the configured manifests, stage by stage" if part == "manifests" else "the seed's HA state"
            )
            run.emit(StepStarted(part, what))
            t0 = time.monotonic()
            done = await run_sub(run, stage)
            self.timings[part] = round(time.monotonic() - t0, 2)
            run.emit(StepFinished(part, done.exit_code == 0, f"{self.timings[part]:.1f} s"))
            if done.verdict is Verdict.REFUSED:
                return Outcome(Verdict.REFUSED, f"provision: {part} refused: {done.summary}", self.result())
            if done.exit_code != 0:
                return Outcome(done.verdict, f"provision stopped at {part}: {done.summary}", self.result())
        total = time.monotonic() - self.started
        summary = (
            f"provisioned with workloads in {total:.1f} s ({self.counter.requests} Hetzner requests); "
            "the dashboard shows the result"
        )
        return Outcome(Verdict.DONE, summary, self.result())

    def result(self) -> ProvisionReport:
        total = time.monotonic() - self.started if self.started else 0.0
        return ProvisionReport(self.timings, round(total, 2), self.counter.requests, self.counter.remaining)

    async def _infra(self, run: Run) -> None:
        """The Hetzner resources in the plan's order, each followed to its end, then K3s node by node."""
        config, emit, timings = self.config, run.emit, self.timings
        for ch in self.changes:
            if ch.run is None or (ch.op == "delete" and not self.params.allow_delete):
                if ch.op == "delete":
                    emit(
                        Log("warning", f"{ch.kind} {ch.name} not deleted (pass --allow-delete): {ch.detail}")
                    )
                continue
            step = f"{ch.kind} {ch.name}"
            emit(StepStarted(ch.op, f"{step}: {ch.detail}"))
            t0 = time.monotonic()
            done = await asyncio.to_thread(ch.run)
            timings[f"{ch.op} {step}"] = round(time.monotonic() - t0, 2)
            run.step(f"{ch.op} {step}", "done", {"result": done})
            emit(StepFinished(ch.op, True, f"{step}: {done} ({timings[f'{ch.op} {step}']:.1f} s)"))
        server = next(n for n in config.nodes if n.role == "server")
        token: str | None = None
        for node in [server, *(n for n in config.nodes if n.role == "agent")]:
            if await k3s_state(config, node) == "running":
                emit(Log("keep", f"k3s on {node.name} already running"))
                continue
            if node.role == "agent" and token is None:
                token = (await read_root_file(config, server, TOKEN_FILE)).strip()
            emit(StepStarted("k3s", f"install K3s {config.cluster.k3s_version} ({node.role}) on {node.name}"))
            t0 = time.monotonic()
            said = await retry_ssh(
                partial(install_k3s, config, node, token if node.role == "agent" else None)
            )
            timings[f"k3s {node.name}"] = round(time.monotonic() - t0, 2)
            run.step(f"k3s {node.name}", "done", {})
            emit(StepFinished("k3s", True, f"{node.name}: {said} ({timings[f'k3s {node.name}']:.1f} s)"))
        kubeconfig = _save_kubeconfig(config, server, await read_root_file(config, server, KUBECONFIG_FILE))
        emit(Log("info", f"kubeconfig of the new cluster saved to {kubeconfig} (mode 0600)"))
        emit(StepStarted("ready", "every node Ready"))
        t0 = time.monotonic()
        missing = await _nodes_ready(config, config.provision.node_ready_timeout_s)
        timings["nodes ready"] = round(time.monotonic() - t0, 2)
        emit(
            StepFinished(
                "ready", not missing, f"not Ready: {', '.join(missing)}" if missing else "all nodes Ready"
            )
        )
        if missing:
            raise ActionFailed(
                f"nodes not Ready after {config.provision.node_ready_timeout_s:g} s: {', '.join(missing)}"
            )


def fresh_config(config: Config) -> Config:
    """The config pointed at the kubeconfig the provision just fetched (its current context)."""
    path = state_home() / f"kubeconfig-{config.cluster.name}.yaml"
    doc = yaml.safe_load(path.read_text())
    context = str(doc.get("current-context") or config.kubernetes.context)
    kube = config.kubernetes.model_copy(update={"kubeconfig": str(path), "context": context})
    return config.model_copy(update={"kubernetes": kube})


async def retry_ssh(fn: Callable[[], Any], attempts: int = 30) -> Any:
    """A server that was just created takes a moment to answer SSH: retry connection failures only."""
    for i in range(attempts):
        try:
            return await fn()
        except SshError:
            if i == attempts - 1:
                raise
            await asyncio.sleep(2.0)
    raise AssertionError("unreachable")
