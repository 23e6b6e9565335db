"""Keep CPython's garbage collector off the start-up and key paths.

**Start-up** (:func:`quiet_start`, :func:`settle`): importing textual, the Kubernetes, Hetzner, SSH and
PostgreSQL clients and pydantic grows the heap from nothing to hundreds of thousands of objects, and CPython
runs a full collection each time the survivors grow by a quarter — several walks of an ever larger heap, for
garbage that import does not make.  ``opsconsole`` starts with the collector off; the dashboard turns it on
once its sources are imported and started, after freezing everything alive then (the modules, the app), so no
later collection walks it.  A one-shot command (``--action status``) leaves it off until it exits.

**Full collections** (:class:`FreezeSurvivors`):

With thousands of pods in the store a full (generation 2) collection walks every container object the
process holds, and under a churn of pod updates it comes every few seconds: the longest pauses the
dashboard would have, and key presses wait behind them.

So every object that survives a full collection is *frozen* (``gc.freeze()``: moved to the permanent
generation, which no collection scans; O(1)), and each later full collection walks only what was allocated
since the one before.  The survivors of a middle (generation 1) collection are frozen too: what they
promote is what the next full collection would walk (each one a key press answered late), and after
the freeze there is next to nothing left for it.

Frozen objects are still freed by reference counting when dropped — watch events replace pod dicts parsed
from JSON, which hold no reference cycles.  Only a cycle that becomes garbage after being frozen waits:
every ``UNFREEZE_AFTER_S`` the heap is unfrozen, nothing is frozen again until the next full collection has
walked all of it (one ordinary pause) and freed such cycles, and freezing resumes after it.

Driven by the collector itself (``gc.callbacks``), not a clock; the freeze runs on the event loop, never
inside a collection.

**Young collections**: CPython collects generation 0 every 700 net new container objects; at scale that
is many small collections a second, in whichever thread allocated (the snapshot builder's included, which
holds the interpreter meanwhile).  While it runs, the dashboard collects generation 0 every
``YOUNG_THRESHOLD`` instead: fewer pauses, each under a frame.  (The figures: README, "Measured".)
"""

from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # opsconsole.cli imports this module first thing: nothing it does not need
    import asyncio

UNFREEZE_AFTER_S = 600.0
YOUNG_THRESHOLD = 10_000

_quiet = False  # quiet_start() ran and settle() has not


def quiet_start() -> None:
    """Collector off for start-up (``opsconsole``'s first line, before the heavy imports)."""
    global _quiet
    if gc.isenabled():
        gc.disable()
        _quiet = True


def settle() -> None:
    """Start-up is over: freeze what is alive and turn the collector back on (no-op without quiet_start)."""
    global _quiet
    if _quiet:
        _quiet = False
        gc.freeze()
        gc.enable()


def restore() -> None:
    """Collector back on without freezing (a caller of ``main()`` in-process keeps its own heap as it was)."""
    global _quiet
    if _quiet:
        _quiet = False
        gc.enable()


class FreezeSurvivors:
    """Installed by the dashboard for its lifetime; removed (and everything unfrozen) when it closes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, unfreeze_after_s: float = UNFREEZE_AFTER_S) -> None:
        self._loop = loop
        self._unfreeze_after_s = unfreeze_after_s
        self._unfrozen_at = time.monotonic()
        self._awaiting_full = False
        self._thresholds: tuple[int, ...] = gc.get_threshold()
        self.freezes = 0

    def install(self) -> None:
        gc.callbacks.append(self._collected)
        self._thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, *self._thresholds[1:])

    def uninstall(self) -> None:
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)
            gc.set_threshold(*self._thresholds)
        restore()  # the app ended before its sources settled start-up (a config error, a test)
        gc.unfreeze()

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        # May run in any thread (a collection happens wherever an allocation crosses the threshold).
        generation = info.get("generation", 0)
        if phase == "stop" and generation >= 1 and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._after_collection, generation)

    def _after_collection(self, generation: int) -> None:
        if self._awaiting_full:
            if generation < 2:
                return  # unfrozen for a full collection to see everything: not frozen again before it
            self._awaiting_full = False
        elif time.monotonic() - self._unfrozen_at >= self._unfreeze_after_s:
            gc.unfreeze()  # the next full collection sees everything once: cycles frozen since are freed
            self._unfrozen_at = time.monotonic()
            self._awaiting_full = True
            return
        gc.freeze()
        self.freezes += 1
