"""PostgreSQL's own tools against the cluster: pg_dump, pg_restore, SQL.

SQL reaches the primary as applications reach it, through CNPG's ``<cluster>-rw`` Service (its cluster IP,
forwarded by ``ssh -L`` from ``database.tunnel_via``), and a replica by its pod IP the same way, as the
superuser from CNPG's secret.  The password goes to local tools through ``PGPASSWORD`` in their
environment only — never a command line, never a log.

Where the dump and restore tools run is ``database.dump_via``:

* ``exec`` (the default) — inside the instance pod's ``postgres`` container, through the Kubernetes exec
  subresource (:mod:`console.clients.pod_exec`), so the tools are the server's own version whatever the
  operator's machine has.  CNPG's container sets ``PGHOST`` (its socket directory) and ``PGDATA``; the
  tools connect over the local socket as ``postgres``.  A dump runs on a streaming replica when one is
  healthy (it has replayed the backup's sentinel; its lag is recorded), on the primary otherwise; a restore
  always on the primary.  Dump bytes stream from the exec's stdout into the caller's FIFO.
* ``local`` — the newest ``pg_dump``/``pg_restore`` installed here, against the primary through the
  tunnel.  ``pg_dump`` refuses a server of a newer major version, so the console compares the two first and
  refuses with one sentence naming the package to install.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import glob
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from console.clients.cnpg import primary_and_instances
from console.clients.kube import request
from console.clients.pod_exec import FifoWriter, bounded_stdin, file_chunks, run_in_pod
from console.clients.ssh import Tunnel
from console.config import Config
from console.errors import OpsError
from console.kubeobj import is_ready

CONTAINER = "postgres"  # CNPG's instance container
REPLAY_WAIT_S = 30.0  # how long a replica may take to replay the backup's sentinel before the primary dumps


class PgToolError(OpsError):
    """A failed pg_dump/pg_restore/SQL step, with the tool's own last line."""


def tool(name: str) -> str:
    """The newest installed ``pg_dump``/``pg_restore`` (Debian keeps each major under /usr/lib/postgresql)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise PgToolError(f"{name} is not installed (Debian package postgresql-client)")
    return path


def tool_major(path: str) -> int:
    """The major version of a PostgreSQL client tool (``pg_dump (PostgreSQL) 15.18`` → 15)."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    found = re.search(r"\) (\d+)", out)
    if found is None:
        raise PgToolError(f"cannot tell the version of {path}: {out.strip()[:80]}")
    return int(found.group(1))


def version_refusal(name: str, tool_version: int, server_version: int) -> str | None:
    """The sentence refusing a local tool older than the server (pg_dump cannot dump a newer server)."""
    if tool_version >= server_version:
        return None
    return (
        f"{name} {tool_version} cannot work with PostgreSQL {server_version}, which is newer: install "
        f'postgresql-client-{server_version} (PGDG apt repository) or set database.dump_via = "exec"'
    )


@dataclass(frozen=True)
class DumpSource:
    """The instance a dump reads: its pod (exec) or the ``-rw`` Service (``ip`` None), and how far it was
    behind the primary when chosen."""

    instance: str
    role: str  # primary | replica
    ip: str | None
    lag_bytes: int = 0


class DumpJob:
    """One running dump into a FIFO: a local pg_dump process, or an exec session streaming into it."""

    def __init__(self, dbname: str, task: asyncio.Task[None], fifo: FifoWriter | None = None) -> None:
        self.dbname = dbname
        self.task = task
        self.fifo = fifo

    async def wait(self) -> None:
        await self.task

    def kill(self) -> None:
        if self.fifo is not None:
            self.fifo.abandon()
        self.task.cancel()


