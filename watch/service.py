"""The watcher: the dashboard's live sources and findings, judged into alerts, sent, and exported.

One loop: it wakes when the store changes (a watch event, a poll's answer), when an alert's ``for`` or
``keep_firing_for`` runs out, and at least every ``evaluate_s``; each wake builds a snapshot, turns its
findings into transitions (``watch/rules.py``), writes the alerts and the queued messages to the journal
in one transaction (``watch/book.py``) and delivers what is queued.  Only the Lease's holder queues
messages; a standby judges the same findings, so it knows what is open when it takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from console.config import Config
from console.errors import UsageError
from console.journal import operator
from console.live import LiveSources
from console.model import Snapshot
from console.snapshot import SnapshotBuilder
from console.store import ClusterStore
from watch.book import AlertBook
from watch.election import Election
from watch.metrics import Metrics
from watch.notify import Notifier, render_group
from watch.rules import AlertEngine
from watch.schedule import Scheduler
from watch.slo import SloMeter

log = logging.getLogger("opsconsole.watch")
SYNC_TIMEOUT_S = 30.0  # a source silent this long at start is judged as it is (unavailable), not awaited
COURIER_GRACE_S = 5.0  # at stop, what is being delivered gets this long; the rest stays in the outbox


class Watcher:
    def __init__(
        self,
        config: Config,
        config_path: Path | None,
        state_dir: Path,
        listen: tuple[str, int] | None = None,
    ) -> None:
        self.config = config
        self.w = config.watch
        self.config_path = config_path
        self.listen = listen or self.w.listen_address()
        self.identity = f"{operator()} pid {os.getpid()} watch"
        self.book = AlertBook(state_dir)
        self.engine = AlertEngine(self.w, self.book.alerts())
        self.notifier = Notifier(list(self.w.notify))
        self.metrics = Metrics(self)
        self.store = ClusterStore()
        self.live = LiveSources(self.store, config)
        self.builder = SnapshotBuilder(config)
        self.snapshot: Snapshot | None = None
        self.leader = False
        self.started_at = time.time()
        self.evaluated_at: float | None = None
        self.pending_messages = len(self.book.unsent())
        self.bound: tuple[str, int] | None = None
        self._wake = asyncio.Event()
        self._retry_at: dict[str, float] = {}  # target -> no courier before (after a failed delivery)
        self._couriers: dict[str, asyncio.Task[None]] = {}
        self._probes_seen: float | None = None
        self.scheduler: Scheduler | None = None
        self.slo = SloMeter(config)

    # ---- life --------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.notifier.prepare()  # a target that cannot be used is a config error (exit 2), said at once
        runner = await self._serve()
        election: Election | None = None
        try:
            await self.live.start()
            await self.live.synced(SYNC_TIMEOUT_S)
            election = self._elect()
            if election is not None:
                # Judge nothing before knowing whether to send: a restored alert resolved while this watcher
                # did not yet know it leads would be a resolve never sent.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(election.decided.wait(), self.w.lease_duration_s)
            self.scheduler = Scheduler(self.config, self.book, self.live, self._say, time.time())
            self.store.subscribe(self._changed)
            log.info(
                "watching %s: %d open alert(s) remembered",
                self.config.cluster.name,
                len(self.engine.firing()),
            )
            await self._loop(stop)
        finally:
            self.store.unsubscribe(self._changed)
            await self._let_couriers_finish()
            if self.scheduler is not None:
                await self.scheduler.stop()
            if self.leader and self.live.kube_api is not None:
                await self.slo.flush(self.live.kube_api)
            if election is not None:
                await election.stop()
            await self.live.stop()
            await runner.cleanup()
            self.book.close()

    async def _serve(self) -> Any:
        from aiohttp import web

        runner = web.AppRunner(self.metrics.app(self.unhealthy), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, *self.listen, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:  # the address taken, or not this machine's
            await runner.cleanup()
            host, port = self.listen
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        server: Any = site._server
        self.bound = server.sockets[0].getsockname()[:2]
        log.info("metrics on http://%s:%d/metrics", *self.bound)
        return runner

    def _elect(self) -> Election | None:
        """The Lease election, or None (this watcher alone sends) without a Kubernetes API or a Lease name."""
        if not self.w.lease_name or self.live.kube_api is None:
            log.info(
                "no election (%s): this watcher sends",
                "no Lease configured" if not self.w.lease_name else "no Kubernetes API",
            )
            self.leader = True
            return None
        election = Election(
            self.live.kube_api,
            self.config.drill.lock_namespace,
            self.w.lease_name,
            self.identity,
            self.w.lease_duration_s,
            self._leads,
            previous=self.book.get("identity"),
        )
        self.book.put("identity", self.identity)
        election.start()
        return election

    def _leads(self, leader: bool) -> None:
        self.leader = leader
        self._wake.set()

    def _changed(self, _: set[str]) -> None:
        self._wake.set()

    def unhealthy(self) -> str | None:
        """Why ``/healthz`` fails (None: healthy): the loop has stopped judging."""
        limit = 3 * self.w.evaluate_s + 60
        last = self.evaluated_at or self.started_at
        if time.time() - last > limit:
            return f"no evaluation for {time.time() - last:.0f} s"
        return None

    # ---- the loop ------------------------------------------------------------------------------------

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            now = time.time()
            self._evaluate(now)
            self._schedule(now)
            if self.leader and self.live.kube_api is not None:
                self.slo.sync(self.live.kube_api, now)
            self._dispatch(now)
            scheduled = self.scheduler.next_due() if self.scheduler and self.leader else None
            due = min(
                x
                for x in (now + self.w.evaluate_s, self.engine.next_due(now), self._retry_due(), scheduled)
                if x is not None
            )
            waiting = asyncio.ensure_future(self._wake.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                {waiting, stopping}, timeout=max(0.05, due - time.time()), return_when=asyncio.FIRST_COMPLETED
            )
            for f in (waiting, stopping):
                f.cancel()
            # A burst of changes (a rollout, a node failure) is judged once: the store already coalesces
            # per loop tick; this gives the burst's stragglers a moment to join.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.2)

    def _schedule(self, now: float) -> None:
        """As the Lease's holder: start a scheduled action that is due (it runs beside this loop)."""
        if self.scheduler is None or not self.leader:
            return
        before = self.scheduler.running
        self.scheduler.poll(now)
        started = self.scheduler.running
        if started is not None and started is not before:
            started.add_done_callback(lambda _: self._wake.set())

    def _say(self, action: str, title: str, body: str, passed: bool) -> None:
        """Queue a message that is no alert (a scheduled run's verdict) for every target."""
        for target in self.notifier.targets:
            self.book.queue(
                time.time(), target, "scheduled", action, "info" if passed else "warning", title, body
            )
        self.pending_messages = len(self.book.unsent())
        self._wake.set()

    def _retry_due(self) -> float | None:
        backing_off = [at for target, at in self._retry_at.items() if at > time.time()]
        return min(backing_off) if backing_off and self.pending_messages else None

    def _evaluate(self, now: float) -> None:
        snap = self.builder.build(self.store.view())
        self.snapshot = snap
        self._observe_probes(snap)
        scheduled = tuple(self.scheduler.findings.values()) if self.scheduler else ()
        transitions = self.engine.evaluate((*snap.findings, *scheduled), now)
        queued = []
        if self.leader and transitions:
            first, title, body = render_group(
                transitions, self.config.cluster.name, self.w.console_command, self.config_path
            )
            queued = [(first, target, title, body) for target in self.notifier.targets]
        for t in transitions:
            log.info(
                "%s %s %s: %s%s",
                t.kind.upper(),
                t.alert.code,
                t.alert.subject,
                t.alert.message,
                "" if self.leader else " (standby: not sent)",
            )
        self.book.record(self.engine.alerts.values(), queued)
        self.evaluated_at = now

    def _dispatch(self, now: float) -> None:
        """A courier per target with messages waiting (and not backing off after a failure): delivery
        runs beside the loop, so a slow target (apprise waits 5.5 s between two mails) delays neither
        the judging nor the other targets."""
        unsent = self.book.unsent()
        self.pending_messages = len(unsent)
        for target in {m.target for m in unsent}:
            busy = self._couriers.get(target)
            if (busy is None or busy.done()) and self._retry_at.get(target, 0.0) <= now:
                task = asyncio.ensure_future(self._courier(target))
                task.add_done_callback(lambda _: self._wake.set())
                self._couriers[target] = task

    async def _courier(self, target: str) -> None:
        for m in self.book.unsent(target):
            why = await self.notifier.deliver(m.target, m.title, m.body, m.kind, m.severity)
            self.metrics.notifications.labels(m.target, m.kind, "sent" if why is None else "failed").inc()
            if why is not None:
                self.book.failed(m.id, why)
                self._retry_at[target] = time.time() + self.w.retry_s
                log.warning("notification %s %s %s not delivered: %s", m.kind, m.code, m.subject, why)
                return
            self.book.sent(m.id)

    async def _let_couriers_finish(self) -> None:
        """At stop: what is being delivered gets COURIER_GRACE_S; the rest stays in the outbox for the
        next start (never lost)."""
        running = [t for t in self._couriers.values() if not t.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=COURIER_GRACE_S)
            for t in late:
                t.cancel()

    def _observe_probes(self, snap: Snapshot) -> None:
        status = next((s for s in snap.sources if s.name == "http"), None)
        if status is None or status.updated_at is None or status.updated_at == self._probes_seen:
            return
        self._probes_seen = status.updated_at
        if self.leader:
            self.slo.observe(snap.probes, status.updated_at)
        for p in snap.probes:
            if p.ok and p.latency_ms is not None:
                self.metrics.probe_latency.labels(p.name).observe(p.latency_ms / 1000)
            elif not p.ok:
                self.metrics.probe_failures.labels(p.name).inc()
