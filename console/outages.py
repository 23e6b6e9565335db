"""Outage windows from probe samples — pure, so a drill report can be read (the dashboard's "last drill"
line, at start-up) without importing the probes' clients (aiohttp, psycopg, asyncssh)."""

from __future__ import annotations

from console.events import ProbeSample


def outages(samples: list[ProbeSample], name: str) -> list[tuple[float, float]]:
    """(start, end) of each run of failures of probe ``name``; an unfinished run ends at its last sample."""
    windows: list[tuple[float, float]] = []
    start: float | None = None
    last = 0.0
    for s in sorted((s for s in samples if s.probe == name), key=lambda s: s.at):
        last = s.at
        if not s.ok and start is None:
            start = s.at
        elif s.ok and start is not None:
            windows.append((start, s.at))
            start = None
    if start is not None:
        windows.append((start, last))
    return windows


def longest(samples: list[ProbeSample], name: str) -> float:
    return max((end - start for start, end in outages(samples, name)), default=0.0)
