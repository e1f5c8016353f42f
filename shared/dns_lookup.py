"""DNS lookups (dnspython), through POSTLINE_DNS_SERVER when set."""
from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.resolver


def resolver(dns_server: str | None) -> dns.asyncresolver.Resolver:
    if not dns_server:
        return dns.asyncresolver.Resolver()
    ip, _, port = dns_server.rpartition(":")
    r = dns.asyncresolver.Resolver(configure=False)
    r.nameservers = [ip.strip("[]")]
    r.port = int(port)
    r.timeout = r.lifetime = 3.0
    return r


async def txt(res: dns.asyncresolver.Resolver, name: str) -> list[str] | None:
    """TXT values at ``name`` (multi-string records joined); [] when none; None on a DNS failure."""
    try:
        answer = await res.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException:
        return None
    return [b"".join(r.strings).decode(errors="replace") for r in answer]


async def mx(res: dns.asyncresolver.Resolver, domain: str) -> list[tuple[int, str]] | None:
    """MX hosts ordered by preference; [] when none; None on a DNS failure."""
    try:
        answer = await res.resolve(domain, "MX")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException:
        return None
    return sorted((r.preference, str(r.exchange).rstrip(".")) for r in answer)


async def addresses(res: dns.asyncresolver.Resolver, host: str) -> list[str] | None:
    """IPv4 then IPv6 addresses of ``host``; [] when none; None on a DNS failure."""
    out: list[str] = []
    failed = False
    for rtype in ("A", "AAAA"):
        try:
            out += [r.to_text() for r in await res.resolve(host, rtype)]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            pass
        except dns.exception.DNSException:
            failed = True
    return None if failed and not out else out
