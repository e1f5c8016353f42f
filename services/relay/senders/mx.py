"""MX delivery: look up the recipient domain's MX hosts (A/AAAA fallback, RFC 5321 §5.1),
try them in preference order, reuse connections per host, secure each session as its TLS
policy says (MTA-STS, DANE, require_tls, else opportunistic STARTTLS: tls_policy.py); connections,
rate and messages per connection shaped per mailbox provider (and per source address of an IP
pool) for the whole installation (services/relay/shaping/)."""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time
from collections import defaultdict

from services.relay.outcome import DeliveryResult
from services.relay.senders.base import Sender
from services.relay.senders.smtp_pool import SmtpPool
from services.relay.senders.tls_policy import TlsPolicies, TlsPolicy
from shared import dns_lookup
from shared import events as ev
from services.relay.shaping.shaper import Shaper, Turn, shaping_key
from services.relay.shaping import open_shaping
from shared.addresses import domain_of
from shared.control.state import ControlState
from shared.log.port import EventLog
from shared.providers import provider_of
from shared.settings import Settings

MX_CACHE_SECONDS = 300


class MxSender(Sender):
    def __init__(self, settings: Settings, control: ControlState | None = None, log: EventLog | None = None) -> None:
        self.settings = settings
        self.providers = settings.provider_table

        async def alert(event: ev.Alert) -> None:
            if log is not None:
                await log.append(ev.Topic.EVENTS, event.email_id, ev.encode(event))

        self.shaper = Shaper(settings, control, open_shaping(settings, log), alert)
        self.resolver = dns_lookup.resolver(settings.dns_server)
        self._mx_cache: dict[str, tuple[float, list[str] | None]] = {}
        self._pools: dict[str, SmtpPool] = {}
        self.tls = TlsPolicies(settings)

    async def mx_hosts(self, domain: str) -> list[str] | None:
        """Hosts in preference order; [] for a null MX; None when DNS failed (try later)."""
        cached = self._mx_cache.get(domain)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        records = await dns_lookup.mx(self.resolver, domain)
        if records is None:
            return None
        if records == [(0, "")] or records == [(0, ".")]:
            hosts: list[str] = []  # RFC 7505 null MX: the domain takes no mail
        else:
            hosts = [h for _, h in records] or [domain]  # no MX: the domain's own address
        self._mx_cache[domain] = (time.monotonic() + MX_CACHE_SECONDS, hosts)
        return hosts

    def _pool(self, host: str, ip: str, policy: TlsPolicy, shaped: str, source: ev.PoolAddress | None) -> SmtpPool:
        """Sessions to ``host`` at ``ip`` under ``policy``, from ``source``; ``shaped``: the
        shaping key (the provider, and the source address of a pool: ``shaping_key``)."""
        ehlo = source.ehlo_name if source else self.settings.hostname
        key = f"{shaped}|{host}|{ip}|{policy.key}|{ehlo}"  # a changed EHLO name opens new sessions
        if key not in self._pools:
            self._pools[key] = SmtpPool(ip, self.settings.mx_port, size=self.shaper.limits(shaped).max_connections,
                                        tls=policy.tls,
                                        local_hostname=ehlo,
                                        server_hostname=host, context=self.tls.context(policy),
                                        check=self.tls.check(policy, host), verified=policy.verified,
                                        slots=self.shaper.slots(shaped), local_addr=source.ip if source else None)
        return self._pools[key]

    async def _via(self, pool: SmtpPool, mail_from: str, rcpts: list[str], raw: bytes,
                   turn: Turn) -> dict[str, DeliveryResult]:
        """The pool's outcomes (``turn``: the provider's start time, awaited with a connection
        in hand), naming the MX by its host name (the pool connects to one of its addresses:
        the name is what says which provider it is) and the source address used."""
        results = await pool.send(mail_from, rcpts, raw, turn)
        return {r: dataclasses.replace(res, mx_host=pool.server_hostname or res.mx_host,
                                       source_ip=pool.local_addr or res.source_ip) for r, res in results.items()}

    async def _send_domain(self, domain: str, mail_from: str, rcpts: list[str], raw: bytes,
                           require_tls: bool) -> dict[str, DeliveryResult]:
        hosts = await self.mx_hosts(domain)
        if hosts is None:
            return {r: DeliveryResult("deferred", None, f"DNS lookup for {domain} failed") for r in rcpts}
        if not hosts:
            return {r: DeliveryResult("bounced", 556, f"5.1.10 {domain} accepts no mail (null MX)") for r in rcpts}
        last: dict[str, DeliveryResult] = {}
        sts = await self.tls.domain_policy(domain)
        for host in hosts:
            policy = await self.tls.for_host(host, sts, require_tls)
            if isinstance(policy, str):  # this host may not be used (MTA-STS enforce, a failed TLSA lookup)
                last = {r: DeliveryResult("deferred", None, policy, host, connect_error=True) for r in rcpts}
                continue
            ips = await dns_lookup.addresses(self.resolver, host)
            for ip in ips or []:
                provider = provider_of(host, domain, self.providers)
                family = ipaddress.ip_address(ip).version
                source = await self.shaper.wait_for_source(provider, family)
                if source == "unreachable":  # the service's IP pool has no address of this family
                    last = {r: DeliveryResult("deferred", None, f"the IP pool has no IPv{family} address to reach {ip}",
                                              host, connect_error=True) for r in rcpts}
                    continue
                if source == "wait":
                    return {r: DeliveryResult("deferred", None, f"the IP pool's warm-up caps for {provider} are reached "
                                                                 "for today", retry_after=self.settings.shaping_pause)
                            for r in rcpts}
                key = shaping_key(provider, source)
                pool = self._pool(host, ip, policy, key, source)
                results = await self.shaper.deliver(key, rcpts, lambda some, turn: self._via(pool, mail_from, some, raw, turn))
                if not all(r.connect_error for r in results.values()):
                    return results  # a session took place (a reply, or a drop mid-transaction): that is the outcome
                last = {r: self._why(res, policy) for r, res in results.items()}  # next address, then next MX
        return last or {r: DeliveryResult("deferred", None, f"no reachable MX for {domain}", connect_error=True) for r in rcpts}

    @staticmethod
    def _why(res: DeliveryResult, policy: TlsPolicy) -> DeliveryResult:
        """A session that failed where TLS was required says what required it."""
        if not policy.why:
            return res
        return dataclasses.replace(res, smtp_reply=f"TLS required by {policy.why}: {res.smtp_reply}")

    async def send(self, mail_from: str, rcpts: list[str], raw: bytes,
                   require_tls: bool = False) -> dict[str, DeliveryResult]:
        by_domain: dict[str, list[str]] = defaultdict(list)
        for r in rcpts:
            by_domain[domain_of(r)].append(r)
        out: dict[str, DeliveryResult] = {}
        for part in await asyncio.gather(*(self._send_domain(d, mail_from, rs, raw, require_tls)
                                           for d, rs in by_domain.items())):
            out.update(part)
        return out

    async def start(self) -> None:
        await self.shaper.store.start()

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        await self.shaper.store.close()