class Primary:
    def __init__(self, config: Config, api: Any) -> None:
        self.config = config
        self.api = api
        self.tunnel = Tunnel(config.database.tunnel_via, config.ssh)
        self._creds: tuple[str, str] | None = None

    @property
    def via_exec(self) -> bool:
        return self.config.database.dump_via == "exec"

    async def _credentials(self) -> tuple[str, str]:
        if self._creds is None:
            db = self.config.database
            secret = await request(
                self.api, "GET", f"/api/v1/namespaces/{db.namespace}/secrets/{db.superuser_secret}"
            )
            data = secret.get("data") or {}
            self._creds = (
                base64.b64decode(data.get("username", "")).decode() or "postgres",
                base64.b64decode(data.get("password", "")).decode(),
            )
        return self._creds

    async def connect_info(self, ip: str | None = None) -> tuple[int, str, str]:
        """(local port, user, password) for the primary (``ip`` None: the ``-rw`` Service) or a pod IP."""
        db = self.config.database
        user, password = await self._credentials()
        if ip is None:
            svc = await request(
                self.api, "GET", f"/api/v1/namespaces/{db.namespace}/services/{db.cluster}-rw"
            )
            ip = str(svc["spec"]["clusterIP"])
        return await self.tunnel.port_for(ip, db.port), user, password

    def _env(self, port: int, user: str, password: str) -> dict[str, str]:
        return {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(port),
            "PGUSER": user,
            "PGPASSWORD": password,
            "PGSSLMODE": self.config.database.sslmode,
            "PGCONNECT_TIMEOUT": "10",
        }

    async def _connect(
        self, dbname: str, autocommit: bool = True, ip: str | None = None
    ) -> psycopg.AsyncConnection[Any]:
        port, user, password = await self.connect_info(ip)
        return await psycopg.AsyncConnection.connect(
            host="127.0.0.1",
            port=port,
            user=user,
            password=password,
            dbname=dbname,
            sslmode=self.config.database.sslmode,
            connect_timeout=10,
            autocommit=autocommit,
            application_name="opsconsole-backup",
        )

    async def sql(
        self, dbname: str, query: str, params: tuple[Any, ...] = (), ip: str | None = None
    ) -> list[tuple[Any, ...]]:
        async with await self._connect(dbname, ip=ip) as conn:
            cur = await conn.execute(query.encode(), params)
            return list(await cur.fetchall()) if cur.description else []

    async def check_tools(self, *names: str) -> None:
        """With local tools: refuse (one sentence) a server whose major version is newer than theirs."""
        if self.via_exec:
            return
        rows = await self.sql("postgres", "SHOW server_version_num")
        server = int(rows[0][0]) // 10000
        for name in names:
            refusal = version_refusal(name, tool_major(tool(name)), server)
            if refusal:
                raise PgToolError(refusal)

    async def dump_source(self) -> DumpSource:
        """Where a dump reads: the healthy streaming replica least behind (exec), else the primary."""
        primary, pods = await primary_and_instances(self.api, self.config)
        if not self.via_exec:
            return DumpSource(primary, "primary", None)
        rows = await self.sql(
            "postgres",
            "SELECT application_name, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
            "FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 2, 1",
        )
        for name, lag in rows:
            pod = pods.get(str(name)) or {}
            ip = (pod.get("status") or {}).get("podIP")
            if ip and is_ready(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp"):
                return DumpSource(str(name), "replica", str(ip), int(lag or 0))
        return DumpSource(primary, "primary", None)

    async def primary_source(self) -> DumpSource:
        primary, _ = await primary_and_instances(self.api, self.config)
        return DumpSource(primary, "primary", None)

    async def replayed(self, source: DumpSource) -> bool:
        """Whether ``source`` has replayed everything the primary had written when asked (the sentinel)."""
        if source.role == "primary":
            return True
        target = (await self.sql("postgres", "SELECT pg_current_wal_lsn()::text"))[0][0]
        deadline = asyncio.get_running_loop().time() + REPLAY_WAIT_S
        while True:
            rows = await self.sql(
                "postgres", "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,), ip=source.ip
            )
            if rows and rows[0][0]:
                return True
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.1)

    @staticmethod
    async def _count_rows(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
        """Rows per user table, as this connection's transaction (or the moment) sees them."""
        tables = await (
            await conn.execute(
                b"SELECT quote_ident(schemaname) || '.' || quote_ident(relname) "
                b"FROM pg_stat_user_tables ORDER BY 1"
            )
        ).fetchall()
        counts = {}
        for (name,) in tables:
            got = await (await conn.execute(f"SELECT count(*) FROM {name}".encode())).fetchone()
            counts[str(name)] = int(got[0]) if got else 0
        return counts

    async def row_counts(self, dbname: str) -> dict[str, int]:
        async with await self._connect(dbname) as conn:
            return await self._count_rows(conn)

    async def start_dump(self, dbname: str, path: Path, snapshot: str, source: DumpSource) -> DumpJob:
        """``pg_dump -Fc`` of ``dbname`` as of ``snapshot`` (see :meth:`snapshot`, on the same ``source``)
        into ``path`` — a FIFO the caller's ``borg create --read-special`` reads, so no dump byte touches
        the disk."""
        if self.via_exec:
            fifo = FifoWriter(path)
            task = asyncio.ensure_future(self._exec_dump(dbname, fifo, snapshot, source))
            return DumpJob(dbname, task, fifo)
        port, user, password = await self.connect_info()
        proc = await asyncio.create_subprocess_exec(
            tool("pg_dump"),
            "-Fc",
            "--no-sync",  # a FIFO cannot be fsynced; durability is borg's commit
            f"--snapshot={snapshot}",
            "-f",
            str(path),
            dbname,
            env=self._env(port, user, password),
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        return DumpJob(dbname, asyncio.ensure_future(_finish_local(dbname, proc)))

    async def _exec_dump(self, dbname: str, fifo: FifoWriter, snapshot: str, source: DumpSource) -> None:
        async with fifo:
            result = await run_in_pod(
                self.api,
                self.config.database.namespace,
                source.instance,
                CONTAINER,
                ["pg_dump", "-Fc", f"--snapshot={snapshot}", dbname],
                stdout=fifo.write,
            )
        if result.code != 0:
            raise PgToolError(f"pg_dump {dbname} in {source.instance}: {result.last_line()}")

    @contextlib.asynccontextmanager
    async def snapshot(self, dbname: str, source: DumpSource) -> AsyncIterator[tuple[str, dict[str, int]]]:
        """A read-only REPEATABLE READ transaction on ``dbname`` at ``source``, exported: (snapshot id, row
        counts in it).

        pg_dump ``--snapshot`` imports it, so the counts a verify-restore compares against are the dump's
        own, whatever is written meanwhile (a standby exports and imports snapshots as a primary does).
        The transaction stays open (and the snapshot importable) until the block ends — after the upload."""
        conn = await self._connect(
            dbname, autocommit=False, ip=source.ip if source.role == "replica" else None
        )
        try:
            await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            await conn.set_read_only(True)
            row = await (await conn.execute(b"SELECT pg_export_snapshot()")).fetchone()
            assert row is not None
            counts = await self._count_rows(conn)
            yield str(row[0]), counts
        finally:
            await conn.close()

    async def restore(self, dbname: str, dump: Path, owner: str) -> None:
        """``pg_restore`` of the local file ``dump`` into ``dbname`` on the primary (exec: in its pod, the
        file streamed to its stdin)."""
        args = ["--no-owner", f"--role={owner}", "--exit-on-error", "-d", dbname]
        if self.via_exec:
            primary, _ = await primary_and_instances(self.api, self.config)
            result = await run_in_pod(
                self.api,
                self.config.database.namespace,
                primary,
                CONTAINER,
                bounded_stdin(["pg_restore", *args], dump.stat().st_size),
                stdin=file_chunks(dump),
            )
            if result.code != 0:
                raise PgToolError(f"pg_restore into {dbname} in {primary}: {result.last_line()}")
            return
        port, user, password = await self.connect_info()
        proc = await asyncio.create_subprocess_exec(
            tool("pg_restore"),
            *args,
            str(dump),
            env=self._env(port, user, password),
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise PgToolError(f"pg_restore into {dbname}: {_last(err)}")

    async def recreate(self, dbname: str, owner: str) -> None:
        """Drop (after ending its sessions) and create ``dbname`` owned by ``owner``."""
        await self.drop(dbname)
        await self.sql("postgres", f'CREATE DATABASE "{dbname}" OWNER "{owner}"')

    async def drop(self, dbname: str) -> None:
        """Drop ``dbname``, ending its sessions in the same statement (``WITH (FORCE)``, PostgreSQL 13+):
        PgBouncer opens a new server connection the moment one is ended, so ending them first and dropping
        after races the pooler's clients."""
        await self.sql("postgres", f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    async def close(self) -> None:
        await self.tunnel.close()


async def _finish_local(dbname: str, proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    try:
        err = await proc.stderr.read()
        if await proc.wait() != 0:
            raise PgToolError(f"pg_dump {dbname}: {_last(err)}")
    finally:
        if proc.returncode is None:
            proc.kill()


def _last(err: bytes) -> str:
    lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip()[:200] if lines else "failed"
