"""The typed snapshot every view renders: the dashboard's panels and ``--action status --json`` alike.

Plain frozen dataclasses (``dataclasses.asdict`` gives the JSON), built from raw source data by
:mod:`console.snapshot`; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class SourceState(StrEnum):
    """How much to trust a panel: its source's last outcome."""

    PENDING = "pending"  # no answer yet
    OK = "ok"
    STALE = "stale"  # answered before, failing now: the data shown is old
    UNREACHABLE = "unreachable"  # never answered
    FORBIDDEN = "forbidden"  # the credentials may not read it (403)


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


SUPPLEMENTARY_SOURCES = frozenset({"metrics"})  # see SourceStatus.essential


@dataclass(frozen=True)
class SourceStatus:
    name: str
    state: SourceState
    updated_at: float | None = None
    error: str | None = None

    @property
    def essential(self) -> bool:
        """Whether the verdict, the findings and a panel's state stand on this source.  A supplementary
        one adds to panels that show something else (usage beside the Nodes and Pods): when it fails its
        cells read ``-`` and its state is listed, nothing more."""
        return self.name not in SUPPLEMENTARY_SOURCES


@dataclass(frozen=True)
class Usage:
    """What a node or pod uses now, as metrics.k8s.io (metrics-server) measures it."""

    cpu_m: int  # millicores
    memory: int  # bytes (the working set)


@dataclass(frozen=True)
class Node:
    name: str
    ready: bool | None
    roles: tuple[str, ...]
    taints: tuple[str, ...]
    version: str
    internal_ip: str
    external_ip: str
    unschedulable: bool
    pods: int
    hetzner_id: int | None = None
    hetzner_status: str | None = None
    cpu_allocatable_m: int | None = None  # status.allocatable: what pods may use in all
    memory_allocatable: int | None = None


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    node: str | None
    phase: str
    ready: bool
    restarts: int
    terminating: bool
    owner: str
    containers_ready: int = 0
    containers: int = 0
    waiting: str | None = None  # a container's waiting reason (CrashLoopBackOff, ImagePullBackOff, …)
    last_terminated: str | None = None  # the last termination's reason and exit code ("OOMKilled 137")
    last_terminated_at: str | None = None  # when that container last stopped (its last restart)
    unschedulable: str | None = None  # a Pending pod's scheduler message (PodScheduled False)
    created: str | None = None
    cpu_request_m: int | None = None  # the containers' CPU requests summed (None: none asks)
    memory_limit: int | None = None  # the containers' memory limits summed (None: one is unlimited)


@dataclass(frozen=True)
class Workload:
    namespace: str
    name: str
    kind: str
    desired: int
    ready: int
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class DbInstance:
    """One CNPG instance as Kubernetes and the Cluster's status report it."""

    name: str
    role: str
    node: str | None
    ready: bool
    status: str | None = (
        None  # the Cluster's instancesStatus: healthy | replicating | failed (None: unlisted)
    )
    qos: str | None = None  # the pod's status.qosClass
    restarts: int | None = None  # its containers' restartCount (None: no container status yet)
    started_at: str | None = None  # the postgres container's state.running.startedAt
    fenced: bool = False  # named (or "*") in the Cluster's cnpg.io/fencedInstances


@dataclass(frozen=True)
class ReplicationSlot:
    """A slot on the primary (pg_replication_slots): WAL from its restart LSN on is kept for it."""

    name: str
    type: str  # physical | logical
    active: bool
    restart_lsn: str | None
    retained_bytes: int | None  # the primary's current LSN minus restart_lsn (None: it reserves no WAL)


