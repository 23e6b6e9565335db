"""What an action tells its audience (the runner screen, the drill screen, the headless printer), as typed
events.

One stream serves every way in: the TUI renders each event, ``--action … --json`` prints it as one JSON
line (``{"kind": <class name>, <fields>}``).  Times are wall-clock UNIX seconds (``at``) so a report lines
up with Kubernetes events and the lab's ground truth.  JSON field names are an interface: add fields,
rename none.  :class:`Progress`, :class:`PlanItem` and :class:`Diff` were ``Log`` lines (levels
``progress``, a plan word, ``diff``) before they were typed; they keep ``level`` and ``message``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from console.errors import ExitCode, Verdict


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
    level: str  # info | warning | error, or a word of the action's own (a repository's name)
    message: str


@dataclass(frozen=True)
class Output(Event):
    """A line of what the action reads, as it is (a pod's log): printed bare, not as a message."""

    source: str
    line: str


@dataclass(frozen=True)
class Progress(Event):
    """How far a long step is (Borg's upload, a drain): the runner screen's one progress line."""

    step: str
    message: str
    fraction: float | None = None  # 0..1 when the whole is known
    bytes: int | None = None
    items: int | None = None
    level: str = "progress"


@dataclass(frozen=True)
class PlanItem(Event):
    """One thing the action will do (or keep), shown before the confirmation.  ``op``: create, keep,
    change, delete, or ``step`` for a step of a procedure."""

    op: str
    message: str
    subject: str = ""
    detail: str = ""
    level: str = ""  # the op, as the Log line it used to be

    def __post_init__(self) -> None:
        if not self.level:
            object.__setattr__(self, "level", self.op if self.op != "step" else "plan")


@dataclass(frozen=True)
class Diff(Event):
    """A unified diff of what the action would write to ``subject`` (``-`` now, ``+`` after)."""

    subject: str
    message: str  # the diff text
    level: str = "diff"


@dataclass(frozen=True)
class Finished(Event):
    """The one last event of every action: the verdict fixes the exit code (console/errors.py)."""

    verdict: Verdict
    summary: str
    report: Any = field(default_factory=dict)  # a typed report (console/report.py) or a plain dict
    report_path: str | None = None
    exit_code: ExitCode = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))
        object.__setattr__(self, "exit_code", self.verdict.exit_code)
