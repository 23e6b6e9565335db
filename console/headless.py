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
