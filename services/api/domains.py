"""Domain records to publish and their verification against live DNS."""
from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import idna

from shared import events as ev
from shared.dkim_keys import split_txt, txt_value
from shared.dns_lookup import mx, resolver, txt
from shared.settings import Settings

DOMAIN_RE = re.compile(r"^(?=.{3,253}\Z)(?!-)([a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}\Z")


# the DKIM records' names (``plr<6>._domainkey.<domain>``, shared/dkim_keys.py) must fit DNS's 253
MAX_DOMAIN_LENGTH = 253 - len("plr000000._domainkey.")


def normalise_domain(value: str) -> str | None:
    """Lower-case, IDN → A-labels as the send API reads an address at it (IDNA 2008 with
    UTS #46, email-validator's rules: ``xn--zz`` is no label); None if not a valid domain
    name, or one too long for its DKIM records' names."""
    value = value.strip().rstrip(".").lower()
    try:
        value = idna.encode(value, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None
    return value if len(value) <= MAX_DOMAIN_LENGTH and DOMAIN_RE.match(value) else None


LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


def normalise_return_path(value: str, domain: str) -> str:
    """The return-path label(s) under ``domain`` (``em`` → ``em.<domain>``); ValueError naming the rule."""
    label = value.strip().rstrip(".").lower()
    if label.endswith("." + domain):  # given as the full host name
        label = label[:-len(domain) - 1]
    if not label or not all(LABEL_RE.match(part) for part in label.split(".")) or \
            normalise_domain(f"{label}.{domain}") is None:
        raise ValueError(f"return_path: {value!r} must be a subdomain label like \"em\" (giving em.{domain})")
    return label


def dkim_records(domain: str, keys: dict[str, str], dkim_set: str, required: bool) -> list[dict]:
    """The two DKIM TXT records of one key set (``rsa_selector``, ``rsa_public_b64``, …)."""
    out = []
    for k, algo in (("rsa", "rsa"), ("ed", "ed25519")):
        value = txt_value(algo, keys[f"{k}_public_b64"])
        out.append({"record": "DKIM", "type": "TXT", "name": f"{keys[f'{k}_selector']}._domainkey.{domain}",
                    "value": value, "value_strings": split_txt(value), "required": required, "dkim_set": dkim_set})
    return out


def current_keys(d: ev.DomainSaved) -> dict[str, str]:
    return {"rsa_selector": d.rsa_selector, "rsa_public_b64": d.rsa_public_b64,
            "ed_selector": d.ed_selector, "ed_public_b64": d.ed_public_b64}


def records(d: ev.DomainSaved, settings: Settings) -> list[dict]:
    """The DNS records for ``d``, as a user pastes them into a registrar. During a DKIM
    rotation both sets are listed: ``dkim_set`` ``pending`` (publish it: signing moves to it
    once verification finds it) and ``retiring`` (keep it until ``retiring_until``, so
    mail signed before the switch still verifies)."""
    out = [
        {"record": "SPF", "type": "TXT", "name": d.domain, "value": f"v=spf1 include:{settings.spf_domain} ~all",
         "required": True},
        *dkim_records(d.domain, current_keys(d), "current", True),
        *(dkim_records(d.domain, d.pending_dkim, "pending", False) if d.pending_dkim else []),
        *(dkim_records(d.domain, d.retiring_dkim, "retiring", False)
          if d.retiring_dkim and d.retiring_until and d.retiring_until > ev.utcnow() else []),
        {"record": "DMARC", "type": "TXT", "name": f"_dmarc.{d.domain}",
         "value": f"v=DMARC1; p=none; rua=mailto:dmarc@{d.domain}", "required": False},
        {"record": "MX", "type": "MX", "name": d.bounce_domain, "value": f"10 {settings.hostname}",
         "required": False},
        {"record": "RETURN_PATH", "type": "TXT", "name": d.bounce_domain,
         "value": f"v=spf1 include:{settings.spf_domain} ~all", "required": False},
    ]
    if d.receiving:  # mail to the domain itself comes to the inbound listener (docs/receiving.md)
        out.append({"record": "RECEIVING", "type": "MX", "name": d.domain, "value": f"10 {settings.hostname}",
                    "required": True})
    if d.tracking_host:
        out.append({"record": "TRACKING", "type": "CNAME", "name": d.tracking_host,
                    "value": tracking_target(settings), "required": False})
    return out


def tracking_target(settings: Settings) -> str:
    """What a domain's tracking host is a CNAME to: the host of POSTLINE_PUBLIC_URL, or
    POSTLINE_HOSTNAME when that is an IP address (a CNAME cannot point at an address)."""
    host = urlsplit(settings.base_url).hostname or settings.hostname
    try:
        ipaddress.ip_address(host)
        return settings.hostname
    except ValueError:
        return host


def normalise_tracking_host(value: str, domain: str) -> str:
    """``value`` as a host name under ``domain``; ValueError naming the rule otherwise."""
    host = normalise_domain(value)
    if host is None or not host.endswith("." + domain):
        raise ValueError(f"tracking_host: {value!r} must be a host name under {domain}, like track.{domain}")
    return host


def _dkim_p(value: str) -> str | None:
    for part in value.replace(" ", "").split(";"):
        if part.startswith("p="):
            return part[2:]
    return None


def _check(record: dict, seen: list[str] | None, settings: Settings) -> dict:
    result = {"record": record["record"], "name": record["name"], "expected": record["value"],
              "seen": seen or [], **({"dkim_set": record["dkim_set"]} if "dkim_set" in record else {})}
    if seen is None:
        return {**result, "status": "error", "detail": "DNS lookup failed"}
    kind = record["record"]
    if kind in ("SPF", "RETURN_PATH"):  # RETURN_PATH: the SPF record of the bounce domain (DMARC SPF alignment)
        spf = [v for v in seen if v.lower().startswith("v=spf1")]
        ok = any(f"include:{settings.spf_domain}" in v.split() for v in spf)
        status = "found" if ok else ("mismatch" if spf else "missing")
    elif kind == "DKIM":
        keys = [v for v in seen if "p=" in v.replace(" ", "")]
        ok = any(_dkim_p(v) == _dkim_p(record["value"]) for v in keys)
        status = "found" if ok else ("mismatch" if keys else "missing")
    elif kind in ("RECEIVING", "MX"):  # an MX record: any preference, our host among the exchanges
        hosts = [v.split()[-1].rstrip(".").lower() for v in seen]
        status = "found" if settings.hostname.lower() in hosts else ("mismatch" if hosts else "missing")
    else:  # DMARC
        dmarc = [v for v in seen if v.replace(" ", "").lower().startswith("v=dmarc1")]
        status = "found" if dmarc else "missing"
    return {**result, "status": status}


async def verify(d: ev.DomainSaved, settings: Settings) -> tuple[bool, list[dict]]:
    """Look every TXT record (and, for a receiving domain, its MX) up now; verified when SPF
    and both DKIM keys match. The MX check is reported in ``checks`` (``RECEIVING``): mail
    comes only where the MX points, so receiving does not wait for it."""
    res = resolver(settings.dns_server)
    checks = []
    for record in records(d, settings):
        if record["type"] == "TXT":
            checks.append(_check(record, await txt(res, record["name"]), settings))
        elif record["type"] == "MX":  # RECEIVING, and the bounce domain's MX (reported, not required)
            hosts = await mx(res, record["name"])
            checks.append(_check(record, None if hosts is None else [f"{p} {h}" for p, h in hosts], settings))
    verified = all(c["status"] == "found" for c in checks if c["record"] == "SPF" or c.get("dkim_set") == "current")
    return verified, checks
