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
from console.sources.base import PollingSource
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


class HttpSource(PollingSource):
    """The prod and staging health URLs, as a user reaches them, every ``health.interval_s``."""

    name = "http"

    def __init__(self, store: ClusterStore, config: Config) -> None:
        super().__init__(store, config)
        self.session: aiohttp.ClientSession | None = None

    def interval(self) -> float:
        return self.config.health.interval_s

    async def setup(self) -> None:
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def poll(self) -> None:
        h, session = self.config.health, self.session
        assert session is not None
        results = await asyncio.gather(
            probe(session, "prod", h.prod_url, h.resolve), probe(session, "staging", h.staging_url, h.resolve)
        )
        self.store.set_extra("probes", tuple(results))
        self.store.set_source(self.name, SourceState.OK)
