"""Alert transitions from findings: pure, clocked by the caller, unit-tested without a lab.

An alert is one finding (code, subject) seen over time.  It is *pending* from the first evaluation that
sees it, *firing* once it has held for its rule's ``for`` (Prometheus's term), and *resolved* once it has
been gone for ``keep_firing_for``; a firing alert is said again every ``repeat`` and when its severity
changes.  Each of those is a :class:`Transition`, returned once: the caller queues it for delivery and
persists the alerts (``watch/book.py``), so no transition is produced twice, even across a restart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from console.model import Finding
from console.watch_config import WatchConfig

Key = tuple[str, str]
Kind = Literal["firing", "changed", "repeat", "resolved"]
_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class Alert:
    code: str
    subject: str
    severity: str
    message: str
    since: float  # first seen (pending from then)
    firing: bool = False
    fired_at: float | None = None
    sent_at: float | None = None  # the last transition said (firing, changed, repeat)
    sent_severity: str | None = None
    cleared_at: float | None = None  # gone since (resolves after keep_firing_for)

    @property
    def key(self) -> Key:
        return self.code, self.subject


@dataclass(frozen=True)
class Transition:
    kind: Kind
    alert: Alert  # a copy, as it was at the transition
    at: float


@dataclass(frozen=True)
class Rule:
    for_s: float
    keep_firing_for_s: float
    repeat_s: float
    enabled: bool


def rule_for(config: WatchConfig, code: str) -> Rule:
    """The section's defaults with the code's own rule laid over them."""
    rule = Rule(config.for_s, config.keep_firing_for_s, config.repeat_s, True)
    for r in config.rules:
        if r.code == code:
            rule = Rule(
                r.for_s if r.for_s is not None else rule.for_s,
                r.keep_firing_for_s if r.keep_firing_for_s is not None else rule.keep_firing_for_s,
                r.repeat_s if r.repeat_s is not None else rule.repeat_s,
                r.enabled,
            )
    return rule


class AlertEngine:
    def __init__(self, config: WatchConfig, alerts: Iterable[Alert] = ()) -> None:
        self.config = config
        self.alerts: dict[Key, Alert] = {a.key: a for a in alerts}

    def alerting(self, finding: Finding) -> bool:
        return (
            _RANK[finding.severity.value] >= _RANK[self.config.min_severity]
            and rule_for(self.config, finding.code).enabled
        )

    def evaluate(self, findings: Iterable[Finding], now: float) -> list[Transition]:
        seen = {(f.code, f.subject): f for f in findings if self.alerting(f)}
        out: list[Transition] = []
        for key, finding in seen.items():
            alert = self.alerts.get(key)
            if alert is None:
                alert = self.alerts[key] = Alert(*key, finding.severity.value, finding.message, now)
            alert.cleared_at = None
            alert.severity, alert.message = finding.severity.value, finding.message
            kind = self._kind(alert, now)
            if kind is not None:
                out.append(self._said(alert, kind, now))
        for key in [k for k in self.alerts if k not in seen]:
            alert = self.alerts[key]
            if not alert.firing:
                del self.alerts[key]  # never alerted: nothing to resolve
                continue
            alert.cleared_at = alert.cleared_at if alert.cleared_at is not None else now
            if now - alert.cleared_at >= rule_for(self.config, alert.code).keep_firing_for_s:
                del self.alerts[key]
                out.append(Transition("resolved", dataclasses.replace(alert), now))
        return out

    def _kind(self, alert: Alert, now: float) -> Kind | None:
        rule = rule_for(self.config, alert.code)
        if not alert.firing:
            if now - alert.since < rule.for_s:
                return None
            alert.firing, alert.fired_at = True, now
            return "firing"
        if alert.severity != alert.sent_severity:
            return "changed"
        if rule.repeat_s and alert.sent_at is not None and now - alert.sent_at >= rule.repeat_s:
            return "repeat"
        return None

    @staticmethod
    def _said(alert: Alert, kind: Kind, now: float) -> Transition:
        alert.sent_at, alert.sent_severity = now, alert.severity
        return Transition(kind, dataclasses.replace(alert), now)

    def next_due(self, now: float) -> float | None:
        """When an evaluation with unchanged findings would next produce a transition (None: never)."""
        dues = []
        for a in self.alerts.values():
            rule = rule_for(self.config, a.code)
            if not a.firing:
                dues.append(a.since + rule.for_s)
            elif a.cleared_at is not None:
                dues.append(a.cleared_at + rule.keep_firing_for_s)
            elif rule.repeat_s and a.sent_at is not None:
                dues.append(a.sent_at + rule.repeat_s)
        return max(now, min(dues)) if dues else None

    def firing(self) -> list[Alert]:
        return sorted((a for a in self.alerts.values() if a.firing), key=lambda a: a.key)
