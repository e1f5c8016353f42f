"""DANE for SMTP (RFC 7672): an MX host's TLSA records, and checking a server's
certificate chain against them.

Only an answer the resolver marks authenticated (the AD bit) counts: the relay asks the
configured resolver (POSTLINE_DNS_SERVER, else the system's) with the DO and AD flags and
trusts its AD bit, so that resolver must validate DNSSEC itself and be reached over a
trusted path (a local unbound, say — docs/delivery.md). An unauthenticated answer, or
authenticated records none of which is usable, means no DANE for that host.

Usable records (RFC 7672 §3.1): DANE-TA(2) and DANE-EE(3), selector Cert(0)/SPKI(1),
matching Full(0)/SHA2-256(1)/SHA2-512(2). DANE-EE matches the server's certificate and
ignores names and dates (§3.1.1); DANE-TA matches a certificate the server sent in its
chain, which must then issue the chain down to the server's certificate as a CA path
would (every issuer a CA allowed to sign certificates at its depth, the certificates below
the anchor within their dates), and that certificate must name the MX host (§3.2.2).

An authenticated TLSA RRset none of whose records is usable still says the host offers TLS:
TLS is then required, its certificate not checked (§2.2). A TLSA lookup that fails (not "no
records": SERVFAIL, a timeout) makes the host unusable for now — unless the host's address
records are not authenticated either: in an unsigned zone DANE does not apply (§2.2.2), and
a resolver that mishandles TLSA queries must not hold up mail to it. Simplifications: the
TLSA lookup is made whether or not the MX answer was authenticated (§2.2.1 allows that), and
before the address lookup (which is made only when the TLSA lookup fails)."""
from __future__ import annotations

import datetime
import hashlib
import hmac
import ssl
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.resolver
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from shared import dns_lookup

DANE_TA, DANE_EE = 2, 3
MAX_RECORDS = 32


@dataclass(frozen=True, slots=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes

    def matches(self, cert: x509.Certificate) -> bool:
        if self.selector == 0:
            content = cert.public_bytes(serialization.Encoding.DER)
        else:
            content = cert.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        if self.mtype == 1:
            content = hashlib.sha256(content).digest()
        elif self.mtype == 2:
            content = hashlib.sha512(content).digest()
        return hmac.compare_digest(content, self.data)


@dataclass(frozen=True, slots=True)
class TlsaAnswer:
    """An MX host's TLSA lookup: the ``usable`` records of an authenticated answer, and
    whether an authenticated TLSA RRset was ``published`` at all (usable records or not)."""

    usable: tuple[Tlsa, ...] = ()
    published: bool = False


NO_DANE = TlsaAnswer()


def usable(rec: Tlsa) -> bool:
    return rec.usage in (DANE_TA, DANE_EE) and rec.selector in (0, 1) and rec.mtype in (0, 1, 2)


def dnssec_resolver(dns_server: str | None) -> dns.asyncresolver.Resolver:
    """A resolver that asks for DNSSEC status (DO, AD), so the answer's AD bit is meaningful."""
    res = dns_lookup.resolver(dns_server)
    res.use_edns(0, dns.flags.DO, 1232)
    res.flags = dns.flags.RD | dns.flags.AD
    return res


async def tlsa(res: dns.asyncresolver.Resolver, host: str, port: int = 25) -> TlsaAnswer | None:
    """``host``'s TLSA records; ``NO_DANE`` when there are none or the answer is not
    authenticated; None when the lookup failed (see ``address_secure``)."""
    try:
        answer = await res.resolve(f"_{port}._tcp.{host}", "TLSA", raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return NO_DANE
    except dns.exception.DNSException:
        return None
    if not answer.response.flags & dns.flags.AD or answer.rrset is None:
        return NO_DANE
    recs = [Tlsa(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in list(answer.rrset)[:MAX_RECORDS]]
    return TlsaAnswer(tuple(r for r in recs if usable(r)), published=True)


async def address_secure(res: dns.asyncresolver.Resolver, host: str) -> bool | None:
    """Whether ``host``'s address records are authenticated (AD), i.e. its zone is signed and
    a failed TLSA lookup must defer (RFC 7672 §2.2.2); None when this lookup fails too."""
    try:
        answer = await res.resolve(host, "A", raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return False
    except dns.exception.DNSException:
        return None
    return bool(answer.response.flags & dns.flags.AD)


def _names_host(cert: x509.Certificate, host: str) -> bool:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    host = host.rstrip(".").lower()
    for name in (n.lower().rstrip(".") for n in names):
        if name == host or (name.startswith("*.") and host.partition(".")[2] == name[2:]):
            return True
    return False


def peer_chain(obj: ssl.SSLObject) -> list[x509.Certificate]:
    """The certificates the server sent, its own first (unverified: DANE judges them)."""
    get = getattr(obj, "get_unverified_chain", None) or obj._sslobj.get_unverified_chain  # type: ignore[attr-defined]  # public from Python 3.13
    return [x509.load_der_x509_certificate(c.public_bytes(ssl._ssl.ENCODING_DER)) for c in get() or []]  # type: ignore[attr-defined]


def check(records: tuple[Tlsa, ...], chain: list[x509.Certificate], host: str) -> str | None:
    """None when ``chain`` (server certificate first) satisfies one of ``records``; else why not."""
    if not chain:
        return "the server sent no certificate"
    leaf = chain[0]
    if any(r.usage == DANE_EE and r.matches(leaf) for r in records):
        return None
    for i, anchor in enumerate(chain):
        if not any(r.usage == DANE_TA and r.matches(anchor) for r in records):
            continue
        try:
            for depth, (child, parent) in enumerate(zip(chain[:i], chain[1:i + 1])):
                child.verify_directly_issued_by(parent)
                if not _issues_at(parent, depth):  # else any leaf of the CA could sign for any host
                    raise ValueError("not a CA")
        except (InvalidSignature, ValueError, TypeError):  # TypeError: a key type it cannot check
            return "the server's chain does not lead to the DANE-TA trust anchor"
        now = datetime.datetime.now(datetime.timezone.utc)
        if not all(c.not_valid_before_utc <= now <= c.not_valid_after_utc for c in chain[:i]):
            return "the server's certificate or one of its issuers is expired or not yet valid"
        return None if _names_host(leaf, host) else f"the server's certificate does not name {host}"
    return f"no TLSA record of {host} matches the server's certificate"


def _issues_at(cert: x509.Certificate, depth: int) -> bool:
    """Whether ``cert`` may issue a certificate with ``depth`` CA certificates between it and
    the server's (RFC 5280 §4.2.1.9, §4.2.1.3): a CA, within its path length, allowed to
    sign certificates."""
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not basic.ca or (basic.path_length is not None and depth > basic.path_length):
        return False
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return True
