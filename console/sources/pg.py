"""PostgreSQL replication as the servers report it: each CNPG instance, through an SSH tunnel.

Kubernetes says which pods exist and which is labelled primary; only PostgreSQL knows whether the
replica streams and how far behind it is.  Every ``poll_interval_s`` this source opens one connection per
instance pod (pod IP from the watch, through ``database.tunnel_via``) as the superuser CNPG keeps in
``database.superuser_secret``, and asks:

* primary — ``pg_current_wal_lsn()`` and ``pg_stat_replication`` (state, replay LSN, ``replay_lag``);
* replica — ``pg_last_wal_replay_lsn()`` and ``pg_stat_wal_receiver.status``.

A replica's lag in bytes is the primary's current LSN minus the replica's own replay LSN, so a replica
whose receiver stopped (gone from ``pg_stat_replication``) still shows how far behind it is.  Connections
are per poll (two instances, every 5 s): nothing holds a backend open between looks.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import psycopg

from console.clients.ssh import SshError, Tunnel
from console.config import Config
from console.model import Replication, SourceState
from console.sources.base import PollingSource
from console.sources.kube import get_json
from console.store import ClusterStore

PRIMARY_SQL = """
SELECT pg_current_wal_lsn()::text,
       (SELECT json_agg(json_build_object(
            'name', application_name, 'state', state, 'replay_lsn', replay_lsn::text,
            'replay_lag', extract(epoch FROM replay_lag)))
        FROM pg_stat_replication)
"""
REPLICA_SQL = """
SELECT pg_last_wal_replay_lsn()::text, (SELECT status FROM pg_stat_wal_receiver)
"""


def _lsn(text: str | None) -> int | None:
    if not text:
        return None
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


class PgSource(PollingSource):
    name = "postgres"

    def __init__(self, store: ClusterStore, config: Config, kube_api: Any) -> None:
        super().__init__(store, config)
        self.kube_api = kube_api
        self.tunnel = Tunnel(config.database.tunnel_via, config.ssh)

    def interval(self) -> float:
        return self.config.database.poll_interval_s

    async def setup(self) -> None:
        """Wait for the pod watch: the instances' pod IPs come from it."""
        while "pods" not in self.store.objects:
            pods = self.store.sources.get("kube:pods")
            if pods is not None and pods.state in (SourceState.FORBIDDEN, SourceState.UNREACHABLE):
                self.store.set_source(self.name, pods.state, f"cannot find the instances: {pods.error}")
                self.synced.set()
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self.tunnel.close()

    def _instances(self) -> list[tuple[str, str | None]]:
        db = self.config.database
        out = []
        for p in self.store.items("pods"):
            meta = p.get("metadata") or {}
            labels = meta.get("labels") or {}
            if (
                meta.get("namespace") == db.namespace
                and labels.get("cnpg.io/cluster") == db.cluster
                and labels.get("cnpg.io/podRole", "instance") == "instance"
                and "cnpg.io/poolerName" not in labels
                and not meta.get("deletionTimestamp")
            ):
                out.append((meta["name"], (p.get("status") or {}).get("podIP")))
        return sorted(out)

    async def _password(self) -> str | None:
        db = self.config.database
        secret = await get_json(
            self.kube_api, f"/api/v1/namespaces/{db.namespace}/secrets/{db.superuser_secret}"
        )
        if secret is None:
            return None
        raw = (secret.get("data") or {}).get("password", "")
        return base64.b64decode(raw).decode()

    async def _ask(self, ip: str, password: str) -> tuple[bool, Any, Any]:
        db = self.config.database
        port = await self.tunnel.port_for(ip, db.port)
        async with await psycopg.AsyncConnection.connect(
            host="127.0.0.1",
            port=port,
            user="postgres",
            password=password,
            dbname="postgres",
            sslmode=db.sslmode,
            connect_timeout=5,
            autocommit=True,
            application_name="opsconsole",
        ) as conn:
            cur = await conn.execute("SELECT pg_is_in_recovery()")
            row = await cur.fetchone()
            in_recovery = bool(row and row[0])
            cur = await conn.execute(REPLICA_SQL if in_recovery else PRIMARY_SQL)
            first, second = (await cur.fetchone()) or (None, None)
            return in_recovery, first, second

    async def poll(self) -> None:
        password = await self._password()
        if password is None:
            db = self.config.database
            self.store.set_source(
                self.name, SourceState.FORBIDDEN, f"cannot read secret {db.namespace}/{db.superuser_secret}"
            )
            return
        answers: dict[str, tuple[bool, Any, Any] | str] = {}
        tunnel_failed: str | None = None
        for name, ip in self._instances():
            if not ip:
                answers[name] = "no pod IP"
                continue
            try:
                answers[name] = await self._ask(ip, password)
            except SshError as exc:
                tunnel_failed = str(exc)
                answers[name] = str(exc)
                await self.tunnel.broken()
            except (psycopg.Error, OSError) as exc:
                answers[name] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        if tunnel_failed and all(isinstance(a, str) for a in answers.values()):
            self.store.set_source(self.name, SourceState.UNREACHABLE, tunnel_failed)
            return
        self.store.set_extra("replication", self._judge(answers))
        self.store.set_source(self.name, SourceState.OK)

    @staticmethod
    def _judge(answers: dict[str, tuple[bool, Any, Any] | str]) -> tuple[Replication, ...]:
        primary_lsn: int | None = None
        streams: dict[str, dict[str, Any]] = {}
        for a in answers.values():
            if not isinstance(a, str) and not a[0]:
                primary_lsn = _lsn(a[1])
                streams = {s["name"]: s for s in a[2] or []}
        out = []
        for name, a in sorted(answers.items()):
            if isinstance(a, str):
                out.append(Replication(name, "unreachable", "unreachable", None, None, None, a))
            elif not a[0]:
                out.append(Replication(name, "primary", "primary", a[1], 0, 0.0))
            else:
                replay = _lsn(a[1])
                stream = streams.get(name) or {}
                lag = None if primary_lsn is None or replay is None else max(0, primary_lsn - replay)
                state = stream.get("state") or (a[2] or "stopped")
                lag_s = stream.get("replay_lag")
                out.append(
                    Replication(
                        name, "replica", str(state), a[1], lag, None if lag_s is None else float(lag_s)
                    )
                )
        return tuple(out)
