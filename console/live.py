"""All live sources for one config, started and stopped together: what the dashboard and
``--action status`` share, so a script sees exactly what the screen shows.

Each source writes into the same :class:`~console.store.ClusterStore` and reports its own state; a
source that cannot even be constructed (no Hetzner token) is reported as unreachable and the others
still run.  Heavy client libraries are imported here, not at module import of ``console``: the TUI paints
before this module loads.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from console.config import Config, ConfigError
from console.model import SourceState
from console.store import ClusterStore


class Source(Protocol):
    name: str
    synced: asyncio.Event

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class LiveSources:
    def __init__(self, store: ClusterStore, config: Config) -> None:
        self.store = store
        self.config = config
        self.sources: dict[str, Source] = {}
        self.kube_api: Any = None

    async def start(self) -> None:
        # Borg runs as child processes (each ~1.5 s: interpreter, SSH, repository key): start them before
        # the heavy imports below, so they overlap instead of following.
        from console.sources.borg import BorgSource

        self.sources["borg"] = BorgSource(self.store, self.config)
        self.sources["borg"].start()
        await asyncio.sleep(0)  # let the borg processes spawn now
        from console.sources.dns import DnsSource
        from console.sources.hetzner import HetznerSource
        from console.sources.http import HttpSource
        from console.sources.kube import KubeSource, api_client, weak_db_credentials
        from console.sources.pg import PgSource

        k = self.config.kubernetes
        try:
            self.kube_api = await api_client(k.kubeconfig or None, k.context)
        except Exception as exc:  # a broken kubeconfig: the Kubernetes panels say why, the rest runs
            self.store.set_source("kubernetes", SourceState.UNREACHABLE, f"kubeconfig: {exc}")
        else:
            self.sources["kubernetes"] = KubeSource(self.store, self.kube_api)
            self.sources["postgres"] = PgSource(self.store, self.config, self.kube_api)
        self.sources["http"] = HttpSource(self.store, self.config, self.config.health.interval_s)
        self.sources["dns"] = DnsSource(self.store, self.config)
        try:
            self.sources["hetzner"] = HetznerSource(self.store, self.config)
        except ConfigError as exc:  # no token: the panel says so, the rest still works
            self.store.set_source("hetzner", SourceState.UNREACHABLE, str(exc))
        for name, source in self.sources.items():
            if name != "borg":
                source.start()
        if self.kube_api is not None:
            self.store.set_extra("weak_db_credentials", await weak_db_credentials(self.kube_api, self.config))

    async def synced(self, timeout: float) -> None:
        """Until every source answered once (or ``timeout``: a silent source is reported, not awaited)."""
        waits = [asyncio.ensure_future(s.synced.wait()) for s in self.sources.values()]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for w in pending:
                w.cancel()

    def refresh(self, name: str) -> None:
        source = self.sources.get(name)
        if source is not None and hasattr(source, "refresh"):
            source.refresh()

    async def stop(self) -> None:
        for source in self.sources.values():
            await source.stop()
        if self.kube_api is not None:
            await self.kube_api.close()
            self.kube_api = None
