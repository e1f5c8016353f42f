"""MTA-STS (RFC 8461): a recipient domain's published TLS policy for mail sent to it.

``MtaSts.policy(domain)`` looks up ``_mta-sts.<domain>`` TXT (``v=STSv1; id=…``) through the
relay's resolver (POSTLINE_DNS_SERVER), and when the id is new fetches
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` with the certificate verified
(POSTLINE_OUTBOUND_CA_FILE, else the system store; port POSTLINE_MTA_STS_PORT, 443). The
host name is resolved by the same resolver and the connection made to that address with
the host name as SNI and ``Host``, so the certificate is checked against the name; a
loopback or private address is not fetched from (unless POSTLINE_WEBHOOK_ALLOW_PRIVATE,
the switch for all outbound HTTP to such addresses).

Cache: per relay process, by domain, until the policy's ``max_age`` (RFC 8461 §3.3: a
policy stays in force until it expires, even when a later TXT lookup or fetch fails). It
is a cache of public data each process may fetch for itself, so it is not shared through
the control log. The TXT record is looked up at most every ``RECHECK_SECONDS`` per domain
(with or without a policy, a failed lookup or fetch included), so that each message does not
cost a DNS query or a fetch; a policy that would expire before the next check is fetched
again at this one, and an expired one is looked up at once.

Why not a library: the one maintained Python implementation, postfix-mta-sts-resolver, is a
Postfix socketmap daemon; its resolver brings aiohttp, aiodns/pycares and PyYAML and
resolves through the system resolver, which would bypass POSTLINE_DNS_SERVER. The policy
format is a few ``key: value`` lines (RFC 8461 §3.2), parsed here with the RFC's limits."""
from __future__ import annotations

import ipaddress
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Literal

import dns.asyncresolver
import httpx

from shared import dns_lookup, ssrf
from shared.settings import Settings

log = logging.getLogger(__name__)

RECHECK_SECONDS = 300
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3 suggests a limit of this order
MAX_AGE_LIMIT = 31_557_600  # RFC 8461 §3.2: max_age is at most one year
MAX_DOMAINS = 50_000  # cached domains per process; the oldest entry goes first
FETCH_TIMEOUT = 10.0
Mode = Literal["enforce", "testing", "none"]


@dataclass(frozen=True, slots=True)
class Policy:
    domain: str
    id: str
    mode: Mode
    mx: tuple[str, ...]
    max_age: int

    def allows(self, host: str) -> bool:
        """Whether MX ``host`` matches one of the policy's ``mx`` patterns (RFC 8461 §4.1:
        ``*.example.com`` matches exactly one leftmost label)."""
        host = host.rstrip(".").lower()
        for pattern in self.mx:
            if pattern.startswith("*."):
                label, _, rest = host.partition(".")
                if label and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


def txt_id(values: list[str]) -> str | None:
    """The policy id of the ``_mta-sts`` TXT records; None unless exactly one record is
    ``v=STSv1`` with an id (RFC 8461 §3.1: several records mean no policy)."""
    records = [v for v in values if v.replace(" ", "").startswith("v=STSv1")]
    if len(records) != 1:
        return None
    fields = dict(part.strip().partition("=")[::2] for part in records[0].split(";") if part.strip())
    ident = fields.get("id", "")
    return ident if ident.isascii() and ident.isalnum() and 1 <= len(ident) <= 32 else None


