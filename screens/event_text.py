"""One line of text per action event, as the drill and runner screens log them (one wording for both)."""

from __future__ import annotations

import time

from console.events import Check, Diff, Event, Log, PlanItem, StepFinished, StepStarted


def line(e: Event) -> str | None:
    """The log line for a step, check, plan or log event; None for events a screen renders its own way
    (probe samples, progress, the verdict)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(e.at))
    if isinstance(e, Check):
        return f"{stamp}  {'✔' if e.ok else '✘'} {e.name}: {e.why}"
    if isinstance(e, StepStarted):
        return f"{stamp}  ▶ {e.title}"
    if isinstance(e, StepFinished):
        return f"{stamp}  {'✔' if e.ok else '✘'} {e.detail}"
    if isinstance(e, PlanItem | Log):
        return f"{stamp}  {e.level}: {e.message}"
    if isinstance(e, Diff):
        return e.message
    return None
