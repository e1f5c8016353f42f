"""Mail to a receiving domain → parsed, judged, stored, announced (docs/receiving.md).

A message is handled once per service it reaches (one envelope may name addresses at
receiving domains of several services; each gets its own copy and id). The steps:
parse (received_mail.py) → judge (verdicts.py: SPF, DKIM, DMARC) → store the message and its
attachments (shared/store/received.py) → route (routing.py: which webhooks, which forwards)
→ append the forwards' send requests, then ``email.received`` (references only) → the SMTP
server answers 250. A failure before the append is a 451: the sender retries, and
the same bytes for the same service get the same id, so a retry stores and announces
nothing twice (the store and every consumer deduplicate on the ids)."""
from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from services.relay.inbound import routing
from services.relay.inbound.received_mail import ParsedMail, parse_mail
from services.relay.inbound.verdicts import Judge, Verdicts
from shared import events as ev
from shared.control.errors import ControlBehind
from shared.runtime import Runtime
from shared.store import received

log = logging.getLogger(__name__)


class StoreMissing(Exception):
    """This process has no analytics store: received mail cannot be kept (answered 451)."""


@dataclass(frozen=True)
class Envelope:
    """What the SMTP session knew about the message."""

    mail_from: str
    rcpt_tos: list[str]
    remote_ip: str
    helo: str


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


