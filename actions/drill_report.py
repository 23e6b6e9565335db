"""A drill's verdict and report: measured windows, probe counts, SLO verdicts, state before and after.

Saved as JSON and Markdown in ``$XDG_STATE_HOME/opsconsole/reports`` (the TUI lists them; the dashboard
shows the newest one's summary).  Windows are measured from the probes' send times, so their resolution
is the probe interval (0.5 s).  Nothing secret enters: probes record outcomes, never credentials.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.outages import longest, outages
from console.paths import state_home
from console.report import Block, Report, Section, Table, render

if TYPE_CHECKING:  # the dashboard reads the newest report before its config is validated: no pydantic here
    from actions.drill import Drill
    from console.config import Config
    from console.model import Snapshot

PROBES = ("http-prod", "http-staging", "db-write")


def reports_dir() -> Path:
    return state_home() / "reports"


def state_summary(snap: Snapshot, config: Config) -> dict[str, Any]:
    db = snap.database
    return {
        "nodes": {
            n.name: ("Ready" if n.ready else "NotReady") + (" cordoned" if n.unschedulable else "")
            for n in snap.nodes
        },
        "primary": db.primary if db else None,
        "primary_node": next((m.node for m in db.members if m.name == db.primary), None) if db else None,
        "database": f"{db.phase}, {db.ready_instances}/{db.instances} ready" if db else None,
        "targets": {
            f"{t.name}:{port}": state
            for t in (snap.load_balancer.targets if snap.load_balancer else ())
            for port, state in t.health
        },
        "pods_per_node": {
            f"{w.namespace}/{w.name}": list(w.nodes)
            for w in snap.workloads
            if w.namespace in (config.namespaces.prod, config.namespaces.staging, config.database.namespace)
        },
    }


def _slo(name: str, measured: float | None, bound: float, unit: str = "s") -> dict[str, Any]:
    if measured is None:
        return {"slo": name, "measured": None, "bound": bound, "verdict": "n/a"}
    return {
        "slo": name,
        "measured": round(measured, 2),
        "bound": bound,
        "unit": unit,
        "verdict": "PASS" if measured <= bound else "FAIL",
    }


@dataclass(frozen=True)
class DrillReport(Report):
    """A drill's report: the JSON saved beside its Markdown, and ``Finished.report`` of ``--action drill``."""

    kind_: str = field(metadata={"json": "kind"})
    id: str | None
    scenario: str
    target: str | None
    mode: str | None
    started: float
    fault_at: float | None
    finished: float
    verdict: str
    summary: str
    plan: dict[str, Any]
    preflight: list[dict[str, Any]]
    forced: list[str]
    slos: list[dict[str, Any]]
    time_to_recovery_s: float | None
    probes: dict[str, dict[str, int]]
    outages: dict[str, list[dict[str, float]]]
    probe_interval_s: float
    timeline: list[dict[str, Any]]
    before: dict[str, Any]
    after: dict[str, Any]
    samples: list[dict[str, Any]]

    def with_verdict(self, verdict: str) -> DrillReport:
        return dataclasses.replace(self, verdict=verdict)

    def headline(self) -> str:
        return f"Drill {self.scenario} on {self.target}: {self.verdict}"

    def sections(self, full: bool) -> list[Section]:
        slos = Table("SLOs", ("SLO", "measured", "bound", "verdict"), [_slo_row(s) for s in self.slos])
        if not full:
            return [slos]
        probes = Table(
            "Probes",
            ("probe", "ok", "failed", "outages (s after the fault)"),
            [
                (
                    p,
                    str(c["ok"]),
                    str(c["failed"]),
                    ", ".join(f"{w['start']}–{w['end']} ({w['seconds']} s)" for w in self.outages[p])
                    or "none",
                )
                for p, c in self.probes.items()
            ],
        )
        timeline = "\n".join(f"- {e['t']:+.1f} s — {e['subject']}: {e['what']}" for e in self.timeline)
        checks = "\n".join(f"- {'✔' if c['ok'] else '✘'} {c['name']}: {c['why']}" for c in self.preflight)
        state = json.dumps({"before": self.before, "after": self.after}, indent=2)
        return [
            Block("", self.summary),
            Block("", f"Blast radius: {self.plan.get('blast_radius', '')}"),
            slos,
            probes,
            Block("Timeline (seconds after the fault)", timeline),
            Block("Preflight", checks),
            Block("State before and after", state, code="json"),
        ]


def _slo_row(s: dict[str, Any]) -> tuple[str, ...]:
    unit = s.get("unit", "s")
    measured = "—" if s["measured"] is None else f"{s['measured']} {unit}"
    return (s["slo"], measured, f"{s['bound']} {unit}", s["verdict"])


