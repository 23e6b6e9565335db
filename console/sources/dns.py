"""DNS: do the seed's records still say what config.toml says, and point at the load balancer?

Asked with dnspython of ``health.dns_servers`` (the lab's authoritative twin) or, when empty, of the
system's resolvers.  The load-balancer comparison happens in :mod:`console.snapshot`, against the public
IPv4 that Hetzner reports — after a disaster recovery the new LB has a new address and DNS must follow.
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.resolver

from console.config import Config
from console.model import DnsCheck, SourceState
from console.sources.base import PollingSource


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


class DnsSource(PollingSource):
    """The ``[[dns]]`` records, every five minutes (they change rarely, and a resolver is not ours)."""

    name = "dns"

    def interval(self) -> float:
        return 300.0

    async def poll(self) -> None:
        results = await check(self.config)
        self.store.set_extra("dns", results)
        if results and all(c.error for c in results):
            self.store.set_source(self.name, SourceState.UNREACHABLE, results[0].error)
        else:
            self.store.set_source(self.name, SourceState.OK)
