"""DNS: do the seed's records still say what config.toml says, and point at the load balancer?

Asked with dnspython of ``health.dns_servers`` (the lab's authoritative twin) or, when empty, of the
system's resolvers.  The load-balancer comparison happens in :mod:`console.snapshot`, against the public
IPv4 that Hetzner reports — after a disaster recovery the new LB has a new address and DNS must follow.
"""

from __future__ import annotations

import asyncio

import dns.asyncresolver
import dns.exception
import dns.resolver

from console.config import Config
from console.model import DnsCheck, SourceState
from console.store import ClusterStore


def resolver(servers: list[str]) -> dns.asyncresolver.Resolver:
    if not servers:
        return dns.asyncresolver.Resolver()
    r = dns.asyncresolver.Resolver(configure=False)
    r.nameservers = [s.rsplit(":", 1)[0] if ":" in s else s for s in servers]
    ports = {int(s.rsplit(":", 1)[1]) for s in servers if ":" in s}
    if ports:
        r.port = ports.pop()
    r.lifetime = 5.0
    return r


async def check(config: Config) -> tuple[DnsCheck, ...]:
    r = resolver(config.health.dns_servers)
    out = []
    for rec in config.dns:
        try:
            answer = await r.resolve(rec.name, rec.type)
            got = tuple(sorted(a.to_text().split()[-1] if rec.type == "MX" else a.to_text() for a in answer))
            want = rec.value.split()[-1]
            out.append(DnsCheck(rec.name, rec.type, rec.value, got, want in got))
        except (dns.exception.DNSException, OSError) as exc:
            out.append(DnsCheck(rec.name, rec.type, rec.value, (), False, type(exc).__name__))
    return tuple(out)


class DnsSource:
    name = "dns"

    def __init__(self, store: ClusterStore, config: Config, interval: float = 300.0) -> None:
        self.store = store
        self.config = config
        self.interval = interval
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        async def loop() -> None:
            while True:
                results = await check(self.config)
                self.store.set_extra("dns", results)
                if results and all(c.error for c in results):
                    self.store.set_source(self.name, SourceState.UNREACHABLE, results[0].error)
                else:
                    self.store.set_source(self.name, SourceState.OK)
                self.synced.set()
                await asyncio.sleep(self.interval)

        self._task = asyncio.ensure_future(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
