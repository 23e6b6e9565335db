"""Hetzner poller: servers and the load balancer (per-target, per-port health), within a budget.

The ``hcloud`` library is synchronous, so each poll runs in a thread.  The live view may spend at most
``poll_budget_fraction`` of the project's hourly requests (10 % of 3600 = 360/h): with three requests a
poll (servers, the load balancer, the firewall), that is one poll every 30 s.  ``RateLimit-Remaining``
below a fifth of the limit doubles the interval, and
a 429 waits for ``RateLimit-Reset`` — the rest of the budget belongs to actions.  The load balancer is
fetched once with its targets' IDs; server names come from the same poll's server list, never from the
partial ``LoadBalancerTarget.server`` objects (each of which would cost a GET).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hcloud import APIException, Client

from console.config import Config
from console.model import SourceState
from console.sources.base import PollingSource
from console.store import ClusterStore

REQUESTS_PER_POLL = 3


class HetznerSource(PollingSource):
    name = "hetzner"

    def __init__(self, store: ClusterStore, config: Config) -> None:
        super().__init__(store, config)
        hz = config.hetzner
        self.client = Client(token=hz.read_token(), api_endpoint=hz.endpoint, poll_interval=1.0)
        self.rate: dict[str, int] = {}
        self.client._client._session.hooks["response"].append(self._headers)
        self.requests = 0
        # An action (a drill) may look faster for its own duration: that is the action's budget.
        self.boost_s: float | None = None

    def _headers(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self.requests += 1
        for key in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
            if key in response.headers:
                self.rate[key] = int(response.headers[key])

    def interval(self) -> float:
        hz = self.config.hetzner
        base = 3600.0 / (hz.requests_per_hour * hz.poll_budget_fraction) * REQUESTS_PER_POLL
        limit = self.rate.get("RateLimit-Limit", hz.requests_per_hour)
        if self.rate.get("RateLimit-Remaining", limit) < limit / 5:
            return base * 2
        if self.boost_s is not None:
            return min(base, self.boost_s)
        return base

    def boost(self, interval_s: float | None) -> None:
        """Poll every ``interval_s`` (None: back to the live view's budget), starting now."""
        self.boost_s = interval_s
        self._wake.set()

    def poll_once(self) -> dict[str, Any]:
        """One poll (blocking; run in a thread): servers and the configured load balancer."""
        servers = {s.id: {"name": s.name, "status": s.status} for s in self.client.servers.get_all()}
        lbc = self.config.hetzner.load_balancer
        lb = self.client.load_balancers.get_by_name(lbc.name)
        targets = []
        if lb is not None:
            for t in lb.targets or []:
                if t.type != "server" or t.server is None:
                    continue
                health = tuple((h.listen_port, h.status) for h in (t.health_status or []))
                targets.append(
                    {
                        "server_id": t.server.id,
                        "name": servers.get(t.server.id, {}).get("name", "?"),
                        "health": health,
                    }
                )
        # By name, as the load balancer: a provisioned or recovered project has new IDs (#9).
        fw = self.client.firewalls.get_by_name(self.config.hetzner.firewall.name)
        firewall = {
            "name": self.config.hetzner.firewall.name,
            "rules": [
                {"direction": r.direction, "protocol": r.protocol, "port": r.port, "source_ips": r.source_ips}
                for r in (fw.rules if fw is not None else None) or []
            ],
        }
        return {
            "servers": servers,
            "firewall": firewall,
            "load_balancer": None
            if lb is None
            else {
                "name": lb.name,
                "ip": lb.public_net.ipv4.ip if lb.public_net and lb.public_net.ipv4 else "",
                "targets": targets,
                "health_check": next(
                    (
                        (s.health_check.interval, s.health_check.timeout, s.health_check.retries)
                        for s in lb.services or []
                        if s.health_check
                    ),
                    (0, 0, 0),
                ),
            },
            "rate": dict(self.rate),
            "at": time.time(),
        }

    async def poll(self) -> None:
        try:
            data = await asyncio.to_thread(self.poll_once)
        except APIException as exc:
            state = (
                SourceState.FORBIDDEN
                if exc.code in ("forbidden", "unauthorized")
                else SourceState.UNREACHABLE
            )
            self.store.set_source(self.name, state, f"Hetzner API: {exc.message} ({exc.code})")
            if exc.code == "rate_limit_exceeded":
                await asyncio.sleep(max(1.0, self.rate.get("RateLimit-Reset", 0) - time.time()))
        except Exception as exc:  # network and everything else: stale, try again next interval
            self.store.set_source(
                self.name, SourceState.UNREACHABLE, f"Hetzner API unreachable: {type(exc).__name__}"
            )
        else:
            self.store.set_extra("hetzner", data)
            self.store.set_source(self.name, SourceState.OK)
