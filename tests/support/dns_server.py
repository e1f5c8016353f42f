"""A real DNS server (dnslib) on a loopback UDP port, serving records tests publish."""
from __future__ import annotations

from dnslib import MX, QTYPE, RR, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from tests.support.broker import free_port


class _Zone(BaseResolver):
    def __init__(self):
        self.records: dict[tuple[str, str], list] = {}

    def resolve(self, request, handler):
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        for rdata in self.records.get((qname, qtype), []):
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=60))
        if not reply.rr and not any(name == qname for name, _ in self.records):
            reply.header.rcode = 3  # NXDOMAIN
        return reply


class DnsServer:
    def __init__(self):
        self.port = free_port()
        self.zone = _Zone()
        self.server = DNSServer(self.zone, port=self.port, address="127.0.0.1", logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def txt(self, name: str, *values: str | list[str]) -> None:
        """Publish TXT records; a list value is one record of several strings."""
        self.zone.records[(name.lower(), "TXT")] = [TXT(v) for v in values]

    def mx(self, name: str, *hosts: tuple[int, str]) -> None:
        self.zone.records[(name.lower(), "MX")] = [MX(h, p) for p, h in hosts]

    def a(self, name: str, ip: str) -> None:
        self.zone.records[(name.lower(), "A")] = [A(ip)]

    def remove(self, name: str, rtype: str) -> None:
        self.zone.records.pop((name.lower(), rtype), None)

    def start(self) -> "DnsServer":
        self.server.start_thread()
        return self

    def stop(self) -> None:
        self.server.stop()
