"""``--action`` mode: stdout is data (human text or JSON), stderr diagnostics, the exit code the verdict."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, TextIO

from console.model import Snapshot


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    return obj


def print_status(snap: Snapshot, as_json: bool, out: TextIO = sys.stdout) -> None:
    if as_json:
        doc = to_jsonable(snap)
        doc["healthy"] = not snap.critical
        json.dump(doc, out, indent=2)
        out.write("\n")
        return
    w = out.write
    w(f"{'LAB' if snap.lab else 'CLUSTER'} {snap.cluster} (context {snap.context})\n")
    w(
        "nodes:     "
        + ", ".join(
            f"{n.name} {'Ready' if n.ready else 'NotReady'}"
            f"{'' if n.hetzner_status in (None, 'running') else ' server ' + n.hetzner_status}"
            for n in snap.nodes
        )
        + "\n"
    )
    if snap.database:
        db = snap.database
        w(
            f"database:  {db.cluster} {db.phase}, primary {db.primary}, timeline {db.timeline}, "
            f"{db.ready_instances}/{db.instances} ready\n"
        )
        for r in db.replication:
            if r.role == "replica":
                lag_s = "" if r.lag_seconds is None else f", {r.lag_seconds:.1f} s"
                w(f"replica:   {r.instance} {r.state}, {r.lag_bytes} bytes behind{lag_s}\n")
            elif r.role == "unreachable":
                w(f"replica:   {r.instance} unreachable: {r.error}\n")
    for b in snap.backups:
        if b.error:
            w(f"backup:    {b.name} unreadable: {b.error}\n")
        else:
            w(
                f"backup:    {b.name} newest {b.latest} ({b.age_hours:.1f} h ago, due every "
                f"{b.max_age_hours:g} h){' OVERDUE' if b.overdue else ''}; {b.retention}\n"
            )
    for rel in snap.releases:
        w(f"release:   {rel.environment} {rel.tag} ({rel.ready}/{rel.desired} {rel.rollout})\n")
    for d in snap.release_diff:
        w(f"release:   staging differs: {d}\n")
    drifted = [h for h in snap.ha if h.holds is False]
    w(f"ha:        {len(snap.ha) - len(drifted)}/{len(snap.ha)} patches hold\n")
    if snap.load_balancer:
        lb = snap.load_balancer
        w(
            f"lb:        {lb.name} "
            + ", ".join(f"{t.name} {'/'.join(s for _, s in t.health)}" for t in lb.targets)
            + (f" (API budget {lb.budget_remaining}/{lb.budget_limit})" if lb.budget_limit else "")
            + "\n"
        )
    for p in snap.probes:
        w(f"probe:     {p.name} {p.url} -> {p.status or p.error}\n")
    for s in snap.sources:
        if s.state.value != "ok":
            w(f"source:    {s.name} {s.state.value}{': ' + s.error if s.error else ''}\n")
    for f in snap.findings:
        w(f"{f.severity.value:<9}  {f.code} {f.subject}: {f.message}\n")
    w("verdict:   " + ("CRITICAL" if snap.critical else "healthy") + "\n")


class EventPrinter:
    """Prints an action's events: JSON lines (``--json``: every event, the report last) or human text.

    Human text shows probe samples only when a probe changes state (DOWN at …, UP after …), so a drill's
    600 samples read as a handful of lines.
    """

    def __init__(self, as_json: bool, out: TextIO = sys.stdout) -> None:
        self.as_json = as_json
        self.out = out
        self._probe_state: dict[str, tuple[bool, float]] = {}

    def __call__(self, event: Any) -> None:
        if self.as_json:
            doc = {"kind": event.kind, **to_jsonable(event)}
            self.out.write(json.dumps(doc, default=str) + "\n")
            self.out.flush()
            return
        text = self._human(event)
        if text:
            self.out.write(text + "\n")
            self.out.flush()

    def _human(self, e: Any) -> str | None:
        kind = e.kind
        if kind == "Check":
            mark = "ok  " if e.ok else ("FAIL" if e.critical else "warn")
            return f"preflight {mark} {e.name}: {e.why}"
        if kind == "ProbeSample":
            prev = self._probe_state.get(e.probe)
            if prev is None or prev[0] != e.ok:
                self._probe_state[e.probe] = (e.ok, e.at)
                if prev is None:
                    return None if e.ok else f"probe {e.probe} failing: {e.error}"
                if e.ok:
                    return f"probe {e.probe} UP after {e.at - prev[1]:.1f} s"
                return f"probe {e.probe} DOWN: {e.error}"
            return None
        if kind == "Observation":
            return f"observed  {e.subject}: {e.what}"
        if kind == "StepStarted":
            return f"step      {e.step}: {e.title}"
        if kind == "StepFinished":
            return f"step      {e.step}: {'done' if e.ok else 'FAILED'} — {e.detail}"
        if kind == "Log":
            return f"{e.level:<9} {e.message}"
        if kind == "Finished":
            lines = [f"verdict   {e.verdict}: {e.summary}"]
            for s in e.report.get("slos", []):
                unit = s.get("unit", "s")
                measured = "—" if s["measured"] is None else f"{s['measured']} {unit}"
                lines.append(
                    f"slo       {s['verdict']:<4} {s['slo']}: {measured} (bound {s['bound']} {unit})"
                )
            if e.report_path:
                lines.append(f"report    {e.report_path}")
            return "\n".join(lines)
        return None