@dataclass(frozen=True)
class Replication:
    """One instance as PostgreSQL itself reports it (over the SSH tunnel), not as Kubernetes does."""

    instance: str
    role: str  # primary | replica | unreachable
    state: str  # primary: "primary"; replica: the primary's WAL sender state, else its own receiver's
    lsn: str | None  # primary: current WAL LSN; replica: last replayed LSN
    lag_bytes: int | None  # replicas: primary's current LSN minus this replica's replay LSN
    lag_seconds: float | None  # replicas: pg_stat_replication.replay_lag (None when idle and caught up)
    error: str | None = None
    system_id: str | None = None  # pg_control_system().system_identifier
    started_at: str | None = None  # pg_postmaster_start_time(): when this PostgreSQL last started
    wal_file: str | None = None  # primary: pg_walfile_name(pg_current_wal_lsn())
    receiver: str | None = None  # replica: its own pg_stat_wal_receiver.status ("stopped": no receiver)
    # A replica as the primary's pg_stat_replication reports it (None: the primary lists no such sender).
    sent_lsn: str | None = None
    write_lsn: str | None = None
    flush_lsn: str | None = None
    replay_lsn: str | None = None
    write_lag_s: float | None = None
    flush_lag_s: float | None = None
    sync_state: str | None = None  # async | potential | sync | quorum
    slot: str | None = None  # replica: its slot on the primary
    slot_retained_bytes: int | None = None  # replica: the WAL that slot keeps on the primary
    slots: tuple[ReplicationSlot, ...] = ()  # primary: every slot it holds


@dataclass(frozen=True)
class DisruptionBudget:
    """A PodDisruptionBudget of the database cluster (CNPG's ``<cluster>-primary`` and ``<cluster>``)."""

    name: str
    min_available: str | None
    max_unavailable: str | None
    disruptions_allowed: int | None  # status.disruptionsAllowed (None: the controller has not said)
    current_healthy: int | None
    desired_healthy: int | None


@dataclass(frozen=True)
class DbCertificate:
    """A certificate CNPG keeps for the cluster (status.certificates.expirations: its secret's name)."""

    name: str
    not_after: str  # as CNPG writes it: "2026-03-02 10:00:00 +0000 UTC"
    days_left: float | None  # None: the date could not be read


@dataclass(frozen=True)
class DbPooler:
    """The PgBouncer Pooler in front of the cluster, from its spec (its pods are Database.poolers)."""

    name: str
    type: str | None  # rw | ro
    instances: int | None  # spec.instances: how many pods it wants
    mode: str | None  # spec.pgbouncer.poolMode
    paused: bool  # spec.pgbouncer.paused (absent: not paused)


@dataclass(frozen=True)
class Database:
    """The CNPG cluster at ``kubectl cnpg status -v`` depth: the Cluster's status and annotations, its
    pods, PDBs and Pooler (Kubernetes), and the servers' own readings (``replication``, PostgreSQL)."""

    cluster: str
    namespace: str
    phase: str
    primary: str
    timeline: int | None
    instances: int
    ready_instances: int
    members: tuple[DbInstance, ...]
    poolers: tuple[Pod, ...]
    last_backup: str | None
    replication: tuple[Replication, ...] = ()
    image: str | None = None  # status.image
    system_id: str | None = None  # the primary's, from PostgreSQL
    primary_since: str | None = None  # status.currentPrimaryTimestamp: when the primary took the role
    # Seconds since primary_since: a reading of the clock, not of the cluster, so two builds of one state
    # still compare equal (the panels' diffs and the builders' memos rely on it).
    primary_uptime_s: float | None = field(default=None, compare=False)
    primary_started_at: str | None = None  # the primary's pg_postmaster_start_time()
    wal_file: str | None = None  # the primary's current WAL file
    current_lsn: str | None = None  # the primary's current WAL LSN
    target_primary: str | None = None  # status.targetPrimary ("pending" while failing over)
    switchover: bool = False  # a switchover to target_primary is under way
    fenced: tuple[str, ...] = ()  # the fenced instances ("*" spelled out)
    hibernated: bool = False  # cnpg.io/hibernation: "on"
    disruption_budgets: tuple[DisruptionBudget, ...] | None = None  # None: PDBs not listed
    certificates: tuple[DbCertificate, ...] | None = None  # None: the status names none
    pooler: DbPooler | None = None  # None: the Pooler object is not seen


@dataclass(frozen=True)
class LbTarget:
    server_id: int
    name: str
    health: tuple[tuple[int, str], ...]  # (listen port, healthy|unhealthy|unknown)


