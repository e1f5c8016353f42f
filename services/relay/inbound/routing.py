"""Routing rules for received mail (docs/receiving.md): which webhooks get a message, and
where it is forwarded.

A rule's ``pattern`` is an address glob (``help@acme.com``, ``*@acme.com``,
``support+*@acme.com``; ``*`` and ``?`` as in shell globs, case-insensitive) matched against
each address the message was received for. No rule matches: every webhook subscribed to
``email.received`` gets it and nothing is forwarded (receiving without rules). Rules match:
the webhooks are those the matching rules name (a rule naming none: every subscribed one),
and the message is forwarded to every address they list.

A forward goes out through the normal send pipeline: a ``send-requested`` on
``email.requests`` with the message as received (the way SMTP submission sends a client's
bytes), signed by the relay with the receiving domain's DKIM keys, its envelope sender the
VERP return path on the domain's bounce domain — what SRS is for: the destination's SPF
check sees Postline's own domain, and a bounce comes back here, where it is recorded on the
forward's email id instead of being sent on to the original sender (backscatter)."""
from __future__ import annotations

import base64
import fnmatch
from dataclasses import dataclass, field

from shared import events as ev

FORWARD_MARK = "X-Postline-Forwarded"
MAX_HOPS = 3  # a message already forwarded this many times by Postline is not forwarded again (loops)


@dataclass(frozen=True)
class Route:
    webhook_ids: list[str] | None = None  # None: every subscribed webhook
    forward_to: list[str] = field(default_factory=list)


def matches(pattern: str, address: str) -> bool:
    return fnmatch.fnmatchcase(address.lower(), pattern.lower())


def route(rules: list[ev.ReceivingRuleSaved], rcpts: list[str]) -> Route:
    """The decision for a message received for ``rcpts`` under ``rules`` (oldest first)."""
    hits = [r for r in rules if any(matches(r.pattern, a) for a in rcpts)]
    if not hits:
        return Route()
    if any(r.webhook_ids is None for r in hits):
        webhooks = None
    else:
        webhooks = sorted({w for r in hits for w in r.webhook_ids or []})
    forwards = list(dict.fromkeys(a for r in hits for a in r.forward_to))
    return Route(webhooks, forwards)


def hops(raw: bytes) -> int:
    """How many times Postline already forwarded this message (its marks in the header)."""
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    return head.count(b"\n" + FORWARD_MARK.lower().encode() + b":") + head.startswith(FORWARD_MARK.lower().encode() + b":")


def forward_request(svc: ev.ServiceSaved, domain: ev.DomainSaved, received_id: str, from_: str, subject: str,
                    raw: bytes, to: str) -> ev.SendRequested:
    """The send request forwarding ``raw`` (the message as received) to ``to``, signed by
    ``domain``. Its id derives from the received email and the address, so a retried
    delivery to us forwards once. It goes out as the service's other mail does: only over
    verified TLS when the service requires it."""
    marked = f"{FORWARD_MARK}: {received_id}\r\n".encode() + raw
    return ev.SendRequested(workspace_id=svc.workspace_id, service_id=svc.service_id,
                            email_id=ev.derived_id(received_id, "forward", to.lower()), mode="production",
                            sending_domain=domain.domain, to=[to], recipients=[to], subject=subject,
                            raw_mime=base64.b64encode(marked).decode(), require_tls=svc.require_tls, **{"from": from_})
