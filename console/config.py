"""config.toml -> a typed, validated :class:`Config`.

Why pydantic with ``extra="forbid"``: a typo in an operations console's config must be an error, not a
silently ignored key that leaves a safety setting at its default.  Every problem is reported as one line
``file:line: field: message`` (TOML keeps no positions, so :func:`_locate` finds the line of a dotted field by
walking the table headers), and the caller exits 2.

Secrets are references only (``token_env``, ``token_file``, ``passphrase_env``): this file never holds one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from console.config_file import ENV_CONFIG, ConfigError, default_config_path, read_toml
from console.watch_config import WatchConfig

__all__ = ["ENV_CONFIG", "Config", "ConfigError", "default_config_path", "load_config"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterConfig(_Model):
    name: str
    k3s_version: str
    cluster_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    flannel_iface: str = "enp7s0"


class NetworkConfig(_Model):
    id: int
    name: str
    ip_range: str
    subnet: str
    network_zone: str = "eu-central"


class FirewallRule(_Model):
    description: str = ""
    direction: Literal["in", "out"]
    protocol: Literal["tcp", "udp", "icmp", "esp", "gre"]
    port: str | None = None
    source_ips: list[str] = Field(default_factory=list)
    destination_ips: list[str] = Field(default_factory=list)


class FirewallConfig(_Model):
    id: int
    name: str
    applied_to: list[str] = Field(default_factory=list)
    rules: list[FirewallRule] = Field(default_factory=list)


class HealthCheckConfig(_Model):
    protocol: Literal["tcp", "http"] = "tcp"
    interval_s: int = Field(15, ge=3, le=60)
    timeout_s: int = Field(10, ge=1, le=60)
    retries: int = Field(3, ge=0, le=5)


class LoadBalancerConfig(_Model):
    id: int
    name: str
    type: str = "lb11"
    public_ipv4: str
    private_ipv4: str | None = None
    algorithm: Literal["round_robin", "least_connections"] = "round_robin"
    targets: list[str]
    ports: list[int]
    use_private_ip: bool = True
    health_check: HealthCheckConfig = HealthCheckConfig()


class HetznerConfig(_Model):
    endpoint: str = "https://api.hetzner.cloud/v1"
    token_env: str | None = "HCLOUD_TOKEN"
    token_file: Path | None = None
    location: str
    datacenter: str
    server_type: str
    image: str
    requests_per_hour: int = Field(3600, gt=0)
    poll_budget_fraction: float = Field(0.10, gt=0, le=1)
    network: NetworkConfig
    firewall: FirewallConfig
    load_balancer: LoadBalancerConfig

    def read_token(self) -> str:
        """The API token, from the file or the environment variable named here (never from config)."""
        if self.token_file is not None:
            try:
                return self.token_file.expanduser().read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"hetzner.token_file: cannot read {self.token_file}: {exc.strerror}"
                ) from None
        if self.token_env and os.environ.get(self.token_env):
            return os.environ[self.token_env]
        raise ConfigError(f"hetzner: no API token: set ${self.token_env} or hetzner.token_file")


class NodeConfig(_Model):
    name: str
    role: Literal["server", "agent"]
    hetzner_id: int
    public_ipv4: str
    private_ipv4: str
    ssh_host: str
    taints: list[str] = Field(default_factory=list)


class KubernetesConfig(_Model):
    kubeconfig: str = ""
    context: str = "default"
    deployer_context: str | None = None


class NamespacesConfig(_Model):
    prod: str
    staging: str
    database: str
    cnpg_operator: str = "cnpg-system"
    cert_manager: str = "cert-manager"
    system: str = "kube-system"


class DatabaseConfig(_Model):
    cluster: str
    namespace: str
    instances: int = Field(2, ge=1)
    postgres_version: str = "17"
    storage: str = "10Gi"
    pooler: str
    pooler_instances: int = Field(2, ge=1)
    pooler_mode: Literal["session", "transaction"] = "transaction"
    databases: list[str]
    app_user: str
    credentials_secret: str
    superuser_secret: str
    max_replica_lag_bytes: int = Field(16 * 1024 * 1024, ge=0)
    # A replication slot keeps every WAL file from its restart LSN on: one whose replica is gone or stuck
    # fills the primary's 10Gi volume.  More than this retained is a finding (db-slot-retention).
    max_slot_retained_bytes: int = Field(1024 * 1024 * 1024, ge=0)
    # How the console reaches PostgreSQL: an SSH tunnel through this node alias (OpenSSH config) to each
    # instance pod's IP and port, as the superuser from ``superuser_secret`` (a Kubernetes secret).
    tunnel_via: str = "k3s-mgr"
    port: int = Field(5432, gt=0, lt=65536)
    # CNPG's pg_hba accepts only TLS ("hostssl"); the lab's PostgreSQL speaks plain TCP on loopback.
    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "require"
    poll_interval_s: float = Field(5.0, gt=0)
    # Where pg_dump/pg_restore run: "exec" in the instance pod (the server's own binaries, through the
    # Kubernetes exec subresource), or "local" on this machine (refused when its tools are older than the
    # server: pg_dump cannot dump a newer major version).
    dump_via: Literal["exec", "local"] = "exec"


class BorgRepository(_Model):
    name: str
    path: str
    what: Literal["db", "cluster"]
    schedule: str
    max_age_hours: float = Field(gt=0)
    keep_daily: int = Field(7, ge=0)
    keep_weekly: int = Field(4, ge=0)


class BackupsConfig(_Model):
    # user@host[:port] (the Storage Box) or an OpenSSH alias; repositories are ssh://STORAGE_BOX/PATH.
    storage_box: str
    passphrase_env: str | None = "BORG_PASSPHRASE"
    passcommand: str | None = None
    repositories: list[BorgRepository]
    # Borg over SSH costs a connection and a repository lock per look: every 5 minutes is plenty for a
    # 6-hourly schedule.
    poll_interval_s: float = Field(300.0, gt=0)
    # How long an action's borg waits for a repository lock held by another borg (0: fail at once, with
    # the advice to retry with --lock-wait).
    lock_wait_s: int = Field(0, ge=0)

    def repo_url(self, repo: BorgRepository) -> str:
        path = repo.path.removeprefix("./")
        return f"ssh://{self.storage_box}/./{path}"


class HealthConfig(_Model):
    prod_url: str
    staging_url: str
    interval_s: float = Field(10.0, gt=0)
    # DNS servers ("host" or "host:port") for the record check; empty means the system resolver.
    dns_servers: list[str] = Field(default_factory=list)
    # host -> "address:port", like curl --resolve (the lab points the seed's hosts at its load balancer).
    resolve: dict[str, str] = Field(default_factory=dict)


class DnsRecord(_Model):
    name: str
    type: Literal["A", "AAAA", "CNAME", "MX", "TXT"]
    value: str


class SloConfig(_Model):
    max_http_outage_s: float = 15
    max_db_write_outage_s: float = 30
    max_time_to_new_primary_s: float = 30
    recovered_within_min: float = 10
    health_checks_required: int = 4
    # Production's outage seconds a calendar month may spend (the watcher's probes and the drills, in
    # console/slo_ledger.py); 1296 s is 99.95 % of 30 days.  `promote` refuses once it is spent.
    monthly_budget_s: float = Field(1296.0, gt=0)


class DrillConfig(_Model):
    """How drills probe and lock.  The lock is a Lease in ``lock_namespace`` (every console of this cluster
    must agree on it); a holder that stops renewing loses it after ``lease_duration_s``."""

    probe_interval_s: float = Field(0.5, gt=0, le=5)
    probe_timeout_s: float = Field(3.0, gt=0, le=30)
    lock_namespace: str = "kube-system"
    lock_name: str = "opsconsole-lock"
    lease_duration_s: int = Field(15, ge=5, le=300)
    # How long the cluster may take to return to full steady state after the rollback.
    steady_timeout_s: float = Field(300.0, gt=0)
    # While a drill runs, the Hetzner poller looks every this many seconds (the action's budget, not the
    # live view's): load-balancer target health is part of the observation.
    hetzner_poll_s: float = Field(5.0, ge=1)


class SshConfig(_Model):
    """The operator's own OpenSSH client config: node aliases (``nodes[].ssh_host``) resolve through it."""

    config: str = ""  # empty: ~/.ssh/config
    connect_timeout_s: float = Field(10.0, gt=0)

    def config_path(self) -> Path:
        return Path(self.config).expanduser() if self.config else Path.home() / ".ssh" / "config"


