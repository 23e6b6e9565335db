"""All live sources for one config, started and stopped together: what the dashboard and
``--action status`` share, so a script sees exactly what the screen shows.

Each source writes into the same :class:`~console.store.ClusterStore` and reports its own state; a
source that cannot even be constructed (no Hetzner token) is reported as unreachable and the others
still run.  Heavy client libraries are imported here, not at module import of ``console``: the TUI paints
before this module loads.
"""

from __future__ import annotations

import asyncio
from typing import Any

from console.config import Config, ConfigError
from console.model import SourceState
from console.sources.base import Source
from console.store import ClusterStore


class LiveSources:
    def __init__(self, store: ClusterStore, config: Config, postgres_first: bool = False) -> None:
        self.store = store
        self.config = config
        self.postgres_first = postgres_first
        self.sources: dict[str, Source] = {}
        self.kube_api: Any = None

    async def start(self) -> None:
        """Start every source, the Kubernetes watches first: most panels wait for them.  The other
        sources' client libraries (aiohttp, dnspython, hcloud, psycopg) are imported in a thread
        meanwhile, so the watches' first lists overlap those imports instead of following them."""
        import importlib

        # Borg runs as child processes (an interpreter, SSH, the repository key each: the slowest look of
        # all): start them first, so they overlap everything below.
        from console.sources.borg import BorgSource

        self.sources["borg"] = BorgSource(self.store, self.config)
        self.sources["borg"].start()
        await asyncio.sleep(0)  # let the borg processes spawn now
        # The others' modules are imported in a thread, in this order, each source started as soon as its
        # module is in: the Hetzner poll, the probes, DNS, PostgreSQL — or PostgreSQL first for
        # `--action status`, which waits for every source and where PostgreSQL's road (import, SSH
        # connection, tunnel, queries) is the longest; the dashboard, whose main thread renders meanwhile,
        # fills its panels sooner the other way (bench/status.py and bench/dashboard.py measure both).
        order = (
            ("hetzner", "console.sources.hetzner"),
            ("http", "console.sources.http"),
            ("dns", "console.sources.dns"),
            ("postgres", "console.sources.pg"),
        )
        if self.postgres_first:
            order = (order[-1], *order[:-1])
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def import_in_order() -> None:
            for name, module in order:
                try:
                    mod: Any = importlib.import_module(module)
                except Exception as exc:  # raised where the source would have started
                    mod = exc
                loop.call_soon_threadsafe(ready.put_nowait, (name, mod))

        importing = asyncio.ensure_future(asyncio.to_thread(import_in_order))
        from console.sources.kube import KubeSource, api_client, weak_db_credentials

        k = self.config.kubernetes
        try:
            self.kube_api = await api_client(k.kubeconfig or None, k.context)
        except Exception as exc:  # a broken kubeconfig: the Kubernetes panels say why, the rest runs
            self.store.set_source("kubernetes", SourceState.UNREACHABLE, str(exc).splitlines()[0])
        else:
            self.sources["kubernetes"] = KubeSource(self.store, self.kube_api)
            self.sources["kubernetes"].start()
            from console.sources.metrics import MetricsSource

            self.sources["metrics"] = MetricsSource(self.store, self.config, self.kube_api)
            self.sources["metrics"].start()
        for _ in order:
            name, mod = await ready.get()
            if isinstance(mod, Exception):
                raise mod
            try:
                source = self._make(name, mod)
            except ConfigError as exc:  # no Hetzner token: the panel says so, the rest still works
                self.store.set_source(name, SourceState.UNREACHABLE, str(exc))
                continue
            if source is not None:
                self.sources[name] = source
                source.start()
        await importing
        if self.kube_api is not None:
            self.store.set_extra("weak_db_credentials", await weak_db_credentials(self.kube_api, self.config))

    def _make(self, name: str, mod: Any) -> Source | None:
        """The source ``name`` from its freshly imported module (None: it cannot run here)."""
        source: Source | None = None
        if name == "http":
            source = mod.HttpSource(self.store, self.config)
        elif name == "dns":
            source = mod.DnsSource(self.store, self.config)
        elif name == "hetzner":
            source = mod.HetznerSource(self.store, self.config)
        elif self.kube_api is not None:  # PostgreSQL is reached through the cluster
            source = mod.PgSource(self.store, self.config, self.kube_api)
        return source

    async def synced(self, timeout: float) -> None:
        """Until every source answered once (or ``timeout``: a silent source is reported, not awaited)."""
        waits = [asyncio.ensure_future(s.synced.wait()) for s in self.sources.values()]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for w in pending:
                w.cancel()

    def refresh(self, name: str) -> None:
        source = self.sources.get(name)
        if source is not None:
            source.refresh()

    async def stop(self) -> None:
        for source in self.sources.values():
            await source.stop()
        if self.kube_api is not None:
            await self.kube_api.close()
            self.kube_api = None