def parse(text: str, domain: str, ident: str) -> Policy:
    """The policy file (RFC 8461 §3.2); ``ValueError`` naming what is wrong."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "mx":
            mx.append(value.lower().rstrip("."))
        else:
            fields.setdefault(key, value)
    if fields.get("version") != "STSv1":
        raise ValueError("version is not STSv1")
    mode = fields.get("mode")
    if mode not in ("enforce", "testing", "none"):
        raise ValueError(f"mode {mode!r} is not enforce, testing or none")
    max_age = fields.get("max_age", "")
    if not max_age.isdigit() or len(max_age) > 10:
        raise ValueError("max_age is not a number of seconds")
    if mode != "none" and not mx:
        raise ValueError("no mx patterns")
    return Policy(domain, ident, mode, tuple(mx), min(int(max_age), MAX_AGE_LIMIT))  # type: ignore[arg-type]  # checked above


class MtaSts:
    def __init__(self, settings: Settings, resolver: dns.asyncresolver.Resolver, context: ssl.SSLContext) -> None:
        self.resolver, self.port, self.context = resolver, settings.mta_sts_port, context
        self.allow_private = settings.webhook_allow_private  # the operator's one switch for outbound HTTP to private addresses
        self._cache: dict[str, tuple[float, float, Policy | None]] = {}  # domain → (expires, recheck at, policy)

    async def policy(self, domain: str) -> Policy | None:
        """The domain's policy in force; None: none (or none could be fetched and none is
        cached). A policy with ``mode: none`` is returned as None. The TXT record is looked
        up again at most every ``RECHECK_SECONDS`` (a new id means a new policy)."""
        domain = domain.lower()
        now = time.monotonic()
        expires, recheck_at, known = self._cache.get(domain, (0.0, 0.0, None))
        if known is not None and expires <= now:  # expired: looked up again now, not at the next check
            known, recheck_at = None, 0.0
        if recheck_at > now:
            return self._in_force(known)
        values = await dns_lookup.txt(self.resolver, f"_mta-sts.{domain}")
        ident = txt_id(values) if values is not None else None
        # the same id: fetched again only when the policy would expire before the next check
        # (RFC 8461 §3.3: a policy is refreshed before it expires, so it never lapses in use)
        lasts = known is not None and known.id == ident and expires - now > RECHECK_SECONDS
        fetched = await self._fetch(domain, ident) if ident is not None and not lasts else None
        if fetched is None:  # no news, a DNS failure or a failed fetch: the cached policy stays
            self._remember(domain, expires if known else now, now + RECHECK_SECONDS, known)  # (RFC 8461 §5.1)
            return self._in_force(known)
        self._remember(domain, now + fetched.max_age, now + RECHECK_SECONDS, fetched)
        return self._in_force(fetched)

    @staticmethod
    def _in_force(policy: Policy | None) -> Policy | None:
        return policy if policy is not None and policy.mode != "none" else None

    def _remember(self, domain: str, expires: float, recheck_at: float, policy: Policy | None) -> None:
        self._cache.pop(domain, None)
        if len(self._cache) >= MAX_DOMAINS:
            self._cache.pop(next(iter(self._cache)))
        self._cache[domain] = (expires, recheck_at, policy)

    async def _fetch(self, domain: str, ident: str) -> Policy | None:
        host = f"mta-sts.{domain}"
        ips = await dns_lookup.addresses(self.resolver, host)
        if not ips:
            log.info("MTA-STS: %s has an id but %s does not resolve", domain, host)
            return None
        if not self.allow_private and ssrf.is_forbidden(ipaddress.ip_address(ips[0])):
            log.info("MTA-STS: %s resolves to a private address; not fetched", host)  # never probe the inside
            return None
        ip = f"[{ips[0]}]" if ":" in ips[0] else ips[0]
        url = f"https://{ip}:{self.port}/.well-known/mta-sts.txt"
        try:
            async with httpx.AsyncClient(verify=self.context, timeout=FETCH_TIMEOUT, follow_redirects=False) as client:
                async with client.stream("GET", url, headers={"Host": host}, extensions={"sni_hostname": host}) as resp:
                    if resp.status_code != 200:
                        raise ValueError(f"HTTP {resp.status_code}")
                    if not resp.headers.get("content-type", "").lower().startswith("text/plain"):
                        raise ValueError("the policy's Content-Type is not text/plain")
                    body = b""
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_POLICY_BYTES:
                            raise ValueError("policy larger than 64 KB")
            return parse(body.decode("utf-8", "replace"), domain, ident)
        except (httpx.HTTPError, ValueError, ssl.SSLError, OSError) as exc:
            log.info("MTA-STS: no policy for %s from %s: %s", domain, host, exc)
            return None