class Receiver:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.judge = Judge(runtime.settings.dns_server)

    def service_for(self, address: str) -> ev.ServiceSaved | None:
        """The service that receives mail for ``address``'s domain (None: nobody here)."""
        d = self.rt.control.state.receiving_domain(domain_of(address))
        svc = self.rt.control.state.services.get(d.service_id) if d is not None else None
        return svc if svc is not None and not svc.deleted else None

    def awaits_verification(self, address: str) -> bool:
        """Whether ``address``'s domain is set to receive here but not verified (yet, or any
        more: a re-check that missed a record). Mail for it is deferred, not refused: only
        the domain's owner can point its MX here, so it is the owner's mail, and it arrives
        once the domain verifies again."""
        return bool(self.rt.control.state.receiving_claims(domain_of(address)))

    async def receives(self, address: str) -> bool:
        """Whether some service receives mail for ``address``, as of now: an unknown domain is
        looked up again after catching up with the control log, so a domain that was just
        switched to receiving (on any process) is not refused."""
        if self.service_for(address) is not None:
            return True
        try:
            await self.rt.control.catch_up()
        except ControlBehind:
            return False
        return self.service_for(address) is not None

    async def handle(self, env: Envelope, raw: bytes) -> list[ev.EmailReceived]:
        """Process one message for the receiving recipients in ``env``; durable on return."""
        if self.rt.store is None:
            raise StoreMissing("no analytics store in this process")
        by_service: dict[str, list[str]] = {}
        services: dict[str, ev.ServiceSaved] = {}
        for rcpt in env.rcpt_tos:
            svc = self.service_for(rcpt)
            if svc is not None:
                by_service.setdefault(svc.service_id, []).append(rcpt)
                services[svc.service_id] = svc
        if not by_service:
            return []
        parsed = await asyncio.to_thread(parse_mail, raw)
        verdicts = await asyncio.to_thread(self.judge.judge, raw, env.remote_ip, env.mail_from, env.helo)
        digest = hashlib.sha256(raw).hexdigest()
        out = []
        for sid, rcpts in by_service.items():
            event = await self.keep(services[sid], rcpts, env, raw, parsed, verdicts, digest)
            out.append(await self.route(services[sid], rcpts, raw, event))
        await self.rt.log.append_many(ev.Topic.EVENTS, [(e.email_id, ev.encode(e)) for e in out])
        return out

    async def route(self, svc: ev.ServiceSaved, rcpts: list[str], raw: bytes, event: ev.EmailReceived) -> ev.EmailReceived:
        """Apply the service's routing rules: append the forwards (durable) and return the
        event with the decision (its webhooks, its forwards' ids)."""
        decision = routing.route(self.rt.control.state.receiving_rules_of(svc.service_id), rcpts)
        domain = self.rt.control.state.receiving_domain(domain_of(rcpts[0]))
        forwards = []
        if decision.forward_to and routing.hops(raw) < routing.MAX_HOPS:
            if domain is not None and domain.verified:  # forwards are DKIM-signed by the receiving domain
                forwards = [routing.forward_request(svc, domain, event.email_id, event.from_, event.subject, raw, to)
                            for to in decision.forward_to]
            else:
                log.warning("received email %s: not forwarded, %s is not verified (forwards are DKIM-signed)",
                            event.email_id, domain.domain if domain else "its domain")
        if forwards:
            await self.rt.log.append_many(ev.Topic.REQUESTS, [(f.email_id, ev.encode(f)) for f in forwards])
        return event.model_copy(update={"webhook_ids": decision.webhook_ids, "forwards": [f.email_id for f in forwards]})

    async def keep(self, svc: ev.ServiceSaved, rcpts: list[str], env: Envelope, raw: bytes, parsed: ParsedMail,
                   verdicts: Verdicts, digest: str) -> ev.EmailReceived:
        """Store one service's copy; the event announcing it (not yet appended)."""
        email_id = ev.derived_id("received", svc.service_id, digest)
        now = ev.utcnow()
        attachments = [ev.ReceivedAttachment(id=ev.derived_id(email_id, i), filename=a.filename,
                                             content_type=a.content_type, content_id=a.content_id,
                                             content_disposition="inline" if a.disposition == "inline" else "attachment",
                                             size=len(a.data))
                       for i, a in enumerate(parsed.attachments)]
        message = stored_message(svc, email_id, now.isoformat(), rcpts, env, raw, parsed, verdicts, attachments)
        assert self.rt.store is not None  # handle checked it
        await received.save(self.rt.store, message, {m.id: a.data for m, a in zip(attachments, parsed.attachments)},
                            now + timedelta(days=svc.receiving_retention_days))
        return ev.EmailReceived(id=ev.derived_id(email_id, "email.received"), time=now, workspace_id=svc.workspace_id,
                                service_id=svc.service_id, email_id=email_id, to=parsed.to, cc=parsed.cc,
                                received_for=rcpts, subject=parsed.subject, message_id=parsed.message_id,
                                attachments=attachments, size=len(raw), spf=verdicts.spf, dkim=verdicts.dkim,
                                dmarc=verdicts.dmarc, **{"from": parsed.from_ or env.mail_from})


def stored_message(svc: ev.ServiceSaved, email_id: str, created_at: str, rcpts: list[str], env: Envelope, raw: bytes,
                   parsed: ParsedMail, verdicts: Verdicts, attachments: list[ev.ReceivedAttachment]) -> dict[str, object]:
    """The message as the receiving API answers it (Resend's received email, plus Postline's
    threading, envelope and verdict fields); its attachments' bytes are stored beside it."""
    return {
        "object": "email", "id": email_id, "workspace_id": svc.workspace_id, "service_id": svc.service_id,
        "created_at": created_at, "from": parsed.from_ or env.mail_from, "to": parsed.to, "cc": parsed.cc, "bcc": [],
        "reply_to": parsed.reply_to, "received_for": rcpts, "subject": parsed.subject, "html": parsed.html,
        "text": parsed.text, "headers": parsed.headers, "message_id": parsed.message_id,
        "in_reply_to": parsed.in_reply_to, "references": parsed.references,
        "attachments": [a.model_dump() for a in attachments], "size": len(raw),
        "envelope": {"mail_from": env.mail_from, "rcpt_to": rcpts, "remote_ip": env.remote_ip, "helo": env.helo},
        "verdicts": verdicts.as_dict(),
    }