class ProbeTiming(_Model):
    period_s: int = Field(gt=0)
    failure_threshold: int = Field(gt=0)


class ResourceSpec(_Model):
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class HaPatch(_Model):
    """One of the seed's runtime HA patches, as the state that must hold (checked live, reapplied by #8)."""

    name: str
    kind: Literal["Deployment", "Pooler"]
    namespace: str
    object: str
    replicas: int | None = Field(None, ge=1)
    anti_affinity: Literal["preferred", "required"] | None = None
    topology_spread: Literal["DoNotSchedule", "ScheduleAnyway"] | None = None
    readiness: ProbeTiming | None = None
    liveness: ProbeTiming | None = None
    # NoExecute tolerations for node.kubernetes.io/not-ready and /unreachable.
    toleration_seconds: int | None = Field(None, ge=0)
    # Requests and limits for every container of the pod template (quantities compared by value).
    resources: ResourceSpec | None = None
    description: str = ""
    # False: an opt-in item from the seed's "Future Improvements" — listed, never checked or applied.
    enabled: bool = True


class HaBudget(_Model):
    """A PodDisruptionBudget the console creates and owns (the seed's "at least 1 pod stays running")."""

    name: str
    namespace: str
    object: str  # the PodDisruptionBudget's name
    match_labels: dict[str, str] = Field(min_length=1)
    min_available: int = Field(1, ge=0)
    description: str = ""
    enabled: bool = False