def build_report(drill: Drill, t0: float, verdict_hint: str) -> DrillReport:
    cfg = drill.config
    slo = cfg.slo
    fault = drill.marks.get("fault")
    samples = drill.samples
    scenario = drill.scenario
    assert scenario is not None
    primary_expected = (
        scenario.moves_primary
        or drill.before.get("primary_node") == drill.target
        or "new_primary" in drill.marks
    )
    to_primary = drill.marks["new_primary"] - fault if fault and "new_primary" in drill.marks else None
    slos = [
        _slo("longest HTTP outage (prod)", longest(samples, "http-prod"), slo.max_http_outage_s),
        _slo("longest database write outage", longest(samples, "db-write"), slo.max_db_write_outage_s),
    ]
    if primary_expected:
        slos.append(
            _slo("time to a new primary", to_primary, slo.max_time_to_new_primary_s)
            if to_primary is not None
            else _missed("time to a new primary", slo.max_time_to_new_primary_s)
        )
    steady_at = drill.marks.get("steady")
    slos.append(
        _slo("recovered to steady state", (steady_at - fault) / 60, slo.recovered_within_min, "min")
        if fault and steady_at
        else _missed("recovered to steady state", slo.recovered_within_min)
    )
    passed = all(s["verdict"] in ("PASS", "n/a") for s in slos)
    recovered_at = drill.marks.get("recovered")
    counts = {
        p: {
            "ok": sum(1 for s in samples if s.probe == p and s.ok),
            "failed": sum(1 for s in samples if s.probe == p and not s.ok),
        }
        for p in PROBES
    }
    origin = fault or t0
    windows = {
        p: [
            {"start": round(a - origin, 2), "end": round(b - origin, 2), "seconds": round(b - a, 2)}
            for a, b in outages(samples, p)
        ]
        for p in PROBES
    }
    http = longest(samples, "http-prod")
    dbw = longest(samples, "db-write")
    summary = (
        f"{scenario.name} {drill.target}: {'PASS' if passed else 'FAIL'} — HTTP outage {http:.1f} s, "
        f"database write outage {dbw:.1f} s"
        + (f", new primary after {to_primary:.1f} s" if to_primary is not None else "")
    )
    verdict = "ABORTED" if verdict_hint == "ABORTED" else "PASS" if passed else "FAIL"
    return DrillReport(
        kind_="drill",
        id=drill.action_id,
        scenario=scenario.name,
        target=drill.target,
        mode=drill.plan_info.get("mode"),
        started=t0,
        fault_at=fault,
        finished=time.time(),
        verdict=verdict,
        summary=summary,
        plan=drill.plan_info,
        preflight=[{"name": c.name, "ok": c.ok, "critical": c.critical, "why": c.why} for c in drill.checks],
        forced=drill.forced,
        slos=slos,
        time_to_recovery_s=round(recovered_at - fault, 2) if fault and recovered_at else None,
        probes=counts,
        outages=windows,
        probe_interval_s=cfg.drill.probe_interval_s,
        timeline=[{**e, "t": round(e["at"] - origin, 2)} for e in drill.timeline.entries],
        before=drill.before,
        after=state_summary(drill.snapshot(), cfg),
        samples=[{"at": round(s.at, 3), "probe": s.probe, "ok": s.ok} for s in samples],
    )


def _missed(name: str, bound: float) -> dict[str, Any]:
    """An SLO whose moment never came (no new primary, never steady): failed, not "n/a"."""
    return {"slo": name, "measured": None, "bound": bound, "verdict": "FAIL"}


def markdown(report: DrillReport) -> str:
    return render(report, "markdown")


def save_report(report: DrillReport) -> Path:
    """The report as JSON (for scripts) and Markdown (for people), both from :func:`console.report.render`."""
    d = reports_dir()
    d.mkdir(parents=True, exist_ok=True)
    when = time.strftime("%Y%m%dT%H%M%S", time.localtime(report.started))
    stem = f"drill-{when}-{report.scenario}-{report.target}"
    path = d / f"{stem}.json"
    path.write_text(render(report, "json"))
    (d / f"{stem}.md").write_text(render(report, "markdown"))
    return path


def latest_report() -> dict[str, Any] | None:
    """The newest drill report (the dashboard's "last drill" line), or None."""
    d = reports_dir()
    files = sorted(d.glob("drill-*.json"), key=lambda p: p.stat().st_mtime) if d.exists() else []
    for path in reversed(files):
        try:
            doc: dict[str, Any] = json.loads(path.read_text())
            doc["path"] = str(path)
            return doc
        except (OSError, ValueError):
            continue
    return None
