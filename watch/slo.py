"""The watcher's share of the SLO ledger (``console/slo_ledger.py``): the outage seconds its probes see.

Each probe round that finds a probe failing adds the time since the previous round (at most two probe
intervals: a watcher that was itself stalled does not bill its own stall) to ``probe:<name>``.  The sums
are written to the ledger every ``watch.evaluate_s`` (when there is something to add) and when it stops,
by the Lease's holder only (two watchers would count each outage twice); the month's figures are read
back with each write, for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from console import slo_ledger
from console.clients.kube import KubeError
from console.config import Config
from console.model import Probe

log = logging.getLogger("opsconsole.watch")


class SloMeter:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.pending: dict[str, float] = {}
        self.spend: slo_ledger.MonthSpend | None = None
        self._last_round: float | None = None
        self._synced_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def observe(self, probes: Iterable[Probe], at: float) -> None:
        last, self._last_round = self._last_round, at
        if last is None:
            return
        elapsed = min(at - last, 2 * self.config.health.interval_s)
        for p in probes:
            if not p.ok:
                key = f"probe:{p.name}"
                self.pending[key] = self.pending.get(key, 0.0) + elapsed

    def sync(self, api: Any, now: float) -> None:
        """Every ``evaluate_s``: write what was measured and read the month back (in the background); the
        month is read every ten intervals when there is nothing to write (a drill adds to it meanwhile)."""
        every = self.config.watch.evaluate_s
        due = every if any(self.pending.values()) else 10 * every
        if now - self._synced_at < due or (self._task is not None and not self._task.done()):
            return
        self._synced_at = now
        self._task = asyncio.ensure_future(self.flush(api))

    async def flush(self, api: Any) -> None:
        amounts, self.pending = self.pending, {}
        ns = self.config.drill.lock_namespace
        try:
            await slo_ledger.add(api, ns, amounts)
            self.spend = await slo_ledger.read(api, ns, self.config.slo.monthly_budget_s, time.time())
        except KubeError as exc:
            for key, value in amounts.items():  # kept for the next write: nothing measured is lost
                self.pending[key] = self.pending.get(key, 0.0) + value
            log.warning("the SLO ledger cannot be written: %s", exc.sentence())
