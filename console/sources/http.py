"""HTTP probes of the health URLs, as a user reaches them.

``health.resolve`` pins a host to an address (like ``curl --resolve``): the lab points ``docfast.dev`` at
its load balancer on loopback; on the real cluster it is empty and DNS decides.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import aiohttp

from console.config import Config
from console.model import Probe, SourceState
from console.store import ClusterStore


async def probe(
    session: aiohttp.ClientSession, name: str, url: str, resolve: dict[str, str], timeout: float = 5.0
) -> Probe:
    parts = urlsplit(url)
    host = parts.hostname or ""
    target, headers = url, {}
    if host in resolve:
        target = f"{parts.scheme}://{resolve[host]}{parts.path or '/'}"
        headers["Host"] = host
    started = time.perf_counter()
    try:
        async with session.get(
            target,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            server_hostname=host if parts.scheme == "https" else None,
        ) as resp:
            await resp.read()
            ok = 200 <= resp.status < 300
            return Probe(name, url, ok, resp.status, (time.perf_counter() - started) * 1000)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Probe(name, url, False, None, None, type(exc).__name__)


class HttpSource:
    name = "http"

    def __init__(self, store: ClusterStore, config: Config, interval: float = 10.0) -> None:
        self.store = store
        self.config = config
        self.interval = interval
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def poll(self, session: aiohttp.ClientSession) -> None:
        h = self.config.health
        results = await asyncio.gather(
            probe(session, "prod", h.prod_url, h.resolve), probe(session, "staging", h.staging_url, h.resolve)
        )
        self.store.set_extra("probes", tuple(results))
        self.store.set_source(self.name, SourceState.OK)
        self.synced.set()

    def start(self) -> None:
        async def loop() -> None:
            async with aiohttp.ClientSession() as session:
                while True:
                    await self.poll(session)
                    await asyncio.sleep(self.interval)

        self._task = asyncio.ensure_future(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
