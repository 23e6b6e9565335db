"""Injected API trouble, shared by the Hetzner and Kubernetes twins: 500s, latency, forced 429s."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Faults:
    """Each fault lasts until its deadline (``time.monotonic``)."""

    errors_until: float = 0.0
    latency_s: float = 0.0
    latency_until: float = 0.0
    throttle_until: float = 0.0

    def apply(self, body: dict[str, Any]) -> None:
        """``{"errors_s"}``, ``{"latency_ms", "for_s"}``, ``{"throttle_s"}``, ``{"clear": true}``."""
        now = time.monotonic()
        if body.get("clear"):
            self.errors_until = self.latency_until = self.throttle_until = 0.0
        if "errors_s" in body:
            self.errors_until = now + float(body["errors_s"])
        if "latency_ms" in body:
            self.latency_s = float(body["latency_ms"]) / 1000
            self.latency_until = now + float(body.get("for_s", 60))
        if "throttle_s" in body:
            self.throttle_until = now + float(body["throttle_s"])
