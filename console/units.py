"""Quantities as an operator reads them: bytes in binary units, durations in their largest unit.

One formatting for the panels, the detail screen, the findings and the status text, so a figure reads
the same wherever it appears.
"""

from __future__ import annotations


def size(n: int | float | None) -> str:
    """``16.0 MiB``; ``?`` when the figure is unknown (never ``0 B``)."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def duration(seconds: float | None) -> str:
    """``3d``, ``5h``, ``12m``, ``40s`` (the largest unit, rounded); ``?`` when unknown."""
    if seconds is None:
        return "?"
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f}{unit}"
    return f"{max(0.0, seconds):.0f}s"