class HaNetworkPolicy(_Model):
    """The seed's "only DocFast -> PgBouncer, not direct to DB", as two NetworkPolicies in the database
    namespace (built by :mod:`console.ha_policy` from the names elsewhere in this config)."""

    name: str = "database-via-pooler"
    description: str = "DocFast reaches PgBouncer, never PostgreSQL directly"
    # Also allowed to reach PostgreSQL: these CIDRs (the nodes' private network: the console's SSH tunnel
    # and `kubectl port-forward` arrive from a node, not from a pod).
    allow_cidrs: list[str] = Field(default_factory=list)
    enabled: bool = False


class HaConfig(_Model):
    patches: list[HaPatch] = Field(default_factory=list)
    budgets: list[HaBudget] = Field(default_factory=list)
    network_policy: HaNetworkPolicy = HaNetworkPolicy()


class ReleaseConfig(_Model):
    """Promotion from staging to production (actions/promote.py).

    Two routes: ``image`` sets production's container to the exact digest staging soaked on
    (``repo:tag@sha256:…``); ``tag`` is the seed's pipeline — tag the commit staging was built from with
    the next ``v*`` version in ``git_repository``, push it, and follow production while ``promote.yml``
    builds and deploys it.  Either way the rollout is watched, post-checks held, and a failure rolled back."""

    registry: str = "git.cloonar.com"
    deployment: str = "docfast"
    container: str = "docfast"
    tag_pattern: str = r"^v\d+\.\d+\.\d+$"
    route: Literal["image", "tag"] = "image"
    # Route "tag": the repository (over SSH, through the operator's ssh config), the branch deploy.yml builds,
    # and how staging's image tag names the commit it was built from.
    git_repository: str = "git@git.cloonar.com:openclawd/docfast.git"
    branch: str = "main"
    staging_commit_pattern: str = r"^main-(?P<commit>[0-9a-f]{7,40})$"
    pipeline_timeout_s: float = Field(900.0, gt=0)  # tag pushed -> production's image set by promote.yml
    soak_s: float = Field(600.0, ge=0)  # staging healthy on the exact digest at least this long
    max_backup_age_h: float = Field(6.0, gt=0)  # a database backup at most this old
    rollout_timeout_s: float = Field(300.0, gt=0)  # production's rollout must finish within this
    post_check_s: float = Field(60.0, ge=0)  # production health through the LB held this long afterwards
    # Post-check errors tolerated: failed health checks through the LB plus restarts of the new pods.
    max_post_check_errors: int = Field(0, ge=0)


