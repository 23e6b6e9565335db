"""PostgreSQL's own tools against the cluster's primary: pg_dump, pg_restore, SQL — through an SSH tunnel.

The primary is reached as applications reach it, through CNPG's ``<cluster>-rw`` Service (its cluster IP,
forwarded by ``ssh -L`` from ``database.tunnel_via``), as the superuser from CNPG's secret.  The password
goes to the tools through ``PGPASSWORD`` in their environment only — never a command line, never a log.
``pg_dump`` must be at least the server's major version (the seed runs PostgreSQL 17; the lab 15): the
newest installed client is used.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import glob
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg

from console.clients.kube import request
from console.clients.ssh import Tunnel
from console.config import Config
from console.errors import OpsError

TERMINATE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
)


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


class Primary:
    def __init__(self, config: Config, api: Any) -> None:
        self.config = config
        self.api = api
        self.tunnel = Tunnel(config.database.tunnel_via, config.ssh)
        self._creds: tuple[str, str] | None = None
        self._port: int | None = None

    async def connect_info(self) -> tuple[int, str, str]:
        db = self.config.database
        if self._creds is None:
            secret = await request(
                self.api, "GET", f"/api/v1/namespaces/{db.namespace}/secrets/{db.superuser_secret}"
            )
            data = secret.get("data") or {}
            self._creds = (
                base64.b64decode(data.get("username", "")).decode() or "postgres",
                base64.b64decode(data.get("password", "")).decode(),
            )
        svc = await request(self.api, "GET", f"/api/v1/namespaces/{db.namespace}/services/{db.cluster}-rw")
        port = await self.tunnel.port_for(svc["spec"]["clusterIP"], db.port)
        return port, self._creds[0], self._creds[1]

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

    async def _connect(self, dbname: str, autocommit: bool = True) -> psycopg.AsyncConnection[Any]:
        port, user, password = await self.connect_info()
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

    async def sql(self, dbname: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with await self._connect(dbname) as conn:
            cur = await conn.execute(query.encode(), params)
            return list(await cur.fetchall()) if cur.description else []

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

    async def start_dump(self, dbname: str, path: Path, snapshot: str) -> asyncio.subprocess.Process:
        """``pg_dump -Fc`` of ``dbname`` as of ``snapshot`` (see :meth:`snapshot`) into ``path`` — a FIFO the
        caller's ``borg create --read-special`` reads, so no dump byte touches the disk.  pg_dump opens its
        output before it connects: it waits on the FIFO until borg reaches it."""
        port, user, password = await self.connect_info()
        return await asyncio.create_subprocess_exec(
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

    @staticmethod
    async def finish_dump(dbname: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        err = await proc.stderr.read()
        if await proc.wait() != 0:
            raise PgToolError(f"pg_dump {dbname}: {_last(err)}")

    @contextlib.asynccontextmanager
    async def snapshot(self, dbname: str) -> AsyncIterator[tuple[str, dict[str, int]]]:
        """A read-only REPEATABLE READ transaction on ``dbname``, exported: (snapshot id, row counts in it).

        pg_dump ``--snapshot`` imports it, so the counts a verify-restore compares against are the dump's
        own, whatever is written meanwhile.  The transaction stays open (and the snapshot importable) until
        the block ends — after the upload."""
        conn = await self._connect(dbname, autocommit=False)
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
        port, user, password = await self.connect_info()
        proc = await asyncio.create_subprocess_exec(
            tool("pg_restore"),
            "--no-owner",
            f"--role={owner}",
            "--exit-on-error",
            "-d",
            dbname,
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
        """End ``dbname``'s sessions (the pooler's too), then drop it."""
        await self.sql("postgres", TERMINATE, (dbname,))
        await self.sql("postgres", f'DROP DATABASE IF EXISTS "{dbname}"')

    async def close(self) -> None:
        await self.tunnel.close()


def _last(err: bytes) -> str:
    lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip()[:200] if lines else "failed"
