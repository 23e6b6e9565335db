"""``/metrics`` (Prometheus text, through ``prometheus_client``) and ``/healthz`` for the watcher.

The gauges are read from the watcher's newest snapshot at scrape time (a collector, not gauges set on
change): a node or a finding that went away simply is not exported any more, with no stale label set to
clean up.  The probe latencies are a histogram, observed once per probe round.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from console.model import Snapshot
from console.slo_ledger import MonthSpend

if TYPE_CHECKING:
    from watch.service import Watcher

P = "opsconsole_"


def _ts(stamp: str | None) -> float | None:
    """An RFC 3339 time as Unix seconds (None when absent or unreadable)."""
    if not stamp:
        return None
    try:
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, doc, labels=labels)


def snapshot_metrics(snap: Snapshot, now: float) -> Iterator[Metric]:
    """The cluster as gauges: what the dashboard shows, in the form a Prometheus rule reads."""
    finding = _gauge("finding", "An open finding (1 while it holds)", ["code", "subject", "severity"])
    for f in snap.findings:
        finding.add_metric([f.code, f.subject, f.severity.value], 1)
    node = _gauge("node_ready", "Node Ready condition (1 Ready, 0 not, absent when unknown)", ["node"])
    for n in snap.nodes:
        if n.ready is not None:
            node.add_metric([n.name], 1 if n.ready else 0)
    target = _gauge(
        "lb_target_healthy", "Load-balancer target health per port (1 healthy)", ["target", "port"]
    )
    budget = _gauge("hetzner_ratelimit_remaining", "Hetzner API requests left in the hour", [])
    if snap.load_balancer is not None:
        for t in snap.load_balancer.targets:
            for port, status in t.health:
                target.add_metric([t.name, str(port)], 1 if status == "healthy" else 0)
        if snap.load_balancer.budget_remaining is not None:
            budget.add_metric([], snap.load_balancer.budget_remaining)
    yield from (finding, node, target, budget)
    yield from _database_metrics(snap)
    yield from _backup_metrics(snap, now)
    days = _gauge("certificate_days_left", "Days until the certificate expires", ["namespace", "name"])
    for c in snap.certificates:
        if c.days_left is not None:
            days.add_metric([c.namespace, c.name], c.days_left)
    fresh = _gauge("source_age_seconds", "Seconds since the source last answered", ["source"])
    up = _gauge("source_up", "The source answers (1) or not (0)", ["source", "state"])
    for s in snap.sources:
        up.add_metric([s.name, s.state.value], 1 if s.state.value == "ok" else 0)
        if s.updated_at is not None:
            fresh.add_metric([s.name], max(0.0, now - s.updated_at))
    yield from (days, fresh, up)


def _database_metrics(snap: Snapshot) -> Iterator[Metric]:
    lag_b = _gauge("replication_lag_bytes", "Replica replay lag behind the primary, bytes", ["instance"])
    lag_s = _gauge("replication_lag_seconds", "Replica replay lag, seconds (0 when idle)", ["instance"])
    streaming = _gauge("replica_streaming", "The replica streams from the primary (1)", ["instance"])
    placed = _gauge(
        "db_instance_node", "The node each database instance runs on (1)", ["instance", "role", "node"]
    )
    db = snap.database
    for m in db.members if db else ():
        if m.node:
            placed.add_metric([m.name, m.role, m.node], 1)
    yield placed
    for r in db.replication if db else ():
        if r.role != "replica":
            continue
        streaming.add_metric([r.instance], 1 if r.state == "streaming" else 0)
        if r.lag_bytes is not None:
            lag_b.add_metric([r.instance], r.lag_bytes)
        lag_s.add_metric([r.instance], r.lag_seconds or 0.0)
    yield from (lag_b, lag_s, streaming)


def _backup_metrics(snap: Snapshot, now: float) -> Iterator[Metric]:
    newest = _gauge("backup_newest_age_seconds", "Age of the newest archive", ["repository"])
    verified = _gauge(
        "restore_verified_age_seconds",
        "Age of the last verify-restore that succeeded: a backup is proven only by a restore",
        ["repository"],
    )
    for b in snap.backups:
        if b.age_hours is not None:
            newest.add_metric([b.name], b.age_hours * 3600)
        if b.verified_at is not None:
            verified.add_metric([b.name], max(0.0, now - b.verified_at))
    yield from (newest, verified)


def cnpg_backup_metrics(backups: list[dict[str, Any]]) -> Iterator[Metric]:
    """The newest completed and the newest failed CNPG Backup, as CNPG's own exporter names them
    (``last_available`` / ``last_failed``): a failure newer than the last success is the alert."""
    newest: dict[str, float] = {}
    for b in backups:
        st = b.get("status") or {}
        phase = str(st.get("phase") or "")
        at = _ts(st.get("stoppedAt") or st.get("startedAt"))
        if phase in ("completed", "failed") and at is not None:
            newest[phase] = max(newest.get(phase, 0.0), at)
    for phase, name in (("completed", "available"), ("failed", "failed")):
        g = _gauge(
            f"cnpg_last_{name}_backup_timestamp_seconds", f"When the newest {phase} CNPG Backup ended", []
        )
        if phase in newest:
            g.add_metric([], newest[phase])
        yield g


class WatcherCollector(Collector):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def collect(self) -> Iterator[Metric]:
        w = self.watcher
        now = time.time()
        if w.snapshot is not None:
            yield from snapshot_metrics(w.snapshot, now)
        yield from cnpg_backup_metrics(w.store.items("backups"))
        firing = _gauge(
            "alert_firing",
            "An alert the watcher has sent and not yet resolved",
            ["code", "subject", "severity"],
        )
        for a in w.engine.firing():
            firing.add_metric([a.code, a.subject, a.severity], 1)
        leader = _gauge("watch_leader", "This watcher holds the Lease and sends (1)", [])
        leader.add_metric([], 1 if w.leader else 0)
        evaluated = _gauge("watch_last_evaluation_age_seconds", "Seconds since findings were last judged", [])
        if w.evaluated_at is not None:
            evaluated.add_metric([], max(0.0, now - w.evaluated_at))
        outbox = _gauge("notifications_pending", "Messages queued and not yet delivered", [])
        outbox.add_metric([], w.pending_messages)
        yield from (firing, leader, evaluated, outbox)
        yield from slo_metrics(w.slo.spend)


def slo_metrics(spend: MonthSpend | None) -> Iterator[Metric]:
    outage = _gauge(
        "slo_outage_seconds", "Outage seconds this calendar month, by source", ["month", "source"]
    )
    remaining = _gauge("slo_budget_remaining_seconds", "Production outage seconds left this month", ["month"])
    if spend is not None:
        for source, seconds in sorted(spend.seconds.items()):
            outage.add_metric([spend.month, source], seconds)
        remaining.add_metric([spend.month], spend.remaining_s)
    yield from (outage, remaining)


class Metrics:
    """The registry: the collector plus the counters and the histogram the watcher feeds as it goes."""

    def __init__(self, watcher: Watcher) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(WatcherCollector(watcher))
        self.notifications = Counter(
            P + "notifications",
            "Notifications by target, transition kind and result",
            ["target", "kind", "result"],
            registry=self.registry,
        )
        self.probe_latency = Histogram(
            P + "probe_latency_seconds",
            "HTTP probe latency through the load balancer",
            ["probe"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.probe_failures = Counter(
            P + "probe_failures", "Probes that failed", ["probe"], registry=self.registry
        )

    def app(self, healthy: Any) -> Any:
        """The aiohttp application: ``/metrics`` and ``/healthz`` (200 while ``healthy()`` is None, else
        503 with its sentence)."""
        from aiohttp import web
        from prometheus_client.aiohttp import make_aiohttp_handler

        async def healthz(_: web.Request) -> web.Response:
            why = healthy()
            return web.Response(status=503 if why else 200, text=(why or "ok") + "\n")

        app = web.Application()
        app.router.add_get("/metrics", make_aiohttp_handler(self.registry))
        app.router.add_get("/healthz", healthz)
        return app
