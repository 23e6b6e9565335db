"""PostgreSQL replication as the servers report it: each CNPG instance, through an SSH tunnel.

Kubernetes says which pods exist and which is labelled primary; only PostgreSQL knows whether the
replica streams and how far behind it is.  Every ``poll_interval_s`` this source opens one connection per
instance pod (pod IP from the watch, through ``database.tunnel_via``) as the superuser CNPG keeps in
``database.superuser_secret``, and asks one query (:data:`SQL`, one round trip) what ``kubectl cnpg
status -v`` shows:

* every instance — whether it is in recovery, ``system_identifier``, ``pg_postmaster_start_time()``;
* primary — ``pg_current_wal_lsn()`` and its WAL file, ``pg_stat_replication`` (state, sent/write/flush/
  replay LSN and lag, sync state) and ``pg_replication_slots`` with the WAL each slot retains;
* replica — ``pg_last_wal_replay_lsn()`` and its own ``pg_stat_wal_receiver`` (status, slot).

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
from console.model import Replication, ReplicationSlot, SourceState
from console.sources.base import PollingSource
from console.sources.kube import get_json
from console.store import ClusterStore

# Every branch a role cannot run (pg_current_wal_lsn() fails in recovery) sits behind a CASE on the
# role, so one statement serves primary and replica alike.
SQL = """
WITH me AS (SELECT pg_is_in_recovery() AS standby)
SELECT json_build_object(
    'standby', me.standby,
    'system_id', (SELECT system_identifier::text FROM pg_control_system()),
    'started_at', pg_postmaster_start_time(),
    'lsn', (CASE WHEN me.standby THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text,
    'wal_file', CASE WHEN NOT me.standby THEN pg_walfile_name(pg_current_wal_lsn()) END,
    'streams', CASE WHEN NOT me.standby THEN (SELECT json_agg(json_build_object(
        'name', application_name, 'state', state, 'sent_lsn', sent_lsn::text,
        'write_lsn', write_lsn::text, 'flush_lsn', flush_lsn::text, 'replay_lsn', replay_lsn::text,
        'write_lag', extract(epoch FROM write_lag), 'flush_lag', extract(epoch FROM flush_lag),
        'replay_lag', extract(epoch FROM replay_lag), 'sync_state', sync_state))
        FROM pg_stat_replication) END,
    'slots', CASE WHEN NOT me.standby THEN (SELECT json_agg(json_build_object(
        'name', slot_name, 'type', slot_type, 'active', active, 'restart_lsn', restart_lsn::text,
        'retained', pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)))
        FROM pg_replication_slots) END,
    'receiver', CASE WHEN me.standby THEN (SELECT json_build_object('status', status, 'slot', slot_name)
        FROM pg_stat_wal_receiver) END)
FROM me
"""
SLOT_PREFIX = "_cnpg_"  # CNPG's HA slot of instance main-db-2 is _cnpg_main_db_2 (its default prefix)


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

    async def _ask(self, ip: str, password: str) -> dict[str, Any] | str:
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
            cur = await conn.execute(SQL)
            row = await cur.fetchone()
            return dict(row[0]) if row and isinstance(row[0], dict) else "no answer to the status query"

    async def poll(self) -> None:
        password = await self._password()
        if password is None:
            db = self.config.database
            self.store.set_source(
                self.name, SourceState.FORBIDDEN, f"cannot read secret {db.namespace}/{db.superuser_secret}"
            )
            return
        answers: dict[str, dict[str, Any] | str] = {}
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
    def _judge(answers: dict[str, dict[str, Any] | str]) -> tuple[Replication, ...]:
        primaries = [a for a in answers.values() if isinstance(a, dict) and not a.get("standby")]
        primary = primaries[-1] if primaries else {}
        primary_lsn = _lsn(primary.get("lsn"))
        streams = {s["name"]: s for s in primary.get("streams") or []}
        slots = {s.name: s for s in _slots(primary)}
        out = []
        for name, a in sorted(answers.items()):
            if isinstance(a, str):
                out.append(Replication(name, "unreachable", "unreachable", None, None, None, a))
            elif not a.get("standby"):
                system_id, started_at = _server(a)
                out.append(
                    Replication(
                        name,
                        "primary",
                        "primary",
                        a.get("lsn"),
                        0,
                        0.0,
                        system_id=system_id,
                        started_at=started_at,
                        wal_file=a.get("wal_file"),
                        slots=_slots(a),
                    )
                )
            else:
                out.append(_replica(name, a, streams.get(name) or {}, slots, primary_lsn))
        return tuple(out)


def _server(a: dict[str, Any]) -> tuple[str | None, str | None]:
    """What every instance says of itself: its system identifier and when its postmaster started."""
    started = a.get("started_at")
    return a.get("system_id"), None if started is None else str(started)


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def _slots(a: dict[str, Any]) -> tuple[ReplicationSlot, ...]:
    return tuple(
        ReplicationSlot(
            str(s["name"]),
            str(s.get("type") or ""),
            bool(s.get("active")),
            s.get("restart_lsn"),
            None if s.get("retained") is None else int(s["retained"]),
        )
        for s in sorted(a.get("slots") or [], key=lambda s: str(s["name"]))
    )


def _replica(
    name: str,
    a: dict[str, Any],
    stream: dict[str, Any],
    slots: dict[str, ReplicationSlot],
    primary_lsn: int | None,
) -> Replication:
    """A replica from its own answer and the primary's.  No row in pg_stat_wal_receiver is a receiver that
    is not running ("stopped"); a row without a status is one this role may not read (unknown).  Its slot
    is the one its receiver names, else CNPG's for the instance."""
    replay = _lsn(a.get("lsn"))
    receiver = a.get("receiver")
    status = "stopped" if receiver is None else receiver.get("status")
    slot = slots.get(str((receiver or {}).get("slot") or SLOT_PREFIX + name.replace("-", "_")))
    lag = None if primary_lsn is None or replay is None else max(0, primary_lsn - replay)
    system_id, started_at = _server(a)
    return Replication(
        name,
        "replica",
        str(stream.get("state") or status or "unknown"),
        a.get("lsn"),
        lag,
        _seconds(stream.get("replay_lag")),
        system_id=system_id,
        started_at=started_at,
        receiver=status,
        sent_lsn=stream.get("sent_lsn"),
        write_lsn=stream.get("write_lsn"),
        flush_lsn=stream.get("flush_lsn"),
        replay_lsn=stream.get("replay_lsn"),
        write_lag_s=_seconds(stream.get("write_lag")),
        flush_lag_s=_seconds(stream.get("flush_lag")),
        sync_state=stream.get("sync_state"),
        slot=slot.name if slot else None,
        slot_retained_bytes=slot.retained_bytes if slot else None,
    )
