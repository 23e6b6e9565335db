"""``--action status``: the dashboard's snapshot, once, for scripts and cron.

Starts the same sources the dashboard uses, waits until each has answered once (or a deadline passes —
a silent source is reported, not waited for forever), builds the snapshot, stops the sources.
"""

from __future__ import annotations

import asyncio

from console.config import Config
from console.model import Snapshot
from console.snapshot import build
from console.sources.hetzner import HetznerSource
from console.sources.http import HttpSource
from console.sources.kube import KubeSource, api_client, weak_db_credentials
from console.store import ClusterStore


async def collect(config: Config, timeout: float = 10.0) -> Snapshot:
    store = ClusterStore()
    kube_api = await api_client(config.kubernetes.kubeconfig or None, config.kubernetes.context)
    sources: list[KubeSource | HetznerSource | HttpSource] = [
        KubeSource(store, kube_api),
        HttpSource(store, config),
    ]
    try:
        sources.append(HetznerSource(store, config))
    except Exception as exc:  # no token: the panel says so, the rest still works
        from console.model import SourceState

        store.set_source("hetzner", SourceState.UNREACHABLE, str(exc))
    try:
        for s in sources:
            s.start()
        await asyncio.wait([asyncio.ensure_future(s.synced.wait()) for s in sources], timeout=timeout)
        store.extra["weak_db_credentials"] = await weak_db_credentials(kube_api, config)
        return build(store, config, config.kubernetes.context)
    finally:
        for s in sources:
            await s.stop()
        await kube_api.close()  # type: ignore[no-untyped-call]
