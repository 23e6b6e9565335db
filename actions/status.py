"""``--action status``: the dashboard's snapshot, once, for scripts and cron.

Starts the same sources the dashboard uses (:class:`~console.live.LiveSources`), waits until each has
answered once (or a deadline passes — a silent source is reported, not waited for forever), builds the
snapshot, stops the sources.
"""

from __future__ import annotations

from console.config import Config
from console.live import LiveSources
from console.model import Snapshot
from console.snapshot import build
from console.store import ClusterStore


async def collect(config: Config, timeout: float = 10.0) -> Snapshot:
    store = ClusterStore()
    live = LiveSources(store, config, postgres_first=True)
    try:
        await live.start()
        await live.synced(timeout)
        return build(store, config, config.kubernetes.context)
    finally:
        await live.stop()
