"""``--action`` mode's printer: stdout is data (human text or JSON lines), stderr diagnostics.

With ``--json`` every event is one line ``{"kind": <event class>, <its fields>}``, the Finished last; the
exit code is the Finished's.  An action whose output is its report (``status``) prints that alone: one
JSON document, or its text.  Reports render through :func:`console.report.render` — the same function the
runner screen uses.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from console.events import (
    Check,
    Diff,
    Event,
    Finished,
    Log,
    Observation,
    Output,
    PlanItem,
    ProbeSample,
    Progress,
    StepFinished,
    StepStarted,
)
from console.report import render, to_document


def event_document(event: Event) -> dict[str, Any]:
    return {"kind": event.kind, **to_document(event)}


class EventPrinter:
    """Prints an action's events: JSON lines (``--json``: every event, the report last) or human text.

    Human text shows probe samples only when a probe changes state (DOWN at …, UP after …), so a drill's
    600 samples read as a handful of lines; progress lines are left to the screen.
    """

    def __init__(
        self, as_json: bool, out: TextIO = sys.stdout, report_only: bool = False, err: TextIO = sys.stderr
    ) -> None:
        self.as_json = as_json
        self.out = out
        self.err = err
        self.report_only = report_only
        self._probe_state: dict[str, tuple[bool, float]] = {}

    def __call__(self, event: Event) -> None:
        if self.as_json and isinstance(event, Finished) and event.exit_code:
            # stdout is data: the one sentence for a person goes to stderr (the text mode prints it anyway)
            self.err.write(f"opsconsole: {event.verdict}: {event.summary}\n")
            self.err.flush()
        if self.report_only:
            if isinstance(event, Finished):
                self._write(self._report(event))
            return
        if self.as_json:
            self._write(json.dumps(event_document(event), default=str))
            return
        text = self._human(event)
        if text:
            self._write(text)

    def _write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _report(self, e: Finished) -> str:
        if not e.report:  # refused or failed before there was one: the verdict says why
            return json.dumps(event_document(e), default=str) if self.as_json else f"{e.verdict}: {e.summary}"
        return render(e.report, "json" if self.as_json else "text", full=True)

    def _human(self, e: Event) -> str | None:
        if isinstance(e, Check):
            mark = "ok  " if e.ok else ("FAIL" if e.critical else "warn")
            return f"preflight {mark} {e.name}: {e.why}"
        if isinstance(e, ProbeSample):
            return self._probe(e)
        if isinstance(e, Observation):
            return f"observed  {e.subject}: {e.what}"
        if isinstance(e, StepStarted):
            return f"step      {e.step}: {e.title}"
        if isinstance(e, StepFinished):
            return f"step      {e.step}: {'done' if e.ok else 'FAILED'} — {e.detail}"
        if isinstance(e, PlanItem):
            return f"{e.level:<9} {e.message}"
        if isinstance(e, Diff):
            return e.message
        if isinstance(e, Progress):
            return None
        if isinstance(e, Log):
            return f"{e.level:<9} {e.message}"
        if isinstance(e, Output):
            return e.line
        if isinstance(e, Finished):
            lines = [f"verdict   {e.verdict}: {e.summary}"]
            brief = render(e.report, "text")
            lines += [f"          {line}" for line in brief.splitlines()]
            if e.report_path:
                lines.append(f"report    {e.report_path}")
            return "\n".join(lines)
        return None

    def _probe(self, e: ProbeSample) -> str | None:
        prev = self._probe_state.get(e.probe)
        if prev is not None and prev[0] == e.ok:
            return None
        self._probe_state[e.probe] = (e.ok, e.at)
        if prev is None:
            return None if e.ok else f"probe {e.probe} failing: {e.error}"
        if e.ok:
            return f"probe {e.probe} UP after {e.at - prev[1]:.1f} s"
        return f"probe {e.probe} DOWN: {e.error}"
