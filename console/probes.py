"""Steady-state probes for drills: every ``interval`` (0.5 s) from before the fault until after recovery.

* ``http-prod`` / ``http-staging`` — GET of the health URLs as a user reaches them (through the load
  balancer; ``health.resolve`` pins the lab's hosts to it);
* ``db-write`` — an INSERT into a drill table through the pooler's Service, over an SSH tunnel via a node
  that is not the drill's target, as the application's own user (credentials read from the cluster, never
  printed).  A fresh connection each time: the question is "can a client write now?".

Probes are launched on a fixed clock and run concurrently, so a hanging request (a powered-off target is
a black hole) never delays the next one; each sample is stamped with the time it was *sent*.  An outage
window runs from the first failed sample to the next successful one, so its resolution is one interval.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import psycopg

from console.clients.kube import request
from console.clients.ssh import Tunnel
from console.config import Config
from console.events import ProbeSample
from console.sources.http import probe as http_probe

DRILL_TABLE = "opsconsole_drill"


class DbWriter:
    """Writes one row per call through the pooler (tunnelled), as the application would."""

    def __init__(self, config: Config, kube_api: Any, via: str, run_id: str) -> None:
        self.config = config
        self.kube_api = kube_api
        self.tunnel = Tunnel(via, config.ssh)
        self.run_id = run_id
        self._dsn: dict[str, Any] | None = None

    async def _params(self) -> dict[str, Any]:
        if self._dsn is None:
            db = self.config.database
            secret = await request(
                self.kube_api, "GET", f"/api/v1/namespaces/{db.namespace}/secrets/{db.credentials_secret}"
            )
            svc = await request(
                self.kube_api, "GET", f"/api/v1/namespaces/{db.namespace}/services/{db.pooler}"
            )
            data = secret.get("data") or {}
            self._dsn = {
                "user": base64.b64decode(data.get("username", "")).decode() or db.app_user,
                "password": base64.b64decode(data.get("password", "")).decode(),
                "dbname": db.databases[0],
                "host_in_cluster": svc["spec"]["clusterIP"],
                "sslmode": db.sslmode,
            }
        return self._dsn

    async def _connect(self, timeout: float) -> psycopg.AsyncConnection[Any]:
        p = await self._params()
        port = await self.tunnel.port_for(p["host_in_cluster"], self.config.database.port)
        return await psycopg.AsyncConnection.connect(
            host="127.0.0.1",
            port=port,
            user=p["user"],
            password=p["password"],
            dbname=p["dbname"],
            sslmode=p["sslmode"],
            connect_timeout=max(1, int(timeout)),
            autocommit=True,
            application_name="opsconsole-drill",
            # PgBouncer in transaction mode hands each transaction any server connection: a statement
            # prepared on one is unknown on the next, so the driver never prepares.
            prepare_threshold=None,
        )

    async def prepare(self) -> None:
        conn = await self._connect(5)
        async with conn:
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {DRILL_TABLE} "
                "(id bigserial PRIMARY KEY, run text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
            )

    async def write(self, timeout: float) -> None:
        async def go() -> None:
            conn = await self._connect(timeout)
            async with conn:
                await conn.execute(f"INSERT INTO {DRILL_TABLE} (run) VALUES (%s)", (self.run_id,))

        try:
            await asyncio.wait_for(go(), timeout)
        except Exception:
            await self.tunnel.broken()
            raise

    async def close(self) -> None:
        await self.tunnel.close()


class SteadyProbes:
    def __init__(
        self,
        config: Config,
        writer: DbWriter | None,
        on_sample: Callable[[ProbeSample], None],
        interval: float = 0.5,
        timeout: float = 3.0,
    ) -> None:
        self.config = config
        self.writer = writer
        self.on_sample = on_sample
        self.interval = interval
        self.timeout = timeout
        self.samples: list[ProbeSample] = []
        self.http = True  # False: the database write alone (a switchover's measurement)
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def _record(self, sample: ProbeSample) -> None:
        self.samples.append(sample)
        self.on_sample(sample)

    async def _http(self, name: str, url: str, sent: float) -> None:
        assert self._session is not None
        p = await http_probe(self._session, name, url, self.config.health.resolve, self.timeout)
        self._record(
            ProbeSample(name, p.ok, p.latency_ms, p.error or (None if p.ok else f"HTTP {p.status}"), at=sent)
        )

    async def _db(self, sent: float) -> None:
        assert self.writer is not None
        t0 = time.perf_counter()
        try:
            await self.writer.write(self.timeout)
        except Exception as exc:
            self._record(ProbeSample("db-write", False, None, type(exc).__name__, at=sent))
        else:
            self._record(ProbeSample("db-write", True, (time.perf_counter() - t0) * 1000, at=sent))

    def _launch(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _loop(self) -> None:
        h = self.config.health
        # force_close: a new connection per probe, as a new user would open (and the load balancer
        # chooses a target per connection).
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        # aiohttp (3.10+) silently resends an idempotent request once when the server closes without an
        # answer — exactly what a black-holed target does.  One sample is one attempt, or the probe would
        # report a failed request as a success 2 s later; there is no public switch, hence the attribute.
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        next_at = time.monotonic()
        while True:
            sent = time.time()
            if self.http:
                self._launch(self._http("http-prod", h.prod_url, sent))
                self._launch(self._http("http-staging", h.staging_url, sent))
            if self.writer is not None:
                self._launch(self._db(sent))
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        """Stop probing, let the samples in flight land, close what was opened (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=self.timeout + 1)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.writer is not None:
            await self.writer.close()
            self.writer = None
