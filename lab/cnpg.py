"""A CloudNativePG 1.25 twin over real PostgreSQL: the Cluster, its instance pods, services and pooler.

The operator's job, done against real servers:

* **Bootstrap** — ``main-db-1`` is initdb'd as primary (databases ``docfast`` and ``docfast_staging``
  owned by ``docfast``, with data), ``main-db-2`` is a ``pg_basebackup`` streaming replica with a physical
  replication slot (``_cnpg_main_db_2``).  Instance pods are pinned to their nodes (local-path storage).
* **Status** — polled from the servers: who is in recovery, timelines, replication (``pg_stat_replication``),
  written to ``Cluster.status`` with CNPG's phase strings.
* **Failover** — the primary pod not ready (its node lost, or PostgreSQL down) for ``failoverDelay`` s:
  phase "Failing over", ``targetPrimary: pending``, then the most advanced ready replica is promoted with
  ``pg_promote()``; labels (``role``, ``cnpg.io/instanceRole``) and so ``-rw`` follow.  When the old
  primary's node returns, it rejoins with ``pg_rewind`` as a streaming replica on the new timeline.
* **Switchover** — a merge patch of ``status.targetPrimary`` (what ``kubectl cnpg promote`` sends): the old
  primary shuts down cleanly, the target catches up and is promoted, the old one follows it.
* **Fencing** — ``cnpg.io/fencedInstances`` (a JSON list, ``["*"]`` for all): fenced instances are stopped
  and never failed over to or from.
* **Pooler** — each pooler pod is a real TCP listener forwarding to the current primary; when the primary
  changes, open client connections are dropped, as PgBouncer does when not paused.  (Transaction pooling
  itself is not emulated: one client connection is one server connection.)  ``spec.pgbouncer.paused``
  holds new client connections until it is unset, then forwards them to the primary of that moment.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from console.config import Config
from lab.dataplane import DataPlane
from lab.kube.cluster import Cluster, pod_ready
from lab.kube.exec import ExecEnv
from lab.kube.resources import Registry, Resource
from lab.kube.store import Store, now_iso
from lab.pgbouncer import Bouncer
from lab.postgres import PG_BIN, PgInstance, cleanup_runtime, demote, runtime_dir

log = logging.getLogger("lab.cnpg")
FENCED = "cnpg.io/fencedInstances"
HEALTHY = "Cluster in healthy state"
FAILING_OVER = "Failing over"
SWITCHOVER = "Switchover in progress"
WAITING = "Waiting for the instances to become active"

SCHEMA_SQL = """
CREATE TABLE customers (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, plan text NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE api_keys (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers,
                       key_prefix text NOT NULL, revoked boolean NOT NULL DEFAULT false,
                       created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE documents (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers,
                        title text NOT NULL, pages int NOT NULL, status text NOT NULL,
                        created_at timestamptz NOT NULL);
CREATE TABLE usage_events (id bigserial PRIMARY KEY, customer_id bigint NOT NULL, event text NOT NULL,
                           at timestamptz NOT NULL);
INSERT INTO customers (email, plan, created_at)
  SELECT 'user' || g || '@example.com', (ARRAY['free','starter','pro'])[1 + g % 3],
         now() - (g || ' hours')::interval FROM generate_series(1, {customers}) g;
INSERT INTO api_keys (customer_id, key_prefix) SELECT id, 'df_' || substr(md5(id::text), 1, 8) FROM customers;
INSERT INTO documents (customer_id, title, pages, status, created_at)
  SELECT 1 + g % {customers}, 'Invoice ' || g, 1 + g % 17, (ARRAY['rendered','queued','failed'])[1 + g % 3],
         now() - (g || ' minutes')::interval FROM generate_series(1, {documents}) g;
INSERT INTO usage_events (customer_id, event, at)
  SELECT 1 + g % {customers}, 'pdf.render', now() - (g || ' seconds')::interval
  FROM generate_series(1, {events}) g;
"""


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def cluster_manifest(config: Config) -> dict[str, Any]:
    """The seed's CNPG ``Cluster`` as its operators keep it (2 instances, initdb of the app database)."""
    db = config.database
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {
            "name": db.cluster,
            "namespace": db.namespace,
            "creationTimestamp": "2025-11-03T09:05:00Z",
        },
        "spec": {
            "instances": db.instances,
            "imageName": f"ghcr.io/cloudnative-pg/postgresql:{db.postgres_version}",
            "primaryUpdateStrategy": "unsupervised",
            "failoverDelay": 0,
            "switchoverDelay": 3600,
            "storage": {"size": db.storage, "storageClass": "local-path"},
            "superuserSecret": {"name": db.superuser_secret},
            "enableSuperuserAccess": True,
            "bootstrap": {
                "initdb": {
                    "database": db.databases[0],
                    "owner": db.app_user,
                    "secret": {"name": db.credentials_secret},
                }
            },
            "postgresql": {"parameters": {"max_connections": "100", "wal_keep_size": "256MB"}},
            "affinity": {
                "enablePodAntiAffinity": True,
                "topologyKey": "kubernetes.io/hostname",
                "podAntiAffinityType": "preferred",
            },
        },
    }


def pooler_manifest(config: Config, ha: bool = True) -> dict[str, Any]:
    """The seed's PgBouncer ``Pooler``; ``ha=False`` is the stock form without the seed's required
    anti-affinity (what the HA patch ``pooler-anti-affinity`` adds)."""
    db = config.database
    template: dict[str, Any] = {"spec": {"containers": []}}
    if ha:
        template["spec"]["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {"cnpg.io/poolerName": db.pooler}},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Pooler",
        "metadata": {"name": db.pooler, "namespace": db.namespace},
        "spec": {
            "cluster": {"name": db.cluster},
            "instances": db.pooler_instances,
            "type": "rw",
            "pgbouncer": {
                "poolMode": db.pooler_mode,
                "parameters": {"max_client_conn": "1000", "default_pool_size": "10"},
            },
            "template": template,
        },
    }


class CnpgTwin:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        cluster: Cluster,
        dataplane: DataPlane,
        config: Config,
        lab_dir: Path,
        speed: float,
    ) -> None:
        self.store = store
        self.registry = registry
        self.cluster = cluster
        self.dataplane = dataplane
        self.config = config
        self.lab_dir = lab_dir
        self.speed = speed
        db = config.database
        self.name = db.cluster
        self.ns = db.namespace
        self.superuser_password = secrets.token_urlsafe(18)
        self.instances: dict[str, PgInstance] = {}
        self.nodes = {f"{self.name}-1": "k3s-w1", f"{self.name}-2": "k3s-w2"}
        self.primary = f"{self.name}-1"
        self.not_ready_since: float | None = None
        self.busy = asyncio.Lock()
        self.poolers: dict[str, Bouncer] = {}  # by pooler pod: its PgBouncer process
        self.verifiers: dict[str, str] = {}  # pg_shadow's SCRAM verifiers, as PgBouncer's auth_file has them
        self.verifiers_at = 0.0
        self.stopped_by_lab: set[str] = set()  # instances whose process is down (node off, crash, fence)
        self.receiver_paused: set[str] = set()
        # The Pooler's spec.pgbouncer.paused, as PgBouncer's PAUSE/RESUME (the task that sent the last one).
        self.pooler_paused = False
        self.pause_task: asyncio.Future[Any] | None = None
        self.primary_seen_ready = False
        self.destroyed = False  # the lab's "everything destroyed": no instances until the Cluster is back
        self.former_primaries: set[str] = set()  # need pg_rewind before they can follow
        # Instances whose pod is terminating or deleted: their container (PostgreSQL) is gone until a
        # re-created pod starts (CNPG re-creates it on the same PVC, so on the same node).
        self.pod_gone: set[str] = set()
        self.ground: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.res: dict[str, Resource] = {}
        for key, (g, v, p) in {
            "clusters": ("postgresql.cnpg.io", "v1", "clusters"),
            "poolers": ("postgresql.cnpg.io", "v1", "poolers"),
            "secrets": ("", "v1", "secrets"),
            "services": ("", "v1", "services"),
            "pods": ("", "v1", "pods"),
            "nodes": ("", "v1", "nodes"),
            "deployments": ("apps", "v1", "deployments"),
            "pdbs": ("policy", "v1", "poddisruptionbudgets"),
        }.items():
            res = registry.get(g, v, p)
            assert res is not None
            self.res[key] = res

    # ---- bootstrap ------------------------------------------------------------------------------------

    async def _start_instances(self, with_data: bool) -> None:
        """initdb the primary (roles, databases, and the seed's rows when ``with_data``), then clone and
        start the streaming replica."""
        base = runtime_dir(self.lab_dir)
        for name in self.nodes:
            self.instances[name] = PgInstance(name, base, superuser_password=self.superuser_password)
        primary, replica = self.instances[f"{self.name}-1"], self.instances[f"{self.name}-2"]
        await primary.initdb()
        await primary.start()
        await self._initialise_databases(primary, with_data)
        await replica.basebackup_from(primary, self.slot(replica.name))
        await replica.start()

    async def bootstrap(self, empty: bool = False) -> None:
        """The seed's database (instances with data, every object); ``empty``: a cluster with no
        database yet — the twin waits, like ``destroy``, for a Cluster to be applied (``provision``)."""
        if empty:
            self.destroyed = True
        else:
            await self._start_instances(with_data=True)
            self._create_objects()
        self.cluster.on_pod_start.append(self._on_pod_start)
        self.dataplane.db_health = self.db_health
        self.dataplane.extra_probes.append(
            lambda pod: (
                self.probe(pod)
                if (pod["metadata"].get("labels") or {}).get("cnpg.io/cluster") == self.name
                and (pod["metadata"].get("labels") or {}).get("cnpg.io/podRole") == "instance"
                else None
            )
        )
        self._task = asyncio.ensure_future(self._loop())

    def slot(self, instance: str) -> str:
        return "_cnpg_" + instance.replace("-", "_")

    async def _initialise_databases(self, pg: PgInstance, with_data: bool = True) -> None:
        db = self.config.database
        async with await psycopg.AsyncConnection.connect(
            f"host={pg.socket_dir} port={pg.port} dbname=postgres user=postgres", autocommit=True
        ) as conn:
            await conn.execute(f"ALTER USER postgres PASSWORD '{self.superuser_password}'")
            await conn.execute("CREATE ROLE streaming_replica WITH REPLICATION LOGIN")
            # The seed's credentials, as weak as the seed says (a finding the console reports).
            await conn.execute(f"CREATE ROLE {db.app_user} LOGIN PASSWORD 'docfast'")
            for name in db.databases:
                await conn.execute(f'CREATE DATABASE "{name}" OWNER {db.app_user}')
        if not with_data:
            return
        for name, scale in zip(db.databases, (1.0, 0.2), strict=False):
            async with await psycopg.AsyncConnection.connect(
                f"host={pg.socket_dir} port={pg.port} dbname={name} user={db.app_user}", autocommit=True
            ) as conn:
                sql = SCHEMA_SQL.format(
                    customers=int(500 * scale), documents=int(20000 * scale), events=int(50000 * scale)
                )
                await conn.execute(sql.encode())

    def _create_objects(self) -> None:
        db = self.config.database
        s = self.store
        s.create(
            self.res["secrets"],
            {
                "metadata": {
                    "name": db.superuser_secret,
                    "namespace": self.ns,
                    "labels": {"cnpg.io/cluster": self.name},
                },
                "type": "kubernetes.io/basic-auth",
                "data": {"username": _b64("postgres"), "password": _b64(self.superuser_password)},
            },
        )
        cluster = s.create(self.res["clusters"], cluster_manifest(self.config))
        self.cluster_uid = cluster["metadata"]["uid"]
        self._cluster_objects()
        self._pooler_objects(s.create(self.res["poolers"], pooler_manifest(self.config)))

    def _cluster_objects(self) -> None:
        """What CNPG creates for a Cluster: the rw/ro/r Services and one pod per instance (the lab places
        ``-1`` on k3s-w1 and ``-2`` on k3s-w2, as the seed's cluster runs)."""
        owner = self._owner()
        s = self.store
        for suffix, selector in (
            ("rw", {"cnpg.io/cluster": self.name, "role": "primary"}),
            ("ro", {"cnpg.io/cluster": self.name, "role": "replica"}),
            ("r", {"cnpg.io/cluster": self.name, "cnpg.io/podRole": "instance"}),
        ):
            if s.find(self.res["services"], self.ns, f"{self.name}-{suffix}") is not None:
                continue
            s.create(
                self.res["services"],
                {
                    "metadata": {
                        "name": f"{self.name}-{suffix}",
                        "namespace": self.ns,
                        "ownerReferences": [owner],
                        "labels": {"cnpg.io/cluster": self.name},
                    },
                    "spec": {
                        "type": "ClusterIP",
                        "selector": selector,
                        "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432, "protocol": "TCP"}],
                    },
                },
            )
        for name, node in self.nodes.items():
            if s.find(self.res["pods"], self.ns, name) is None:
                s.create(self.res["pods"], self._instance_pod(name, node, pinned=True))
        for pdb in self._budgets(owner):
            if s.find(self.res["pdbs"], self.ns, pdb["metadata"]["name"]) is None:
                s.create(self.res["pdbs"], pdb)

    def _budgets(self, owner: dict[str, Any]) -> list[dict[str, Any]]:
        """CNPG's PodDisruptionBudgets (``spec.enablePDB``, on by default): ``<cluster>-primary`` keeps the
        primary (minAvailable 1), so a drain cannot evict it until a switchover has moved it; ``<cluster>``
        keeps all replicas but one, and exists only from three instances up (with one replica, CNPG lets
        it go)."""
        out = []
        for name, role, keep in (
            (f"{self.name}-primary", "primary", 1),
            (self.name, "replica", len(self.nodes) - 2),  # spec.instances (the twin's two)
        ):
            if keep < 1 and role == "replica":
                continue
            out.append(
                {
                    "apiVersion": "policy/v1",
                    "kind": "PodDisruptionBudget",
                    "metadata": {
                        "name": name,
                        "namespace": self.ns,
                        "ownerReferences": [owner],
                        "labels": {"cnpg.io/cluster": self.name},
                    },
                    "spec": {
                        "minAvailable": keep,
                        "selector": {
                            "matchLabels": {"cnpg.io/cluster": self.name, "cnpg.io/instanceRole": role}
                        },
                    },
                }
            )
        return out

    def _pooler_objects(self, pooler: dict[str, Any]) -> None:
        """CNPG's Pooler controller: a PgBouncer Deployment and a Service, both of the Pooler's name (what
        applications connect to), owned by the Pooler; then the Pooler's status."""
        from lab.kube.seed import pooler_deployment

        db = self.config.database
        s = self.store
        owner = {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Pooler",
            "name": db.pooler,
            "uid": pooler["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        if s.find(self.res["deployments"], self.ns, db.pooler) is None:
            deploy = pooler_deployment(self.config)
            deploy["metadata"].pop("creationTimestamp", None)
            deploy["metadata"]["ownerReferences"] = [owner]
            s.create(self.res["deployments"], deploy)
            self._sync_pooler()
        if s.find(self.res["services"], self.ns, db.pooler) is None:
            s.create(
                self.res["services"],
                {
                    "metadata": {
                        "name": db.pooler,
                        "namespace": self.ns,
                        "labels": {"cnpg.io/poolerName": db.pooler},
                        "ownerReferences": [owner],
                    },
                    "spec": {
                        "type": "ClusterIP",
                        "selector": {"cnpg.io/poolerName": db.pooler},
                        "ports": [{"name": "pgbouncer", "port": 5432, "targetPort": 5432, "protocol": "TCP"}],
                    },
                },
            )
        if not pooler.get("status"):
            s.update(
                self.res["poolers"],
                {
                    **pooler,
                    "status": {
                        "instances": db.pooler_instances,
                        "secrets": {
                            "serverTLS": {"name": f"{self.name}-server"},
                            "serverCA": {"name": f"{self.name}-ca"},
                            "clientCA": {"name": f"{self.name}-ca"},
                        },
                    },
                },
                subresource="status",
                force=True,
            )

    def _owner(self) -> dict[str, Any]:
        return {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "name": self.name,
            "uid": self.cluster_uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def _instance_pod(self, name: str, node: str, pinned: bool) -> dict[str, Any]:
        """An instance pod as CNPG creates it.  Its PVC is local-path storage on ``node``: the first pod is
        placed there directly; a re-created pod carries the volume's node affinity and goes through the
        scheduler, so it stays Pending while that node is cordoned or gone (as on the real cluster)."""
        db = self.config.database
        role = "primary" if name == self.primary else "replica"
        owner = self._owner()
        pod: dict[str, Any] = {
            "metadata": {
                "name": name,
                "namespace": self.ns,
                "ownerReferences": [owner],
                "labels": {
                    "cnpg.io/cluster": self.name,
                    "cnpg.io/instanceName": name,
                    "cnpg.io/instanceRole": role,
                    "role": role,
                    "cnpg.io/podRole": "instance",
                },
            },
            "spec": {
                "nodeName": node,
                "containers": [
                    {
                        "name": "postgres",
                        "image": f"ghcr.io/cloudnative-pg/postgresql:{db.postgres_version}",
                        "ports": [{"containerPort": 5432, "name": "postgresql"}],
                        "readinessProbe": {
                            "httpGet": {"path": "/readyz", "port": 8000},
                            "periodSeconds": 10,
                            "failureThreshold": 3,
                            "timeoutSeconds": 5,
                        },
                    }
                ],
                "terminationGracePeriodSeconds": 1800,
                "tolerations": [
                    {
                        "key": "node.kubernetes.io/not-ready",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 300,
                    },
                    {
                        "key": "node.kubernetes.io/unreachable",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 300,
                    },
                ],
            },
            "status": {"phase": "Pending"},
        }
        if pinned:
            pod["spec"]["nodeName"] = node
        else:
            pod["spec"].pop("nodeName", None)
            pod["spec"]["affinity"] = {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                                ]
                            }
                        ]
                    }
                }
            }
        return pod

    # ---- data plane hooks ----------------------------------------------------------------------------

    def pod_processes(self, pod: dict[str, Any]) -> list[int] | None:
        """The OS processes behind a pod of ours (for metrics.k8s.io): an instance's postmaster, a pooler
        pod's PgBouncer; None for any other pod or one whose process is not running."""
        name = pod["metadata"]["name"]
        inst = self.instances.get(name)
        if inst is not None and (pod["metadata"].get("labels") or {}).get("cnpg.io/cluster") == self.name:
            pidfile = inst.datadir / "postmaster.pid"
            try:
                return [int(pidfile.read_text().split("\n", 1)[0])]
            except (OSError, ValueError):
                return None
        bouncer = self.poolers.get(name)
        if bouncer is not None and bouncer.proc is not None and bouncer.proc.returncode is None:
            return [bouncer.proc.pid]
        return None

    def exec_env(self, pod: dict[str, Any], container: str) -> ExecEnv | None:
        """``kubectl exec`` into an instance pod's ``postgres`` container: that instance's binaries, its
        data directory and its socket (CNPG's pods set PGDATA and PGHOST the same way), as the OS user
        the lab runs PostgreSQL as, so ``psql`` connects as ``postgres`` over the local socket."""
        name = pod["metadata"]["name"]
        labels = pod["metadata"].get("labels") or {}
        inst = self.instances.get(name)
        if labels.get("cnpg.io/cluster") != self.name or container != "postgres" or inst is None:
            return None
        return ExecEnv(
            path=(str(PG_BIN), "/usr/bin", "/bin"),
            env={
                "PGDATA": str(inst.datadir),
                "PGHOST": str(inst.socket_dir),
                "PGPORT": str(inst.port),
                "PGUSER": "postgres",
                "POD_NAME": name,
                "CLUSTER_NAME": self.name,
            },
            cwd=inst.base,
            demote=demote,
        )

    async def _on_pod_start(self, pod: dict[str, Any]) -> None:
        labels = pod["metadata"].get("labels") or {}
        ip = pod.get("status", {}).get("podIP")
        if labels.get("cnpg.io/podRole") == "instance" and labels.get("cnpg.io/cluster") == self.name:
            inst = self.instances.get(pod["metadata"]["name"])
            if inst is not None and ip:
                self.dataplane.ip_ports[ip] = inst.port
            self._instance_log(pod, "Starting CloudNativePG Instance Manager", "instance-manager")
            self._instance_log(pod, "database system is ready to accept connections", "postgres")
        elif labels.get("cnpg.io/poolerName") == self.config.database.pooler and ip:
            key = pod["metadata"]["name"]
            if key not in self.poolers:
                bouncer = Bouncer(key, self._runtime_base(), self.config.database.pooler_mode, self.speed)
                self.poolers[key] = bouncer  # before the await: a second hook call finds it
                try:
                    await self._refresh_verifiers(force=True)
                    await bouncer.start(self._primary_port(), self.verifiers)
                except Exception:
                    self.poolers.pop(key, None)  # the next start of the pod tries again
                    await bouncer.stop()
                    raise
                if self.poolers.get(key) is not bouncer:  # its pod went meanwhile (reconcile stopped it)
                    await bouncer.stop()
                    return
                if self.pooler_paused:
                    await bouncer.set_paused(True)
            self.dataplane.ip_ports[ip] = self.poolers[key].port

    def _instance_log(self, pod: dict[str, Any], msg: str, logger: str) -> None:
        """A line as the instance manager writes it: JSON, one object per line."""
        ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        line = {
            "level": "info",
            "ts": ts,
            "logger": logger,
            "msg": msg,
            "logging_pod": pod["metadata"]["name"],
        }
        self.cluster.logs.write(
            pod["metadata"]["namespace"], pod["metadata"]["name"], "postgres", json.dumps(line)
        )

    def _runtime_base(self) -> Path:
        inst = next(iter(self.instances.values()), None)
        return inst.base if inst is not None else runtime_dir(self.lab_dir)

    def _primary_port(self) -> int:
        inst = self.instances.get(self.primary)
        return inst.port if inst is not None else 0

    def repoint_poolers(self) -> None:
        """The poolers follow the ``-rw`` Service to the primary of the moment (a reload when it moved;
        with no primary instance yet — a revived cluster — they keep the last)."""
        port = self._primary_port()
        for bouncer in self.poolers.values():
            if port:
                bouncer.point_at(port)

    async def _refresh_verifiers(self, force: bool = False) -> None:
        """pg_shadow's SCRAM verifiers into every PgBouncer's auth_file when they changed (the lab's
        auth_query): a password set in PostgreSQL is accepted by the pooler within seconds."""
        if not force and time.monotonic() - self.verifiers_at < max(1.0, 5 * self.speed):
            return
        inst = self.instances.get(self.primary)
        if inst is None or inst.name in self.stopped_by_lab:
            return
        try:
            async with await psycopg.AsyncConnection.connect(inst.dsn(), autocommit=True) as conn:
                cur = await conn.execute("SELECT usename, passwd FROM pg_shadow WHERE passwd IS NOT NULL")
                found = {str(u): str(p) for u, p in await cur.fetchall()}
        except (psycopg.Error, OSError):
            return
        self.verifiers_at = time.monotonic()
        if found != self.verifiers:
            self.verifiers = found
            for bouncer in self.poolers.values():
                if bouncer.proc is not None:
                    bouncer.write_users(found)
                    bouncer.reload()

    async def _stop_poolers(self, keep: set[str] | None = None) -> None:
        for name in [n for n in self.poolers if keep is None or n not in keep]:
            await self.poolers.pop(name).stop()

    def pooler_ports(self) -> list[int]:
        ports = []
        for name, bouncer in self.poolers.items():
            pod = self.store.find(self.res["pods"], self.ns, name)
            if pod is not None and pod_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
                ports.append(bouncer.port)
        return ports

    async def db_health(self, pod: dict[str, Any]) -> tuple[bool, str]:
        """DocFast's /health: a query through the pooler, as the app does."""
        db = self.config.database
        dbname = db.databases[0] if pod.get("namespace") == self.config.namespaces.prod else db.databases[-1]
        for port in self.pooler_ports()[:2]:
            try:
                async with await psycopg.AsyncConnection.connect(
                    f"host=127.0.0.1 port={port} dbname={dbname} user={db.app_user} password=docfast "
                    "connect_timeout=2",
                    autocommit=True,
                ) as conn:
                    await asyncio.wait_for(conn.execute("SELECT 1"), 2)
                    return True, "ok"
            except (psycopg.Error, OSError, TimeoutError):
                continue
        return False, "unreachable"

    async def probe(self, pod: dict[str, Any]) -> bool:
        inst = self.instances.get(pod["metadata"]["name"])
        if inst is None or inst.name in self.stopped_by_lab:
            return False
        try:
            async with await psycopg.AsyncConnection.connect(inst.dsn(), autocommit=True) as conn:
                await asyncio.wait_for(conn.execute("SELECT 1"), 2)
            return True
        except (psycopg.Error, OSError, TimeoutError):
            return False

    # ---- operator loop -------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                async with self.busy:
                    if not self.destroyed:
                        await self.reconcile()
                    elif (
                        self.store.find(self.res["clusters"], self.ns, self.name) is not None
                        and self._operator_available()
                    ):
                        await self._revive()
            except Exception:
                log.exception("cnpg reconcile failed")
            await asyncio.sleep(max(0.3, 2.0 * self.speed))

    # ---- the lab's disaster and the way back ---------------------------------------------------------

    async def destroy(self) -> None:
        """Everything destroyed: the servers' disks are gone, so are PostgreSQL's data directories.  The
        twin then waits for its Cluster to exist again (an etcd restore, or a fresh apply) and bootstraps
        new, empty instances — as CNPG's ``initdb`` bootstrap does — which a restore from the dumps fills."""
        import shutil

        async with self.busy:
            self.destroyed = True
            await self._stop_poolers()
            for inst in self.instances.values():
                with contextlib.suppress(Exception):
                    await inst.stop("immediate")
                shutil.rmtree(inst.datadir, ignore_errors=True)
            self.instances.clear()
            self.stopped_by_lab.clear()
            self.pod_gone.clear()
            self.former_primaries.clear()
            self.receiver_paused.clear()
            self.primary = f"{self.name}-1"
            self.not_ready_since = None
            self.primary_seen_ready = False
            self.ground.append({"at": time.time(), "event": "destroyed"})

    def _operator_available(self) -> bool:
        """Nothing reconciles a Cluster without the operator: its Deployment has a ready replica."""
        dep = self.store.find(
            self.res["deployments"], self.config.namespaces.cnpg_operator, "cnpg-controller-manager"
        )
        return dep is not None and int((dep.get("status") or {}).get("readyReplicas", 0)) > 0

    async def _revive(self) -> None:
        """A Cluster named like ours exists again: initdb the primary (roles and empty databases, the
        superuser password from its Secret when that was restored too), clone the replica, and wire the
        pods that already run to the new processes.  A Cluster applied afresh (no instance pods: not an
        etcd restore) also gets what CNPG creates for it: the superuser Secret, Services and pods."""
        db = self.config.database
        cluster = self._cluster_obj()
        self.cluster_uid = cluster["metadata"]["uid"]
        secret = self.store.find(self.res["secrets"], self.ns, db.superuser_secret)
        if secret is not None:
            self.superuser_password = base64.b64decode(secret["data"]["password"]).decode()
        else:
            self.store.create(
                self.res["secrets"],
                {
                    "metadata": {
                        "name": db.superuser_secret,
                        "namespace": self.ns,
                        "labels": {"cnpg.io/cluster": self.name},
                        "ownerReferences": [self._owner()],
                    },
                    "type": "kubernetes.io/basic-auth",
                    "data": {"username": _b64("postgres"), "password": _b64(self.superuser_password)},
                },
            )
        self._cluster_objects()
        await self._start_instances(with_data=False)
        for pod in self.store.list(self.res["pods"], self.ns):
            if (pod.get("status") or {}).get("podIP"):
                await self._on_pod_start(pod)
        self.destroyed = False
        self.ground.append({"at": time.time(), "event": "revived"})
        log.info("cnpg twin: %s bootstrapped again (empty databases)", self.name)

    def _cluster_obj(self) -> dict[str, Any]:
        return self.store.get(self.res["clusters"], self.ns, self.name)

    def fenced(self) -> set[str]:
        raw = (self._cluster_obj()["metadata"].get("annotations") or {}).get(FENCED)
        if not raw:
            return set()
        try:
            names = set(json.loads(raw))
        except ValueError:
            return set()
        return set(self.instances) if "*" in names else names

    def _track_pods(self) -> None:
        """Follow instance pods: a deleted or terminating pod stops its PostgreSQL; a deleted one is
        re-created (Pending until its node is schedulable); a re-created one that started brings it back."""
        for name, node in self.nodes.items():
            pod = self.store.find(self.res["pods"], self.ns, name)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                if name not in self.pod_gone:
                    self.pod_gone.add(name)
                    self.ground.append({"at": time.time(), "event": "pod-gone", "instance": name})
                if pod is None:
                    self.store.create(self.res["pods"], self._instance_pod(name, node, pinned=False))
            elif name in self.pod_gone and pod.get("status", {}).get("startTime"):
                self.pod_gone.discard(name)

    def _maybe_switchover_from_cordoned(self) -> None:
        """The maintenance path: a primary on a cordoned node is switched over to a replica on a
        schedulable node, so a drain can then evict it (CNPG does this ahead of the drain; its primary
        PodDisruptionBudget holds the eviction meanwhile)."""
        status = self._cluster_obj().get("status") or {}
        if status.get("phase") != HEALTHY or status.get("targetPrimary") not in (None, self.primary):
            return
        node = self.store.find(self.res["nodes"], None, self.nodes[self.primary])
        if node is None or not node["spec"].get("unschedulable"):
            return
        for name, host in self.nodes.items():
            other = self.store.find(self.res["nodes"], None, host)
            pod = self.store.find(self.res["pods"], self.ns, name)
            if (
                name != self.primary
                and other is not None
                and not other["spec"].get("unschedulable")
                and pod is not None
                and pod_ready(pod)
                and name not in self.stopped_by_lab
            ):
                self._status_patch(
                    {
                        "targetPrimary": name,
                        "targetPrimaryTimestamp": now_iso(),
                        "phase": SWITCHOVER,
                        "phaseReason": f"primary node {self.nodes[self.primary]} is unschedulable",
                    }
                )
                return

    def _sync_pooler(self) -> None:
        """CNPG's Pooler controller: the Pooler's instances and pod template (affinity, tolerations)
        drive its Deployment, so a patch to the Pooler rolls the pooler pods."""
        db = self.config.database
        pooler = self.store.find(self.res["poolers"], self.ns, db.pooler)
        deploy = self.store.find(self.res["deployments"], self.ns, db.pooler)
        if pooler is not None and deploy is None:
            self._pooler_objects(pooler)  # a Pooler applied afresh (provision)
            return
        if pooler is None or deploy is None:
            return
        want = pooler.get("spec") or {}
        paused = bool((want.get("pgbouncer") or {}).get("paused"))
        if paused != self.pooler_paused:
            self.pooler_paused = paused
            self.pause_task = asyncio.ensure_future(
                asyncio.gather(*(b.set_paused(paused) for b in self.poolers.values()))
            )
        tmpl = (want.get("template") or {}).get("spec") or {}
        new = copy.deepcopy(deploy)
        new["spec"]["replicas"] = int(want.get("instances", 1))
        new["spec"]["strategy"] = copy.deepcopy(
            want.get("deploymentStrategy")
            or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
        )
        pod_spec = new["spec"]["template"]["spec"]
        if "affinity" in tmpl:  # the Pooler's affinity is the truth (the seed's HA lives there)
            pod_spec["affinity"] = copy.deepcopy(tmpl["affinity"])
        else:
            pod_spec.pop("affinity", None)
        for key in ("tolerations", "topologySpreadConstraints", "nodeSelector"):
            if key in tmpl:
                pod_spec[key] = copy.deepcopy(tmpl[key])
        if new["spec"] != deploy["spec"]:
            self.store.update(self.res["deployments"], new, force=True)

    async def reconcile(self) -> None:
        fenced = self.fenced()
        self._track_pods()
        self._sync_pooler()
        await self._refresh_verifiers()
        self.repoint_poolers()
        pods = {p["metadata"]["name"] for p in self.store.list(self.res["pods"], self.ns)}
        await self._stop_poolers(keep=pods)  # a pooler pod that is gone takes its PgBouncer along
        # Processes follow their node's power, their pod and the fencing annotation.
        for name, inst in self.instances.items():
            node_ok = self.dataplane.node_alive(self.nodes[name])
            want_up = node_ok and name not in fenced and name not in self.pod_gone
            if not want_up and name not in self.stopped_by_lab:
                await inst.stop("immediate" if not node_ok else "fast")
                self.stopped_by_lab.add(name)
            elif want_up and name in self.stopped_by_lab:
                try:
                    if name == self.primary:
                        await inst.start()
                    else:
                        await self._rejoin(name)
                except Exception:
                    log.exception("%s did not come back; retrying on the next pass", name)
                    continue
                self.stopped_by_lab.discard(name)
        self._maybe_switchover_from_cordoned()
        obj = self._cluster_obj()
        target = obj.get("status", {}).get("targetPrimary")
        if target and target not in (self.primary, "pending") and target in self.instances:
            await self._switchover(target)
        await self._maybe_failover(fenced)
        await self._write_status()

    async def _rejoin(self, name: str) -> None:
        """Start an instance as a replica of the current primary (pg_rewind if it diverged)."""
        inst = self.instances[name]
        primary = self.instances[self.primary]
        if await inst.running():
            await inst.stop("fast")
        if name in self.former_primaries:
            # It was primary on the old timeline: rewind it onto the new primary's history first.
            await inst.rewind_and_follow(primary, self.slot(name))
            self.former_primaries.discard(name)
        else:
            # A replica that was merely down (never ahead of the primary): follow the current primary.
            await inst.follow(primary, self.slot(name))
        self._label(name, "replica")
        self.ground.append({"at": time.time(), "event": "rejoined", "instance": name})

    async def _maybe_failover(self, fenced: set[str]) -> None:
        # The operator learns of a failure as Kubernetes reports it: the primary pod stops being Ready
        # (readiness probe failing, or the node controller marking the pods of a lost node).
        pod = self.store.find(self.res["pods"], self.ns, self.primary)
        if self.primary in fenced:
            self.not_ready_since = None
            return  # a fenced primary is stopped on purpose: no failover
        if pod is not None and pod_ready(pod):
            self.primary_seen_ready = True
        gone = self.primary in self.pod_gone  # deleted (e.g. --grace-period=1): failed at once
        if not gone and (
            pod is None
            or pod_ready(pod)
            or not pod.get("status", {}).get("startTime")
            # A primary that has not yet been Ready is starting, not failing (CNPG waits for it too).
            or not self.primary_seen_ready
        ):
            self.not_ready_since = None
            return
        now = time.monotonic()
        if self.not_ready_since is None:
            self.not_ready_since = now
            self._status_patch({"currentPrimaryFailingSinceTimestamp": now_iso()})
        delay = float(self._cluster_obj()["spec"].get("failoverDelay", 0)) * self.speed
        if now - self.not_ready_since < delay:
            return
        candidates = [
            n
            for n in self.instances
            if n != self.primary and n not in fenced and n not in self.stopped_by_lab
        ]
        if not candidates:
            return
        self._status_patch(
            {
                "phase": FAILING_OVER,
                "phaseReason": f"Primary instance {self.primary} is not ready",
                "targetPrimary": "pending",
                "targetPrimaryTimestamp": now_iso(),
            }
        )
        best, best_lsn = None, -1
        for name in candidates:
            lsn = await self._received_lsn(name)
            if lsn > best_lsn:
                best, best_lsn = name, lsn
        if best is None:
            return
        await self._promote(best, reason="failover")

    async def _received_lsn(self, name: str) -> int:
        try:
            async with await psycopg.AsyncConnection.connect(
                self.instances[name].dsn(), autocommit=True
            ) as conn:
                cur = await conn.execute(
                    "SELECT COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) - '0/0'::pg_lsn"
                )
                row = await cur.fetchone()
                return int(row[0]) if row and row[0] is not None else 0
        except (psycopg.Error, OSError):
            return -1

    async def _promote(self, name: str, reason: str) -> None:
        old = self.primary
        async with await psycopg.AsyncConnection.connect(self.instances[name].dsn(), autocommit=True) as conn:
            await conn.execute("SELECT pg_promote(true, 60)")
        self.primary = name
        self.primary_seen_ready = False
        self.former_primaries.add(old)
        self.former_primaries.discard(name)
        self.not_ready_since = None
        if reason == "failover" and old not in self.stopped_by_lab and await self.instances[old].running():
            # The old primary may still run (only its readiness failed): its instance manager shuts it
            # down at once, so two primaries never accept writes; reconcile rejoins it with pg_rewind.
            await self.instances[old].stop("immediate")
            self.stopped_by_lab.add(old)
        self.repoint_poolers()
        self._label(name, "primary")
        self._label(old, "replica")
        ts = now_iso()
        self._status_patch(
            {
                "currentPrimary": name,
                "targetPrimary": name,
                "currentPrimaryTimestamp": ts,
                "targetPrimaryTimestamp": ts,
                "currentPrimaryFailingSinceTimestamp": None,
            }
        )
        self.ground.append({"at": time.time(), "event": reason, "from": old, "to": name})
        self.cluster.event(
            self._cluster_obj(),
            "FailoverTarget" if reason == "failover" else "SwitchoverTarget",
            f"Promoting {name} ({reason}, previous primary {old})",
            component="cloudnative-pg",
        )
        log.info("%s: promoted %s (was %s)", reason, name, old)

    async def _switchover(self, target: str) -> None:
        if target in self.stopped_by_lab or target in self.fenced():
            return
        self._status_patch({"phase": SWITCHOVER, "phaseReason": f"Switching over to {target}"})
        if self.pooler_paused and self.pause_task is not None:
            # PgBouncer's PAUSE returns once the transactions in flight are done: then the old primary goes.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.pause_task), 10)
        old = self.instances[self.primary]
        await old.stop("fast")  # a clean shutdown ships all WAL to the replica
        self.stopped_by_lab.add(old.name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.instances[target].dsn(), autocommit=True
                ) as c:
                    cur = await c.execute("SELECT pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()")
                    row = await cur.fetchone()
                    if row and row[0]:
                        break
            except psycopg.Error:
                pass
            await asyncio.sleep(0.1)
        await self._promote(target, reason="switchover")
        self.stopped_by_lab.discard(old.name)
        await self._rejoin(old.name)

    def _label(self, name: str, role: str) -> None:
        pod = self.store.find(self.res["pods"], self.ns, name)
        if pod is None:
            return
        pod = copy.deepcopy(pod)
        pod["metadata"]["labels"].update({"role": role, "cnpg.io/instanceRole": role})
        self.store.update(self.res["pods"], pod, force=True)

    def _status_patch(self, patch: dict[str, Any]) -> None:
        obj = self._cluster_obj()
        status = {**(obj.get("status") or {}), **patch}
        status = {k: v for k, v in status.items() if v is not None}
        if status != obj.get("status"):
            self.store.update(
                self.res["clusters"], {**obj, "status": status}, subresource="status", force=True
            )

    async def _write_status(self) -> None:
        obj = self._cluster_obj()
        old = obj.get("status") or {}
        healthy: list[str] = []
        failed: list[str] = []
        timeline = old.get("timelineID", 1)
        for name in self.instances:
            pod = self.store.find(self.res["pods"], self.ns, name)
            ok = pod is not None and pod_ready(pod) and name not in self.stopped_by_lab
            (healthy if ok else failed).append(name)
            if name == self.primary and ok:
                try:
                    async with await psycopg.AsyncConnection.connect(
                        self.instances[name].dsn(), autocommit=True
                    ) as c:
                        cur = await c.execute("SELECT timeline_id FROM pg_control_checkpoint()")
                        row = await cur.fetchone()
                        cur2 = await c.execute("SELECT pg_is_in_recovery()")
                        rec = await cur2.fetchone()
                        if row and rec and not rec[0]:
                            # After promotion the checkpoint may lag; the new timeline shows at once here:
                            cur3 = await c.execute(
                                "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"
                            )
                            tl = await cur3.fetchone()
                            timeline = int(tl[0], 16) if tl else int(row[0])
                except (psycopg.Error, OSError):
                    pass
        ready = len(healthy)
        phase = old.get("phase", HEALTHY)
        if phase not in (FAILING_OVER, SWITCHOVER) or old.get("targetPrimary") == self.primary:
            phase = HEALTHY if ready == len(self.instances) else WAITING
        expiry = (datetime.now(UTC) + timedelta(days=89)).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")
        status = {
            **old,
            "phase": phase,
            "instances": len(self.instances),
            "readyInstances": ready,
            "instanceNames": sorted(self.instances),
            "instancesStatus": {
                **({"healthy": sorted(healthy)} if healthy else {}),
                **({"failed": sorted(failed)} if failed else {}),
            },
            "currentPrimary": self.primary,
            "targetPrimary": old.get("targetPrimary")
            if old.get("targetPrimary") == "pending" and phase == FAILING_OVER
            else self.primary,
            "currentPrimaryTimestamp": old.get("currentPrimaryTimestamp", "2025-11-03T09:06:00.000000Z"),
            "timelineID": timeline,
            "latestGeneratedNode": len(self.instances),
            "writeService": f"{self.name}-rw",
            "readService": f"{self.name}-r",
            "image": f"ghcr.io/cloudnative-pg/postgresql:{self.config.database.postgres_version}",
            "healthyPVC": sorted(self.instances),
            "pvcCount": len(self.instances),
            "jobCount": 0,
            "certificates": {
                "clientCASecret": f"{self.name}-ca",
                "serverCASecret": f"{self.name}-ca",
                "serverTLSSecret": f"{self.name}-server",
                "replicationTLSSecret": f"{self.name}-replication",
                "serverAltDNSNames": [
                    f"{self.name}-rw",
                    f"{self.name}-rw.{self.ns}",
                    f"{self.name}-rw.{self.ns}.svc",
                ],
                "expirations": {
                    f"{self.name}-ca": old.get("certificates", {})
                    .get("expirations", {})
                    .get(f"{self.name}-ca", expiry),
                    f"{self.name}-server": old.get("certificates", {})
                    .get("expirations", {})
                    .get(f"{self.name}-server", expiry),
                    f"{self.name}-replication": old.get("certificates", {})
                    .get("expirations", {})
                    .get(f"{self.name}-replication", expiry),
                },
            },
            "conditions": self._conditions(old, ready == len(self.instances)),
        }
        if phase in (HEALTHY, WAITING):
            status.pop("phaseReason", None)
        if status != old:
            self.store.update(
                self.res["clusters"], {**obj, "status": status}, subresource="status", force=True
            )

    @staticmethod
    def _conditions(old: dict[str, Any], ready: bool) -> list[dict[str, Any]]:
        prev = next((c for c in old.get("conditions", []) if c["type"] == "Ready"), None)
        status = "True" if ready else "False"
        ts = prev["lastTransitionTime"] if prev and prev["status"] == status else now_iso()
        return [
            {
                "type": "Ready",
                "status": status,
                "reason": "ClusterIsReady" if ready else "ClusterIsNotReady",
                "message": "Cluster is Ready" if ready else "Cluster Is Not Ready",
                "lastTransitionTime": ts,
            },
            *[c for c in old.get("conditions", []) if c["type"] == "LastBackupSucceeded"],
        ]

    # ---- faults --------------------------------------------------------------------------------------

    async def crash_primary(self) -> str:
        async with self.busy:
            inst = self.instances[self.primary]
            await inst.stop("immediate")
            self.stopped_by_lab.add(inst.name)
            return inst.name

    async def pause_receiver(self, name: str, paused: bool) -> None:
        inst = self.instances[name]
        async with await psycopg.AsyncConnection.connect(inst.dsn(), autocommit=True) as conn:
            if paused:
                await conn.execute("ALTER SYSTEM SET primary_conninfo = ''")
            else:
                await conn.execute("ALTER SYSTEM RESET primary_conninfo")
            await conn.execute("SELECT pg_reload_conf()")
        (self.receiver_paused.add if paused else self.receiver_paused.discard)(name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self._stop_poolers()
        for inst in self.instances.values():
            with contextlib.suppress(Exception):
                await inst.stop("immediate")
        cleanup_runtime(self.lab_dir)