@dataclass(frozen=True)
class LoadBalancer:
    name: str
    public_ipv4: str
    targets: tuple[LbTarget, ...]
    interval_s: int
    timeout_s: int
    retries: int
    budget_remaining: int | None
    budget_limit: int | None


@dataclass(frozen=True)
class Certificate:
    namespace: str
    name: str
    dns_names: tuple[str, ...]
    not_after: str | None
    days_left: float | None
    ready: bool


@dataclass(frozen=True)
class Probe:
    name: str
    url: str
    ok: bool
    status: int | None
    latency_ms: float | None
    error: str | None = None


@dataclass(frozen=True)
class BackupRepo:
    """A Borg repository on the Storage Box: its newest archive against the schedule, and retention."""

    name: str
    what: str
    schedule: str
    max_age_hours: float
    archives: int | None
    latest: str | None  # archive name
    latest_at: str | None  # ISO time (UTC) the archive was taken
    age_hours: float | None
    overdue: bool
    retention_ok: bool | None
    retention: str  # words: "11 kept (7 daily + 4 weekly)"
    error: str | None = None
    checked: str | None = None  # the last `borg check`: "ok 2026-11-29 17:20" (from --action backup-check)
    verified: str | None = None  # db: the last verify-restore receipt, "ok, RTO 4.4 s, RPO 0.1 h, …"
    verified_at: float | None = None  # db: when the newest verify-restore that succeeded ran


@dataclass(frozen=True)
class HaCheck:
    name: str
    description: str
    subject: str  # Kind namespace/name
    holds: bool | None  # None: the object cannot be seen (forbidden or not listed yet)
    drift: tuple[str, ...]
    since: float | None = None  # when the console first saw the current verdict


@dataclass(frozen=True)
class DnsCheck:
    name: str
    type: str
    expected: str
    answers: tuple[str, ...]
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class TimelineEntry:
    at: str  # ISO time
    source: str  # "event" (Kubernetes) or "console" (an action of ours)
    subject: str
    reason: str
    message: str
    warning: bool


@dataclass(frozen=True, order=True)
class ReleasePod:
    name: str
    node: str
    tag: str
    ready: bool


@dataclass(frozen=True)
class Revision:
    revision: int
    image: str
    created: str


@dataclass(frozen=True)
class Release:
    """One environment's DocFast: the image its spec names, the digests its pods run (console/releases.py)."""

    environment: str
    namespace: str
    deployment: str
    image: str
    digests: tuple[str, ...]
    rollout: str
    ready: int
    desired: int
    pods: tuple[ReleasePod, ...]
    history: tuple[Revision, ...]

    @property
    def tag(self) -> str:
        from console.releases import tag

        return tag(self.image)


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    subject: str
    message: str


@dataclass(frozen=True)
class Snapshot:
    cluster: str
    context: str
    lab: bool
    taken_at: float
    nodes: tuple[Node, ...] = ()
    pods: tuple[Pod, ...] = ()
    workloads: tuple[Workload, ...] = ()
    database: Database | None = None
    load_balancer: LoadBalancer | None = None
    certificates: tuple[Certificate, ...] = ()
    probes: tuple[Probe, ...] = ()
    dns: tuple[DnsCheck, ...] = ()
    backups: tuple[BackupRepo, ...] = ()
    ha: tuple[HaCheck, ...] = ()
    releases: tuple[Release, ...] = ()
    release_diff: tuple[str, ...] = ()  # what staging runs that production does not
    timeline: tuple[TimelineEntry, ...] = ()
    findings: tuple[Finding, ...] = ()
    sources: tuple[SourceStatus, ...] = field(default=())
    # metrics.k8s.io, by node name and by "namespace/pod" (empty: no metrics-server, or not read yet)
    node_usage: Mapping[str, Usage] = field(default_factory=dict)
    pod_usage: Mapping[str, Usage] = field(default_factory=dict)

    @property
    def critical(self) -> bool:
        return any(f.severity is Severity.CRITICAL for f in self.findings)
