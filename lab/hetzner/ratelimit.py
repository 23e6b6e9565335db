"""The project's request budget as Hetzner documents it: 3600 per hour, refilled by one every second.

``RateLimit-Reset`` is the UNIX time at which the budget would be full again if no request were made.
The clock is injectable (and freezable through the lab's control API) so tests can spend the budget
exactly, without the refill racing them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Budget:
    limit: int = 3600
    per_second: float = 1.0
    clock: Callable[[], float] = time.time
    _remaining: float = field(init=False, default=-1.0)
    _at: float = field(init=False, default=0.0)
    frozen_at: float | None = None

    def __post_init__(self) -> None:
        self._remaining = float(self.limit)
        self._at = self.now()

    def now(self) -> float:
        return self.frozen_at if self.frozen_at is not None else self.clock()

    def _refill(self) -> None:
        now = self.now()
        self._remaining = min(float(self.limit), self._remaining + (now - self._at) * self.per_second)
        self._at = now

    def take(self) -> bool:
        """Spend one request; False when the budget is empty (the caller answers 429)."""
        self._refill()
        if self._remaining >= 1.0:
            self._remaining -= 1.0
            return True
        return False

    def headers(self) -> dict[str, str]:
        self._refill()
        missing = self.limit - self._remaining
        reset = self._at + missing / self.per_second
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(math.floor(self._remaining)),
            "RateLimit-Reset": str(math.ceil(reset)),
        }

    def set_remaining(self, remaining: int) -> None:
        self._refill()
        self._remaining = float(max(0, min(self.limit, remaining)))

    def freeze(self, frozen: bool) -> None:
        """Stop (or restart) the refill clock; time does not pass for the budget while frozen."""
        self._refill()
        if frozen:
            self.frozen_at = self.clock()
        else:
            self.frozen_at = None
        self._at = self.now()

    def advance(self, seconds: float) -> None:
        """Move a frozen clock forward (the refill accrues as if that time had passed)."""
        if self.frozen_at is None:
            raise RuntimeError("advance() needs a frozen budget clock")
        self.frozen_at += seconds
