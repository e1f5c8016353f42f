"""A real DNS server (dnslib) on a loopback UDP port, serving records tests publish.
``tlsa(..., authenticated=True)`` answers with the AD flag set, as a DNSSEC-validating
resolver does for a signed zone (the relay trusts its configured resolver's AD bit);
``fail(name, rtype)`` answers SERVFAIL, as a resolver that cannot get an answer does."""
from __future__ import annotations

from dnslib import MX, QTYPE, RR, TLSA, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from tests.support.broker import free_port


class _Zone(BaseResolver):
    def __init__(self):
        self.records: dict[tuple[str, str], list] = {}
        self.authenticated: set[str] = set()  # names whose answers carry AD
        self.failing: set[tuple[str, str]] = set()  # (name, type) answered SERVFAIL

    def resolve(self, request, handler):
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        if (qname, qtype) in self.failing:
            reply.header.rcode = 2  # SERVFAIL
            return reply
        for rdata in self.records.get((qname, qtype), []):
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=60))
        if not reply.rr and not any(name == qname for name, _ in self.records):
            reply.header.rcode = 3  # NXDOMAIN
        reply.header.ad = int(qname in self.authenticated)  # request.reply() echoes the query's AD bit
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

    def a(self, name: str, ip: str, authenticated: bool = False) -> None:
        self.zone.records[(name.lower(), "A")] = [A(ip)]
        if authenticated:  # the name is in a signed zone
            self.zone.authenticated.add(name.lower())

    def fail(self, name: str, rtype: str) -> None:
        """Answer SERVFAIL to ``rtype`` queries for ``name``."""
        self.zone.failing.add((name.lower(), rtype))

    def tlsa(self, name: str, *records: tuple[int, int, int, bytes], authenticated: bool = True) -> None:
        """TLSA records (usage, selector, matching type, data) at e.g. ``_25._tcp.mx.example``."""
        self.zone.records[(name.lower(), "TLSA")] = [TLSA(*r) for r in records]
        (self.zone.authenticated.add if authenticated else self.zone.authenticated.discard)(name.lower())

    def remove(self, name: str, rtype: str) -> None:
        self.zone.records.pop((name.lower(), rtype), None)

    def start(self) -> "DnsServer":
        self.server.start_thread()
        return self

    def stop(self) -> None:
        self.server.stop()
