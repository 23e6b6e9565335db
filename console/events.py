"""What an action tells its audience (the runner screen, the headless printer), as typed events.

One stream serves both ways in: the TUI renders each event, ``--action … --json`` prints it as one JSON
line.  Times are wall-clock UNIX seconds (``at``) so a report lines up with Kubernetes events and the
lab's ground truth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    at: float = field(default_factory=time.time, kw_only=True)

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class StepStarted(Event):
    step: str
    title: str


@dataclass(frozen=True)
class StepFinished(Event):
    step: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Check(Event):
    """A preflight check: ``critical`` ones refuse the action when they fail; others only with --force."""

    name: str
    ok: bool
    critical: bool
    why: str


@dataclass(frozen=True)
class Observation(Event):
    """Something the watches and polls saw change (node NotReady, new primary, target unhealthy …)."""

    subject: str
    what: str


@dataclass(frozen=True)
class ProbeSample(Event):
    """One steady-state probe: ``at`` is when it was sent (what an outage window is measured from)."""

    probe: str
    ok: bool
    latency_ms: float | None
    error: str | None = None


@dataclass(frozen=True)
class Log(Event):
    level: str
    message: str


@dataclass(frozen=True)
class Finished(Event):
    verdict: str  # PASS | FAIL | REFUSED | ABORTED | DONE | PLAN
    exit_code: int
    summary: str
    report: dict[str, Any] = field(default_factory=dict)
    report_path: str | None = None
