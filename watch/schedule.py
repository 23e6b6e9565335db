"""Scheduled actions: ``[[watch.schedule]]`` entries run through the one action pipeline (plan, lock,
journal, verify, rollback), by the Lease's holder only, one at a time.

* Due times come from ``cron`` (UTC, through ``cronsim``) or ``every``; the last start of each entry is
  kept in the watcher's journal, so a restarted watcher neither runs an entry twice nor skips one that
  fell due while it was down (that one runs once, at start, if its window allows).
* ``window``: an entry never starts outside it.  A run refused because another action holds the cluster
  lock (or its preflight says no) is tried again every ``REFUSED_RETRY_S`` while its occurrence lasts
  (within the window, before the next occurrence); then it is given up and said as a finding.
* Each finished run is a message of its own (its verdict and report path) and, when it did not pass, a
  finding (``scheduled-action-failed``/``-refused``) that alerts like any other until the entry's next
  run passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console.config import Config
from console.errors import OpsError, Verdict
from console.events import Finished
from console.model import Finding, Severity
from console.watch_config import ScheduledAction
from watch.book import AlertBook

log = logging.getLogger("opsconsole.watch")
REFUSED_RETRY_S = 300.0
STOP_TIMEOUT_S = 120.0  # an interrupted run's rollback, before the watcher gives up waiting
_GOOD = (Verdict.PASS, Verdict.DONE, Verdict.CLEAN)


def entry_name(entry: ScheduledAction, index: int) -> str:
    return f"{index}:{entry.action}"


def next_occurrence(entry: ScheduledAction, after: float) -> float:
    """The first due time strictly after ``after``."""
    if entry.every_s is not None:
        return after + entry.every_s
    from cronsim import CronSim

    assert entry.cron is not None
    start = datetime.fromtimestamp(after, UTC).replace(microsecond=0)
    return next(CronSim(entry.cron, start)).timestamp()


def in_window(entry: ScheduledAction, at: float) -> bool:
    t = datetime.fromtimestamp(at, UTC)
    return entry.in_window(t.hour * 60 + t.minute)


def action_params(cls: Any, given: dict[str, Any]) -> Any:
    """The action's ``Params`` from the entry's ``params`` (keys as the flags, ``-`` or ``_``)."""
    hints = typing.get_type_hints(cls.Params) if given else {}
    values = {}
    for key, value in given.items():
        name = key.replace("-", "_")
        if name not in hints:
            raise OpsError(f"watch.schedule {cls.name}: the action takes no parameter {key!r}")
        values[name] = Path(str(value)) if hints[name] in (Path, Path | None) else value
    return cls.Params(**values)


@dataclass
class Due:
    name: str
    entry: ScheduledAction
    at: float  # the occurrence
    retry_at: float | None = None  # refused: next try


class Scheduler:
    def __init__(
        self,
        config: Config,
        book: AlertBook,
        live: Any,
        said: Callable[[str, str, str, bool], None],
        now: float,
    ) -> None:
        """``said(action, title, body, passed)``: a message about a finished run; ``live``: the watcher's
        sources."""
        self.config = config
        self.book = book
        self.live = live
        self.said = said
        self.findings: dict[str, Finding] = {}
        self.running: asyncio.Task[None] | None = None
        self._runner: Any = None
        self.dues: dict[str, Due] = {}
        for i, entry in enumerate(config.watch.schedule):
            name = entry_name(entry, i)
            last = self.book.get(f"schedule:{name}")
            first = next_occurrence(entry, float(last)) if last else next_occurrence(entry, now)
            self.dues[name] = Due(name, entry, first)

    def next_due(self) -> float | None:
        if self.running is not None and not self.running.done():
            return None
        times = [d.retry_at or d.at for d in self.dues.values()]
        return min(times) if times else None

    def poll(self, now: float) -> None:
        """Start the first entry due now (one at a time; the caller calls this as the Lease's holder)."""
        if self.running is not None and not self.running.done():
            return
        self.running = None
        for due in sorted(self.dues.values(), key=lambda d: d.retry_at or d.at):
            if (due.retry_at or due.at) > now:
                continue
            if not in_window(due.entry, now):
                log.info(
                    "schedule: %s was due but the window %s is closed; next occurrence",
                    due.name,
                    due.entry.window,
                )
                self._done(due, now, skipped=True)
                continue
            self.running = asyncio.ensure_future(self._run(due, now))
            return

    def _done(self, due: Due, started: float, skipped: bool = False) -> None:
        if not skipped:
            self.book.put(f"schedule:{due.name}", str(started))
        due.at = next_occurrence(due.entry, max(started, due.at))
        due.retry_at = None

    async def _run(self, due: Due, started: float) -> None:
        from actions.registry import ACTIONS
        from console.runner import Runner, yes

        name = due.entry.action
        try:
            cls = ACTIONS[name]
            action = cls(self.config, action_params(cls, dict(due.entry.params)))
        except (KeyError, OpsError, TypeError) as exc:
            why = f"unknown action {name!r}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            self._finding(due, Severity.WARNING, "scheduled-action-failed", f"{name} cannot run: {why}")
            self._done(due, started)
            return
        log.info("schedule: running %s", name)
        self._runner = Runner(action, lambda _: None, live=self.live)
        finished: Finished = await self._runner.run(yes(True))
        self._runner = None
        log.info("schedule: %s ended %s: %s", name, finished.verdict.value, finished.summary)
        if finished.verdict is Verdict.REFUSED and self._may_retry(due, started):
            due.retry_at = started + REFUSED_RETRY_S
            return
        if finished.verdict in _GOOD:
            self.findings.pop(due.name, None)
        else:
            code = (
                "scheduled-action-refused"
                if finished.verdict is Verdict.REFUSED
                else "scheduled-action-failed"
            )
            self._finding(
                due, Severity.WARNING, code, f"{name} ended {finished.verdict.value}: {finished.summary}"
            )
        self._done(due, started)
        report = f"\nreport: {finished.report_path}" if finished.report_path else ""
        self.said(
            name,
            f"[SCHEDULED {name} {finished.verdict.value}] ({self.config.cluster.name})",
            f"{finished.summary}{report}",
            finished.verdict in _GOOD,
        )
        if name in ("verify-restore", "backup-check", "backup"):
            self.live.refresh("borg")  # the receipts changed: the Backups panel and /metrics read them

    def _may_retry(self, due: Due, started: float) -> bool:
        again = started + REFUSED_RETRY_S
        return in_window(due.entry, again) and again < next_occurrence(due.entry, due.at)

    def _finding(self, due: Due, severity: Severity, code: str, message: str) -> None:
        self.findings[due.name] = Finding(severity, code, due.entry.action, message)

    async def stop(self) -> None:
        """A run in progress is interrupted as Ctrl-C interrupts one (what it applied is rolled back)."""
        if self.running is None or self.running.done():
            return
        if self._runner is not None:
            self._runner.interrupt()
        try:
            await asyncio.wait_for(asyncio.shield(self.running), STOP_TIMEOUT_S)
        except TimeoutError:
            self.running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.running
