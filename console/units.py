"""Quantities as an operator reads them: bytes in binary units, durations in their largest unit.

One formatting for the panels, the detail screen, the findings and the status text, so a figure reads
the same wherever it appears.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation


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


_QUANTITY = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))((?:[eE][+-]?\d+)|[numkKMGTPE]i?|)")
_DECIMAL_EXP = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "K": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity (``250m``, ``128Mi``, ``123456789n``, ``1e3``, ``2``) as a number; ValueError
    when it is not one.  The rules of ``kubernetes.utils.quantity``, written here because importing that
    loads the whole client package, and this runs in the snapshot's build thread."""
    found = _QUANTITY.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a quantity")
    number, suffix = found.groups()
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a quantity") from None
    if suffix.endswith("i"):
        if suffix[0] not in "KMGTPE":
            raise ValueError(f"{text!r} is not a quantity")
        return value * Decimal(1024 ** ("KMGTPE".index(suffix[0]) + 1))
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return value * Decimal(10) ** int(suffix[1:])
    return value * Decimal(10) ** _DECIMAL_EXP[suffix]
