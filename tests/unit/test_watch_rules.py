"""Alert transitions from findings (watch/rules.py), the watcher's journal (watch/book.py), the message
text (watch/notify.py) and the [watch] config: pure, without a lab."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from console.model import (
    BackupRepo,
    Finding,
    LbTarget,
    LoadBalancer,
    Node,
    Severity,
    Snapshot,
    SourceState,
    SourceStatus,
)
from console.watch_config import NotifyTarget, WatchConfig, parse_duration
from watch.book import AlertBook
from watch.metrics import snapshot_metrics
from watch.notify import render
from watch.rules import AlertEngine

DOWN = Finding(Severity.CRITICAL, "node-not-ready", "k3s-w2", "node k3s-w2 is not Ready")


def _engine(**kw: object) -> AlertEngine:
    return AlertEngine(
        WatchConfig.model_validate({"for": "30s", "keep_firing_for": "10s", "repeat": "1h", **kw})
    )


def test_a_finding_fires_after_its_for_and_resolves_after_keep_firing_for() -> None:
    e = _engine()
    assert e.evaluate([DOWN], 0) == []
    assert e.evaluate([DOWN], 29.9) == []
    assert e.next_due(29.9) == 30
    fired = e.evaluate([DOWN], 30)
    assert [t.kind for t in fired] == ["firing"] and fired[0].alert.since == 0
    assert e.evaluate([DOWN], 31) == []  # said once
    assert e.evaluate([], 40) == []  # gone, but not yet for keep_firing_for
    assert e.next_due(40) == 50
    resolved = e.evaluate([], 50)
    assert [t.kind for t in resolved] == ["resolved"] and resolved[0].alert.fired_at == 30
    assert e.alerts == {} and e.evaluate([], 60) == []


def test_a_flicker_shorter_than_for_never_alerts_and_a_short_gap_does_not_resolve() -> None:
    e = _engine()
    e.evaluate([DOWN], 0)
    assert e.evaluate([], 10) == []  # gone before its for: forgotten, nothing to resolve
    assert e.evaluate([DOWN], 20) == [] and e.evaluate([DOWN], 49) == []
    assert [t.kind for t in e.evaluate([DOWN], 50)] == ["firing"]
    assert e.evaluate([], 55) == []
    assert e.evaluate([DOWN], 58) == []  # back within keep_firing_for: the same incident
    assert e.evaluate([DOWN], 61) == []


def test_repeats_while_open_and_says_a_severity_change() -> None:
    e = _engine()
    e.evaluate([DOWN], 0)
    e.evaluate([DOWN], 30)
    assert [t.kind for t in e.evaluate([DOWN], 30 + 3600)] == ["repeat"]
    milder = Finding(Severity.WARNING, DOWN.code, DOWN.subject, "node k3s-w2 is back, cordoned")
    changed = e.evaluate([milder], 3700)
    assert [t.kind for t in changed] == ["changed"] and changed[0].alert.severity == "warning"
    assert e.evaluate([milder], 3701) == []


def test_rules_override_the_defaults_disable_codes_and_info_never_alerts() -> None:
    e = _engine(rules=[{"code": "node-not-ready", "for": "5s"}, {"code": "ha-drift", "enabled": False}])
    drift = Finding(Severity.WARNING, "ha-drift", "coredns", "replicas 1, want 3")
    advice = Finding(Severity.INFO, "no-pdbs", "cluster", "no PodDisruptionBudgets")
    e.evaluate([DOWN, drift, advice], 0)
    assert [(t.kind, t.alert.code) for t in e.evaluate([DOWN, drift, advice], 5)] == [
        ("firing", "node-not-ready")
    ]
    assert e.evaluate([DOWN, drift, advice], 100) == []


def test_the_book_keeps_alerts_and_the_outbox_across_a_restart(tmp_path: Path) -> None:
    e = _engine()
    e.evaluate([DOWN], 0)
    fired = e.evaluate([DOWN], 30)
    book = AlertBook(tmp_path)
    book.record(e.alerts.values(), [(fired[0], "webhook", "t", "b"), (fired[0], "mail", "t", "b")])
    first = book.unsent()
    book.sent(first[0].id)
    book.failed(first[1].id, "mail: apprise could not deliver")
    book.close()
    again = AlertBook(tmp_path)  # the restarted watcher
    e2 = AlertEngine(e.config, again.alerts())
    assert [m.target for m in again.unsent()] == ["mail"] and again.unsent()[0].attempts == 1
    assert e2.evaluate([DOWN], 31) == []  # remembered as sent: no duplicate
    assert e2.evaluate([], 45) == []
    assert [t.kind for t in e2.evaluate([], 55)] == ["resolved"]  # and not forgotten


def test_a_message_names_the_finding_its_evidence_since_and_the_command() -> None:
    e = _engine()
    e.evaluate([DOWN], 1796300000)
    (t,) = e.evaluate([DOWN], 1796300030)
    title, body = render(t, "docfast", "opsconsole", Path("/etc/opsconsole/config.toml"))
    assert title == "[FIRING critical] node-not-ready: k3s-w2 (docfast)"
    assert "node k3s-w2 is not Ready" in body and "since 2026-12-03" in body
    assert "opsconsole --config /etc/opsconsole/config.toml --action status" in body
    e.evaluate([], 1796300090)
    (r,) = e.evaluate([], 1796300100)
    title, body = render(r, "docfast", "opsconsole", None)
    assert title.startswith("[RESOLVED] node-not-ready: k3s-w2") and "was: node k3s-w2 is not Ready" in body


def test_config_durations_and_secret_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_duration("90s") == 90 and parse_duration("5m") == 300 and parse_duration(2) == 2
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    with pytest.raises(ValidationError, match="holds a password"):
        NotifyTarget(url="mailtos://ops:hunter2@mail.example.com")
    with pytest.raises(ValidationError, match="exactly one"):
        NotifyTarget(url="json://x", url_env="X")
    (tmp_path / "token").write_text("s3cret\n")
    monkeypatch.setenv("NTFY_TOPIC", "ops-alerts")
    t = NotifyTarget(url=f"json://hook.example/{{file:{tmp_path / 'token'}}}/{{env:NTFY_TOPIC}}")
    assert t.resolve() == "json://hook.example/s3cret/ops-alerts" and t.label == "json"
    with pytest.raises(ValidationError, match="HOST:PORT"):
        WatchConfig(listen="9469")
    with pytest.raises(ValidationError, match="more than one target is called json"):
        WatchConfig.model_validate({"notify": [{"url": "json://a/x"}, {"url": "json://b/y"}]})
    named = WatchConfig.model_validate(
        {"notify": [{"url": "json://a/x"}, {"name": "b", "url": "json://b/y"}]}
    )
    assert [t.label for t in named.notify] == ["json", "b"]


def test_metrics_parse_with_prometheus_clients_own_parser() -> None:
    snap = Snapshot(
        "docfast",
        "admin",
        True,
        0.0,
        nodes=(Node("k3s-w2", False, ("worker",), (), "v1.34.4+k3s1", "10.0.1.3", "", False, 4),),
        load_balancer=LoadBalancer(
            "k3s-lb", "203.0.113.1", (LbTarget(2, "k3s-w2", ((80, "unhealthy"),)),), 15, 10, 3, 3500, 3600
        ),
        backups=(
            BackupRepo("k3s-db", "db", "hourly", 2, 10, "a", None, 0.5, False, True, "", verified_at=100.0),
        ),
        findings=(DOWN,),
        sources=(SourceStatus("hetzner", SourceState.OK, 90.0),),
    )
    text = "".join(m for m in _exposition(snap))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["opsconsole_node_ready"].samples[0].value == 0
    assert families["opsconsole_lb_target_healthy"].samples[0].labels == {"target": "k3s-w2", "port": "80"}
    assert families["opsconsole_restore_verified_age_seconds"].samples[0].value == 200.0
    assert families["opsconsole_backup_newest_age_seconds"].samples[0].value == 1800.0
    assert families["opsconsole_finding"].samples[0].labels["code"] == "node-not-ready"
    assert families["opsconsole_hetzner_ratelimit_remaining"].samples[0].value == 3500


def _exposition(snap: Snapshot) -> list[str]:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.registry import Collector

    class One(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return snapshot_metrics(snap, 300.0)

    registry = CollectorRegistry()
    registry.register(One())
    return [generate_latest(registry).decode()]


def test_one_evaluations_transitions_are_one_message_worst_first() -> None:
    from watch.notify import render_group

    e = _engine()
    lag = Finding(Severity.WARNING, "replica-lag", "main-db-2", "48.0 MiB behind the primary")
    e.evaluate([lag, DOWN], 0)
    first, title, body = render_group(e.evaluate([lag, DOWN], 30), "docfast", "opsconsole", None)
    assert first.alert.code == "node-not-ready"  # critical before warning
    assert title == "[FIRING critical] node-not-ready: k3s-w2 and 1 more (docfast)"
    headers = [line for line in body.splitlines() if line.startswith("[")]
    assert headers == ["[FIRING critical] node-not-ready: k3s-w2", "[FIRING warning] replica-lag: main-db-2"]
