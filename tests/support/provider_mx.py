"""Sinks that play mailbox providers for MX delivery: each provider's MX name (under the
provider's built-in suffix, shared/providers.py) points at its own loopback address in the
tests' DNS server, with every sink on the same port (``POSTLINE_MX_PORT``)."""
from __future__ import annotations

from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import SmtpSink

# provider → (recipient domain, MX host name, loopback address)
PROVIDERS = {"google": ("gmail.test", "gmail-smtp-in.l.google.com", "127.0.0.2"),
             "microsoft": ("outlook.test", "outlook-test.mail.protection.outlook.com", "127.0.0.3"),
             "yahoo": ("yahoo.test", "mta5.am0.yahoodns.net", "127.0.0.4")}


def provider_sinks(dns: DnsServer, port: int, **scripts: dict) -> dict[str, SmtpSink]:
    """One started sink per provider named in ``scripts`` (its SmtpSink arguments), published in ``dns``."""
    sinks = {}
    for name, kwargs in scripts.items():
        domain, mx, ip = PROVIDERS[name]
        dns.mx(domain, (10, mx))
        dns.a(mx, ip)
        sinks[name] = SmtpSink(host=ip, port=port, **kwargs).start()
    return sinks


def provider_env(dns: DnsServer, port: int) -> dict[str, str]:
    """Settings of a postline process delivering to the sinks over MX (the MX host names fall
    under the built-in providers' suffixes, so no ``POSTLINE_PROVIDERS`` is needed)."""
    return {"POSTLINE_DNS_SERVER": dns.address, "POSTLINE_DELIVERY": "mx", "POSTLINE_MX_PORT": str(port)}
