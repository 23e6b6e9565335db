"""A drill's verdict and report: measured windows, probe counts, SLO verdicts, state before and after.

Saved as JSON and Markdown in ``$XDG_STATE_HOME/opsconsole/reports`` (the TUI lists them; the dashboard
shows the newest one's summary).  Windows are measured from the probes' send times, so their resolution
is the probe interval (0.5 s).  Nothing secret enters: probes record outcomes, never credentials.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.outages import longest, outages
from console.paths import state_home

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


def build_report(drill: Drill, t0: float, verdict_hint: str) -> dict[str, Any]:
    cfg = drill.config
    slo = cfg.slo
    fault = drill.marks.get("fault")
    samples = drill.samples
    primary_expected = (
        drill.scenario.name in ("db-switchover", "db-primary-kill")
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
            else {
                "slo": "time to a new primary",
                "measured": None,
                "bound": slo.max_time_to_new_primary_s,
                "verdict": "FAIL",
            }
        )
    steady_at = drill.marks.get("steady")
    slos.append(
        _slo(
            "recovered to steady state",
            (steady_at - fault) / 60 if fault and steady_at else None,
            slo.recovered_within_min,
            "min",
        )
        if fault and steady_at
        else {
            "slo": "recovered to steady state",
            "measured": None,
            "bound": slo.recovered_within_min,
            "verdict": "FAIL",
        }
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
    windows = {
        p: [
            {
                "start": round(a - (fault or t0), 2),
                "end": round(b - (fault or t0), 2),
                "seconds": round(b - a, 2),
            }
            for a, b in outages(samples, p)
        ]
        for p in PROBES
    }
    after = state_summary(drill.snapshot(), cfg)
    http = longest(samples, "http-prod")
    dbw = longest(samples, "db-write")
    summary = (
        f"{drill.scenario.name} {drill.target}: {'PASS' if passed else 'FAIL'} — HTTP outage {http:.1f} s, "
        f"database write outage {dbw:.1f} s"
        + (f", new primary after {to_primary:.1f} s" if to_primary is not None else "")
    )
    return {
        "id": drill.action_id,
        "kind": "drill",
        "scenario": drill.scenario.name,
        "target": drill.target,
        "mode": drill.plan.get("mode"),
        "started": t0,
        "fault_at": fault,
        "finished": time.time(),
        "verdict": "PASS"
        if passed and verdict_hint != "ABORTED"
        else ("ABORTED" if verdict_hint == "ABORTED" else "FAIL"),
        "summary": summary,
        "plan": drill.plan,
        "preflight": [c.__dict__ for c in drill.checks],
        "forced": drill.forced,
        "slos": slos,
        "time_to_recovery_s": round(recovered_at - fault, 2) if fault and recovered_at else None,
        "probes": counts,
        "outages": windows,
        "probe_interval_s": cfg.drill.probe_interval_s,
        "timeline": [{**e, "t": round(e["at"] - (fault or t0), 2)} for e in drill.timeline.entries],
        "before": drill.before,
        "after": after,
        "samples": [{"at": round(s.at, 3), "probe": s.probe, "ok": s.ok} for s in samples],
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Drill {report['scenario']} on {report['target']}: {report['verdict']}",
        "",
        report["summary"],
        "",
        f"Blast radius: {report['plan'].get('blast_radius', '')}",
        "",
        "## SLOs",
        "",
        "| SLO | measured | bound | verdict |",
        "|-----|----------|-------|---------|",
    ]
    for s in report["slos"]:
        unit = s.get("unit", "s")
        measured = "—" if s["measured"] is None else f"{s['measured']} {unit}"
        lines.append(f"| {s['slo']} | {measured} | {s['bound']} {unit} | {s['verdict']} |")
    lines += [
        "",
        "## Probes",
        "",
        "| probe | ok | failed | outages (s after the fault) |",
        "|---|---|---|---|",
    ]
    for p, c in report["probes"].items():
        windows = (
            ", ".join(f"{w['start']}–{w['end']} ({w['seconds']} s)" for w in report["outages"][p]) or "none"
        )
        lines.append(f"| {p} | {c['ok']} | {c['failed']} | {windows} |")
    lines += ["", "## Timeline (seconds after the fault)", ""]
    lines += [f"- {e['t']:+.1f} s — {e['subject']}: {e['what']}" for e in report["timeline"]]
    lines += ["", "## Preflight", ""]
    lines += [f"- {'✔' if c['ok'] else '✘'} {c['name']}: {c['why']}" for c in report["preflight"]]
    lines += [
        "",
        "## State before and after",
        "",
        "```json",
        json.dumps({"before": report["before"], "after": report["after"]}, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def save_report(report: dict[str, Any]) -> Path:
    d = reports_dir()
    d.mkdir(parents=True, exist_ok=True)
    when = time.strftime("%Y%m%dT%H%M%S", time.localtime(report["started"]))
    stem = f"drill-{when}-{report['scenario']}-{report['target']}"
    path = d / f"{stem}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    (d / f"{stem}.md").write_text(markdown(report))
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