class ProvisionConfig(_Model):
    """What `--action provision` needs beyond the seed's tables (#9).

    The seed names the SSH key (``openclaw``) but not a placement group; a ``spread`` group keeps the three
    servers on different hosts, which is what an HA cluster of three wants.  The etcd schedule is the
    seed's (daily at 03:00, 5 kept)."""

    ssh_key_name: str = "openclaw"
    ssh_public_key_file: str = "~/.ssh/id_ed25519.pub"
    placement_group: str = "k3s-spread"
    etcd_snapshot_cron: str = "0 3 * * *"
    etcd_snapshot_retention: int = Field(5, ge=1)
    action_timeout_s: float = Field(300.0, gt=0)  # one Hetzner action (server create, attach) at most
    node_ready_timeout_s: float = Field(300.0, gt=0)
    # Directories of manifests applied in order once K3s runs (operators, database, apps); see
    # console/manifests.py.  Empty: provision stops at Ready nodes.  Relative paths are from the cwd.
    manifests: list[str] = Field(default_factory=list)
    workloads_timeout_s: float = Field(600.0, gt=0)  # one directory's workloads up, at most

    def manifest_dirs(self) -> list[Path]:
        return [Path(d).expanduser() for d in self.manifests]

    def public_key(self) -> str:
        path = Path(self.ssh_public_key_file).expanduser()
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"provision.ssh_public_key_file: cannot read {path}: {exc.strerror}") from None


class LabMarker(_Model):
    """Present only in the config `lab up` writes: tells the banner this is the twin, and where it lives."""

    dir: Path


class Config(_Model):
    cluster: ClusterConfig
    hetzner: HetznerConfig
    nodes: list[NodeConfig] = Field(min_length=1)
    kubernetes: KubernetesConfig = KubernetesConfig()
    namespaces: NamespacesConfig
    database: DatabaseConfig
    backups: BackupsConfig
    health: HealthConfig
    dns: list[DnsRecord] = Field(default_factory=list)
    slo: SloConfig = SloConfig()
    ssh: SshConfig = SshConfig()
    ha: HaConfig = HaConfig()
    release: ReleaseConfig = ReleaseConfig()
    drill: DrillConfig = DrillConfig()
    provision: ProvisionConfig = ProvisionConfig()
    watch: WatchConfig = WatchConfig()
    lab: LabMarker | None = None

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        names = {n.name for n in self.nodes}
        if len(names) != len(self.nodes):
            raise ValueError("nodes: node names must be unique")
        for target in self.hetzner.load_balancer.targets:
            if target not in names:
                raise ValueError(f"hetzner.load_balancer.targets: {target!r} is not a node")
        for target in self.hetzner.firewall.applied_to:
            if target not in names:
                raise ValueError(f"hetzner.firewall.applied_to: {target!r} is not a node")
        if self.database.tunnel_via not in {n.ssh_host for n in self.nodes}:
            raise ValueError(f"database.tunnel_via: {self.database.tunnel_via!r} is no node's ssh_host")
        return self

    def node(self, name: str) -> NodeConfig:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    config: Config


def load_config(path: Path) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` naming every problem (file:line, field)."""
    text, raw = read_toml(path)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = _dotted(loc) or "(top level)"
            line = _locate(text, loc)
            where = f"{path}:{line}" if line else str(path)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{where}: {field}: {msg}")
        raise ConfigError("; ".join(lines)) from None


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"]+)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def _locate(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best line for a pydantic error location: the key's line, else its table's header line.

    Array-of-tables (``[[nodes]]``) are counted so ``nodes[1].hetzner_id`` lands in the second block.
    """
    counters: dict[str, int] = {}
    table: tuple[int | str, ...] = ()
    best: int | None = None
    best_len = -1
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            names = header.group(2).replace('"', "").split(".")
            path: list[int | str] = []
            for i, name in enumerate(names):
                path.append(name)
                key = ".".join(names[: i + 1])
                if header.group(1) == "[[" and i == len(names) - 1:
                    counters[key] = counters.get(key, -1) + 1
                    # A new array element resets the counters of the tables nested in it.
                    for k in [k for k in counters if k.startswith(key + ".")]:
                        del counters[k]
                if key in counters:
                    path.append(counters[key])
            table = tuple(path)
            if _prefix_len(table, loc) == len(table) and len(table) > best_len:
                best, best_len = number, len(table)
            continue
        key_match = _KEY.match(line)
        if key_match:
            full = (*table, key_match.group(1))
            if _prefix_len(full, loc) == len(full) and len(full) > best_len:
                best, best_len = number, len(full)
    return best


def _prefix_len(path: tuple[int | str, ...], loc: tuple[int | str, ...]) -> int:
    n = 0
    for a, b in zip(path, loc, strict=False):
        if a != b:
            break
        n += 1
    return n
