"""Waiting for full steady state from the live sources — after a drill, a recovery, a node replacement.

Steady state is :func:`actions.drill_checks.steady_state` of a fresh snapshot: nodes Ready, targets
healthy, CNPG healthy with its replica streaming, every Deployment ready, the HA spread held.  When only
the spread is missing (pods that fled a node stay where they went), the Deployments concerned get a
rolling restart one at a time, each finished before the next, so the scheduler spreads them again without
several rollouts at once.  The wait is driven by the store's changes (and a look at PostgreSQL each
second, whose poll is slower), not by a clock of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from actions.drill_checks import spread_broken, steady_state
from console.clients.kube import KubeError, rollout_restart
from console.config import Config
from console.events import Event, Log
from console.kubeobj import rolled_out
from console.snapshot import SnapshotBuilder


async def until_steady(
    live: Any,
    config: Config,
    api: Any,
    timeout: float,
    emit: Callable[[Event], None],
    builder: SnapshotBuilder | None = None,
    on_restart: Callable[[str], None] | None = None,
) -> list[str]:
    """Wait up to ``timeout`` s; what still keeps the cluster from steady state (empty: steady)."""
    builder = builder or SnapshotBuilder(config)
    changed = asyncio.Event()

    def on_change(_: set[str]) -> None:
        changed.set()

    live.store.subscribe(on_change)
    deadline = time.monotonic() + timeout
    restarted: set[str] = set()
    rolling: tuple[str, int] | None = None
    last_refresh = 0.0
    try:
        while True:
            if time.monotonic() - last_refresh > 1.0:
                last_refresh = time.monotonic()
                live.refresh("postgres")
            snap = builder.build(live.store)
            gaps = steady_state(snap, config)
            if not gaps or time.monotonic() > deadline:
                return gaps
            if rolling is not None and _rolled(live, *rolling):
                rolling = None
            if rolling is None and all("not spread" in g for g in gaps):
                todo = [n for n in spread_broken(snap, config) if n not in restarted]
                if todo:
                    restarted.add(todo[0])
                    rolling = (todo[0], await _restart(api, todo[0], emit))
                    if on_restart is not None:
                        on_restart(todo[0])
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(0.5, max(0.0, deadline - time.monotonic())))
    finally:
        live.store.unsubscribe(on_change)


async def _restart(api: Any, name: str, emit: Callable[[Event], None]) -> int:
    """``kubectl rollout restart`` of ``namespace/deployment``; the generation to wait for (0: refused)."""
    ns, deploy = name.split("/", 1)
    emit(Log("info", f"{name}: pods share a node; rolling restart to spread them"))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        done = await rollout_restart(api, ns, deploy, stamp)
    except KubeError as exc:
        emit(Log("warning", f"{name}: restart refused: {exc.message}"))
        return 0
    return int(done.get("metadata", {}).get("generation", 0))


def _rolled(live: Any, name: str, generation: int) -> bool:
    """The Deployment's rollout of ``generation`` (or later) finished: observed, every replica updated,
    ready, and no old one left."""
    ns, deploy = name.split("/", 1)
    d = live.store.objects.get("deployments", {}).get((ns, deploy))
    if d is None:
        return True
    return int(d["metadata"].get("generation", 0)) >= generation and rolled_out(d)
