"""An authoritative DNS twin for the seed's zone (``[[dns]]`` in config.toml), on loopback UDP and TCP.

The console checks that ``docfast.dev`` and ``staging.docfast.dev`` point at the load balancer by asking
DNS, as a user's resolver would.  The lab must not ask the Internet, so it answers for the seed's records
itself (dnspython builds and parses the wire format); ``records`` may be changed at run time to show a
record that no longer points at the load balancer.
"""

from __future__ import annotations

import asyncio
import logging
import struct

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from console.config import DnsRecord

log = logging.getLogger("lab.dns")
LOOPBACK = "127.0.0.1"


class LabDns:
    def __init__(self, records: list[DnsRecord]) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        for r in records:
            self.records.setdefault((r.name.rstrip(".").lower(), r.type), []).append(r.value)
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rtype = dns.rdatatype.to_text(question.rdtype)
        values = self.records.get((name, rtype), [])
        if values:
            values = [f"10 {v}" if rtype == "MX" and " " not in v else v for v in values]
            response.answer.append(
                dns.rrset.from_text_list(question.name, 300, dns.rdataclass.IN, question.rdtype, values)
            )
        elif not any(n == name for n, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return bytes(response.to_wire())

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        outer = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                try:
                    self.transport.sendto(outer.answer(data), addr)  # type: ignore[attr-defined]
                except Exception:  # a malformed query gets no answer, as from a real server
                    log.debug("bad DNS query from %s", addr)

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = self.answer(await reader.readexactly(size))
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
            except Exception:
                pass
            finally:
                writer.close()

        # UDP and TCP on one port number: a free UDP port may be taken for TCP, so try again if it is.
        for _ in range(20):
            transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=(LOOPBACK, 0))
            port = int(transport.get_extra_info("sockname")[1])
            try:
                self._tcp = await asyncio.start_server(tcp, LOOPBACK, port)
            except OSError:
                transport.close()
                continue
            self._udp, self.port = transport, port
            return port
        raise OSError("no port free for both UDP and TCP on loopback")

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
