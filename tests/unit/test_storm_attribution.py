"""The storm's judge (lab/storm.py): the header lines of the webhook's messages read back with their
"since", each given to the fault that caused it; a RESOLVED line follows its FIRING."""

from __future__ import annotations

import json
from pathlib import Path

from lab.storm import Said, StormFault, attribute, said


def test_alerts_go_to_the_latest_fault_before_them_and_resolves_follow_their_firing() -> None:
    faults = [StormFault("hetzner-429", "", 100, 130), StormFault("power", "k3s-w1", 140, 160)]
    lines = [
        Said("FIRING", "source-unavailable", "hetzner", 120),
        Said("FIRING", "node-not-ready", "k3s-w1", 150),  # also within the first's recovery: the later wins
        Said("RESOLVED", "source-unavailable", "hetzner", 128),  # its "since" is the firing's
        Said("RESOLVED", "node-not-ready", "k3s-w1", 158),
        Said("FIRING", "weak-db-credentials", "docfast-db-credentials", 10),  # before any fault
        Said("RESOLVED", "db-primary-restarted", "main-db-1", 300),  # fired before the storm: not its
    ]
    owned, unexplained = attribute(faults, lines, recovery=30)
    assert [(s.kind, s.code) for s in owned[0].said] == [
        ("FIRING", "source-unavailable"),
        ("RESOLVED", "source-unavailable"),
    ]
    assert [(s.kind, s.code) for s in owned[1].said] == [
        ("FIRING", "node-not-ready"),
        ("RESOLVED", "node-not-ready"),
    ]
    assert [s.code for s in unexplained] == ["weak-db-credentials"]


def test_grouped_and_single_messages_are_read_back(tmp_path: Path) -> None:
    messages = [
        {
            "sink": "webhook",
            "at": 1.0,
            "title": "[FIRING critical] node-not-ready: k3s-w2 (k3s-docfast)",
            "body": "node k3s-w2 is not Ready\nsince 2026-12-03 13:00:00 UTC (8s ago)\n"
            "more: opsconsole --action status",
            "type": "failure",
        },
        {
            "sink": "webhook",
            "at": 2.0,
            "title": "[RESOLVED] node-not-ready: k3s-w2 and 1 more (k3s-docfast)",
            "body": "[RESOLVED] node-not-ready: k3s-w2\nwas: node k3s-w2 is not Ready\n"
            "firing since 2026-12-03 13:00:08 UTC, resolved 2026-12-03 13:01:00 UTC\nopen 1m\n\n"
            "[RESOLVED] lb-target-unhealthy: k3s-w2\nwas: k3s-w2 is unhealthy at k3s-lb\n"
            "firing since 2026-12-03 13:00:20 UTC, resolved 2026-12-03 13:01:00 UTC\nopen 40s",
            "type": "success",
        },
        {
            "sink": "smtp",
            "at": 3.0,
            "title": "[FIRING critical] no-primary: main-db",
            "body": "x",
            "type": "",
        },
    ]
    (tmp_path / "notifications.jsonl").write_text("".join(json.dumps(m) + "\n" for m in messages))
    lines = said(tmp_path)
    assert [(s.kind, s.code, s.subject) for s in lines] == [
        ("FIRING", "node-not-ready", "k3s-w2"),
        ("RESOLVED", "node-not-ready", "k3s-w2"),
        ("RESOLVED", "lb-target-unhealthy", "k3s-w2"),
    ]
    assert lines[1].since - lines[0].since == 8
