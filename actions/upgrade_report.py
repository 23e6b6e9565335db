"""An upgrade's report: per node the versions and the time of each step, the HA items K3s reset and
their restoration, the probes' outage windows and the verdict against ``[slo]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from console.config import Config
from console.events import ProbeSample
from console.outages import longest, outages
from console.report import Block, Report, Section, Table

PROBES = ("http-prod", "http-staging", "db-write")
STEPS = ("drain", "install", "ready", "back")


@dataclass
class NodeStep:
    """One node's upgrade as it went: ``state`` is pending, upgrading, done, failed, rolled-back or
    unchanged (already at the target); ``timings`` in seconds per step (drain, install, ready, back)."""

    node: str
    role: str
    before: str
    target: str
    state: str = "pending"
    after: str | None = None
    evicted: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class UpgradeReport(Report):
    kind_: str = field(metadata={"json": "kind"})
    id: str | None
    route: str
    target: str
    verdict: str
    summary: str
    started: float
    finished: float
    stopped_at: str | None
    nodes: list[NodeStep]
    backup: str | None
    ha_lost: list[dict[str, Any]]
    ha_restored: list[str]
    ha_holds: bool | None
    slos: list[dict[str, Any]]
    probes: dict[str, dict[str, int]]
    outages: dict[str, list[dict[str, float]]]

    def headline(self) -> str:
        return f"K3s upgrade to {self.target} ({self.route}): {self.verdict}"

    def sections(self, full: bool) -> list[Section]:
        rows = [
            (
                n.node,
                n.role,
                n.before,
                n.after or "—",
                n.state,
                *(f"{n.timings[s]:.1f}" if s in n.timings else "—" for s in STEPS),
                f"{sum(n.timings.values()):.1f}" if n.timings else "—",
            )
            for n in self.nodes
        ]
        nodes = Table(
            "Nodes (seconds per step)",
            ("node", "role", "from", "now", "state", *STEPS, "total"),
            rows,
        )
        slos = Table(
            "SLOs",
            ("SLO", "measured", "bound", "verdict"),
            [(s["slo"], f"{s['measured']} s", f"{s['bound']} s", s["verdict"]) for s in self.slos],
        )
        lost = "\n".join(f"- {h['name']} ({h['subject']}): {'; '.join(h['drift'])}" for h in self.ha_lost)
        ha = Block(
            "HA patches after the server's restart",
            (lost or "- nothing was lost")
            + (f"\nRestored: {', '.join(self.ha_restored)}" if self.ha_restored else "")
            + ("" if self.ha_holds is None else f"\nHold at the end: {'yes' if self.ha_holds else 'NO'}"),
        )
        out: list[Section] = [nodes, ha, slos]
        if self.stopped_at:
            out.insert(0, Block("", f"Stopped at {self.stopped_at}"))
        if full:
            windows = Table(
                "Probes",
                ("probe", "ok", "failed", "outages (s after the start)"),
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
            out += [windows, Block("", f"Backup first: {self.backup or 'skipped (--force)'}")]
        return out


def slo_rows(config: Config, samples: list[ProbeSample]) -> list[dict[str, Any]]:
    out = []
    for name, probe, bound in (
        ("longest HTTP outage (prod)", "http-prod", config.slo.max_http_outage_s),
        ("longest HTTP outage (staging)", "http-staging", config.slo.max_http_outage_s),
        ("longest database write outage", "db-write", config.slo.max_db_write_outage_s),
    ):
        measured = round(longest(samples, probe), 2)
        out.append(
            {
                "slo": name,
                "measured": measured,
                "bound": bound,
                "verdict": "PASS" if measured <= bound else "FAIL",
            }
        )
    return out


def probe_counts(samples: list[ProbeSample], origin: float) -> tuple[dict[str, Any], dict[str, Any]]:
    counts = {
        p: {
            "ok": sum(1 for s in samples if s.probe == p and s.ok),
            "failed": sum(1 for s in samples if s.probe == p and not s.ok),
        }
        for p in PROBES
    }
    windows = {
        p: [
            {"start": round(a - origin, 2), "end": round(b - origin, 2), "seconds": round(b - a, 2)}
            for a, b in outages(samples, p)
        ]
        for p in PROBES
    }
    return counts, windows
