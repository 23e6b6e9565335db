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


def usage_cell(used: int | None, of: int | None, unit: str) -> str:
    """A usage figure as ``kubectl top`` writes it (``27m``, ``187Mi``), with what it is measured against
    after a slash when there is one (a request, a limit); ``-`` when nothing was measured.  ``unit``:
    ``cpu`` (millicores) or ``memory`` (bytes)."""
    if used is None:
        return "-"

    def text(n: int) -> str:
        return f"{n}m" if unit == "cpu" else f"{n // 2**20}Mi"

    return text(used) if of is None else f"{text(used)}/{text(of)}"


def share(used: int | None, whole: int | None) -> str:
    """``4%`` of ``whole`` (truncated, as ``kubectl top``); empty when either is unknown."""
    if used is None or not whole:
        return ""
    return f"{used * 100 // whole}%"
