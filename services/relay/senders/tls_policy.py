"""Outbound TLS per destination (docs/delivery.md, "What is verified when").

Decided for each MX host before its session, strongest first:

1. DANE (RFC 7672) — the host has authenticated, usable TLSA records: STARTTLS is
   required and the certificate must match them (``verified: dane``). Takes precedence
   over MTA-STS (RFC 8461 §2). A failed TLSA lookup for a host in a signed zone defers.
2. MTA-STS ``enforce`` (RFC 8461) — only hosts the policy lists; STARTTLS required with a
   certificate that chains to a trusted CA and names the MX host (``verified: mta-sts``).
3. ``require_tls`` (the service's setting or the send's option) — STARTTLS required with a
   PKIX-verified certificate naming the MX host (``verified: pkix``).
4. DANE records published but none usable (authenticated TLSA of unknown usages, say):
   STARTTLS required, certificate not checked (``verified: none``; RFC 7672 §2.2).
5. Otherwise opportunistic STARTTLS, certificate not checked (``verified: none``); an
   MTA-STS ``testing`` policy is followed this way and a host it does not list is logged.

A session a policy requires TLS for never falls back to plaintext: a missing STARTTLS, a
failed handshake or a refused certificate defers the message with the reason."""
from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from services.relay.senders import dane
from services.relay.senders.mta_sts import MtaSts, Policy
from shared import dns_lookup
from shared.settings import Settings

log = logging.getLogger(__name__)

TLSA_CACHE_SECONDS = 300
TLSA_FAILURE_CACHE_SECONDS = 30  # a resolver outage: each message does not wait for the lookups again
MAX_CACHED_HOSTS = 50_000
Verified = Literal["none", "pkix", "mta-sts", "dane"]


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """How the session with one MX host is secured. ``why``: what requires TLS (it starts
    the reason of a deferral), empty when nothing does."""

    tls: Literal["opportunistic", "starttls"]
    verified: Verified
    tlsa: tuple[dane.Tlsa, ...] = field(default=())
    why: str = ""

    @property
    def key(self) -> str:
        """Sessions made under equal keys are interchangeable (pooled together)."""
        return f"{self.tls}:{self.verified}:{hash(self.tlsa):x}" if self.tlsa else f"{self.tls}:{self.verified}"


OPPORTUNISTIC = TlsPolicy("opportunistic", "none")


class TlsPolicies:
    """The relay process's outbound TLS decisions, MTA-STS cache and TLS contexts."""

    def __init__(self, settings: Settings) -> None:
        ca_file = str(settings.outbound_ca_file) if settings.outbound_ca_file else None
        # built once: loading a CA store costs ~40 ms
        self.verifying = ssl.create_default_context(cafile=ca_file)
        self.unverified = ssl.create_default_context()
        self.unverified.check_hostname, self.unverified.verify_mode = False, ssl.CERT_NONE
        self.mta_sts = MtaSts(settings, dns_lookup.resolver(settings.dns_server), self.verifying)
        self._dnssec = dane.dnssec_resolver(settings.dns_server)
        self._tlsa: dict[str, tuple[float, dane.TlsaAnswer | None]] = {}

    async def domain_policy(self, domain: str) -> Policy | None:
        return await self.mta_sts.policy(domain)

    async def for_host(self, host: str, sts: Policy | None, require_tls: bool) -> TlsPolicy | str:
        """The policy of the session with MX ``host``, or why that host must not be used."""
        if sts is not None and not sts.allows(host):
            if sts.mode == "enforce":
                return f"MX {host} is not listed in the MTA-STS policy of {sts.domain} (mode enforce)"
            log.warning("MTA-STS (testing) of %s does not list MX %s; delivering anyway", sts.domain, host)
        answer = await self._tlsa_of(host)
        if answer is None:
            return f"TLSA lookup for {host} failed (DANE: not skipped on a DNS failure of a signed zone; retried later)"
        if answer.usable:
            return TlsPolicy("starttls", "dane", answer.usable, f"DANE (TLSA records of {host})")
        if sts is not None and sts.mode == "enforce":
            return TlsPolicy("starttls", "mta-sts", why=f"MTA-STS policy of {sts.domain} (enforce)")
        if require_tls:
            return TlsPolicy("starttls", "pkix", why="require_tls")
        if answer.published:
            return TlsPolicy("starttls", "none", why=f"DANE (TLSA records of {host}, none of them usable)")
        return OPPORTUNISTIC

    def context(self, policy: TlsPolicy) -> ssl.SSLContext:
        return self.verifying if policy.verified in ("pkix", "mta-sts") else self.unverified

    @staticmethod
    def check(policy: TlsPolicy, host: str) -> Callable[[ssl.SSLObject], str | None] | None:
        """The certificate check after the handshake (DANE); None: the TLS context's own."""
        if not policy.tlsa:
            return None
        return lambda obj: dane.check(policy.tlsa, dane.peer_chain(obj), host)

    async def _tlsa_of(self, host: str) -> dane.TlsaAnswer | None:
        """``host``'s TLSA answer (cached); a failed lookup counts as no DANE when the host's
        zone is not signed, and None (defer) when it is or that cannot be told."""
        cached = self._tlsa.get(host)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        answer = await dane.tlsa(self._dnssec, host)
        if answer is None and await dane.address_secure(self._dnssec, host) is False:
            log.info("TLSA lookup for %s failed; its zone is not signed: no DANE for it", host)
            answer = dane.NO_DANE
        if len(self._tlsa) >= MAX_CACHED_HOSTS:
            self._tlsa.pop(next(iter(self._tlsa)))
        ttl = TLSA_CACHE_SECONDS if answer is not None else TLSA_FAILURE_CACHE_SECONDS
        self._tlsa[host] = (time.monotonic() + ttl, answer)
        return answer
