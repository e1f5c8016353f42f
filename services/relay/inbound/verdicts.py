"""SPF, DKIM and DMARC verdicts of a received message, recorded with it (never used to
refuse it: the customer decides what to do with a ``fail``).

- DKIM: dkimpy verifies every ``DKIM-Signature`` (``pass`` when one verifies, ``fail`` when
  none does, ``none`` without a signature, ``temperror`` when the key could not be looked up).
- SPF: pyspf (RFC 7208) on the connecting IP, the envelope sender and the HELO name.
- DMARC: authheaders (RFC 7489): the From domain's policy and SPF/DKIM alignment.

All three read DNS through POSTLINE_DNS_SERVER when set (the tests' real DNS server), else
the system resolver. Blocking (the libraries are synchronous): run in a worker thread."""
from __future__ import annotations

from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from functools import cache, lru_cache, partial
from importlib.resources import as_file, files
from typing import Any

import authheaders
import authheaders.dmarc_lookup
import dkim
import dns.exception
import dns.resolver
import spf
from authres import DKIMAuthenticationResult, SPFAuthenticationResult
from publicsuffix2 import PublicSuffixList

DNS_TIMEOUT = 3.0


@dataclass(frozen=True)
class Verdicts:
    spf: str = "none"
    dkim: str = "none"
    dmarc: str = "none"
    dkim_domains: list[str] = field(default_factory=list)  # d= of the signatures that verified
    dmarc_policy: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"spf": self.spf, "dkim": self.dkim, "dmarc": self.dmarc, "dkim_domains": self.dkim_domains,
                "dmarc_policy": self.dmarc_policy}


def sync_resolver(dns_server: str | None) -> dns.resolver.Resolver:
    if not dns_server:
        res = dns.resolver.Resolver()
    else:
        ip, _, port = dns_server.rpartition(":")
        res = dns.resolver.Resolver(configure=False)
        res.nameservers, res.port = [ip.strip("[]")], int(port)
    res.timeout = res.lifetime = DNS_TIMEOUT
    return res


def _txt(res: dns.resolver.Resolver, name: str) -> list[bytes]:
    try:
        return [b"".join(r.strings) for r in res.resolve(name.rstrip("."), "TXT")]
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []


def _spf_lookup(res: dns.resolver.Resolver, name: str, qtype: str, strict: bool = True,
                timeout: float = DNS_TIMEOUT) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's ``DNSLookup`` (the shape of its dnspython one) over our resolver."""
    out: list[tuple[tuple[str, str], Any]] = []
    try:
        for r in res.resolve(name, qtype):
            if qtype in ("A", "AAAA"):
                out.append(((name, qtype), r.address))
            elif qtype == "MX":
                out.append(((name, qtype), (r.preference, r.exchange)))
            elif qtype == "PTR":
                out.append(((name, qtype), r.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                out.append(((name, qtype), r.strings))
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
        pass
    except dns.exception.DNSException as exc:
        raise spf.TempError(f"DNS {exc}") from exc
    return out


@cache
def _suffix_list() -> PublicSuffixList:
    with as_file(files("authheaders") / "public_suffix_list.txt") as path, open(path, encoding="utf-8") as f:
        return PublicSuffixList(f)


@lru_cache(maxsize=8192)
def _org_domain(domain: str) -> str:
    """authheaders' organisational domain, from the same bundled Public Suffix List."""
    return str(_suffix_list().get_public_suffix(domain))


# authheaders parses the whole Public Suffix List again on every organisational-domain lookup
# (~300 ms, three per DMARC check: measured 0.93 s per message); the process keeps one parsed
# list and the answers instead. Same list, same function, same results.
authheaders.get_org_domain = authheaders.dmarc_lookup.get_org_domain = _org_domain


class Judge:
    """Judges messages against one resolver (POSTLINE_DNS_SERVER)."""

    def __init__(self, dns_server: str | None) -> None:
        self.res = sync_resolver(dns_server)
        # pyspf reads DNS through its module's DNSLookup function, which has no resolver
        # argument: every SPF check of this process goes through the configured server.
        spf.DNSLookup = partial(_spf_lookup, self.res)

    def _dkim_key(self, name: bytes, timeout: float = 5) -> bytes | None:
        values = _txt(self.res, name.decode())
        return values[0] if values else None

    def _dmarc_txt(self, name: str) -> str | None:
        """authheaders' DNS function: the DMARC record at ``name`` as one string."""
        try:
            values = [v.decode(errors="replace") for v in _txt(self.res, name)]
        except dns.exception.DNSException:
            return None
        return next((v for v in values if v.lower().startswith("v=dmarc1")), values[0] if values else None)

    def dkim(self, raw: bytes) -> tuple[str, list[str]]:
        """(verdict, d= of each verified signature)."""
        headers = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].lower()
        count = headers.count(b"dkim-signature:")
        if not count:
            return "none", []
        passed, temporary = [], False
        for idx in range(count):
            d = dkim.DKIM(raw)
            try:
                if d.verify(idx=idx, dnsfunc=self._dkim_key):
                    passed.append((d.domain or b"").decode(errors="replace").lower())
            except dns.exception.DNSException:
                temporary = True
            except Exception:  # a malformed signature is a failed one
                pass
        if passed:
            return "pass", passed
        return ("temperror" if temporary else "fail"), []

    def spf(self, ip: str, mail_from: str, helo: str) -> str:
        try:
            result, _ = spf.check2(i=ip, s=mail_from, h=helo or "unknown", querytime=10)
        except Exception:
            return "temperror"
        return str(result or "none")

    def dmarc(self, raw: bytes, spf_result: str, mail_from: str, dkim_domains: list[str]) -> tuple[str, str | None]:
        from_domains = [a.rpartition("@")[2].lower() for _, a in getaddresses(_from_headers(raw)) if "@" in a]
        spf_res = SPFAuthenticationResult(result=spf_result, smtp_mailfrom=mail_from or None)
        aligned = [d for d in dkim_domains if from_domains and d == from_domains[0]]
        dkim_res = DKIMAuthenticationResult(result="pass", header_d=(aligned or dkim_domains)[0]) if dkim_domains \
            else DKIMAuthenticationResult(result="fail", header_d="")
        try:
            res = authheaders.check_dmarc(raw, spf_res, dkim_res, dnsfunc=self._dmarc_txt)
        except Exception:
            return "temperror", None
        return str(res.result or "none"), getattr(res, "policy", None) or None

    def judge(self, raw: bytes, ip: str, mail_from: str, helo: str) -> Verdicts:
        """All three verdicts of one message. Never raises."""
        dkim_verdict, domains = self.dkim(raw)
        spf_verdict = self.spf(ip, mail_from, helo)
        dmarc_verdict, policy = self.dmarc(raw, spf_verdict, mail_from, domains)
        return Verdicts(spf=spf_verdict, dkim=dkim_verdict, dmarc=dmarc_verdict, dkim_domains=domains,
                        dmarc_policy=policy)


def _from_headers(raw: bytes) -> list[str]:
    head = BytesHeaderParser().parsebytes(raw, headersonly=True)
    return [str(v) for v in head.get_all("From") or []]
