"""The inbound bounce processor: a report mailed to the bounce domain → events and suppressions.

Each recipient is a VERP address (a signed token) naming (message, recipient), or the whole
message when one transaction carried several recipients (the report's recipient fields then
say which: ``reported_recipients``). The report
is parsed and emits ``bounced`` / ``complained``, adding the recipient to the service's
suppression list for hard bounces, complaints, and the third soft bounce within 7 days.
Mail to ``unsubscribe+<token>@`` (the List-Unsubscribe ``mailto:``) is an unsubscribe,
whatever it contains: ``unsubscribed`` and a suppression. Events are durable when
``handle`` returns. Unparseable mail is kept under ``<data dir>/inbound/unparsed`` for
inspection. The SMTP side is services/relay/inbound/server.py."""
from __future__ import annotations

import time
from pathlib import Path

from services.relay.bounce_class import classify
from services.relay.inbound.parse import Report, parse
from services.relay.suppress import Suppressor
from shared import events as ev
from shared.runtime import Runtime
from shared.store import queries
from shared.verp import ALL, parse_token, token_of, unsubscribe_token_of


def reported_recipients(msg: dict, report: Report) -> list[str]:
    """The message's recipients a report names, for a message-wide return path (one
    transaction carried several recipients): the DSN's Final-/Original-Recipient fields, or
    an ARF report's Original-Rcpt-To. A report naming none of them names nobody (kept)."""
    ours = {r.lower(): r for r in ev.recipients_in_order(msg)}
    named = [r.recipient for r in report.recipients] + [report.original_recipient]
    return list(dict.fromkeys(ours[n.lower()] for n in named if n and n.lower() in ours))


class NotKnownYet(Exception):
    """The message a report is about is not in the analytics store yet (or the store is
    down): the SMTP server answers 451 so the sending server retries later."""


class BounceProcessor:
    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.key = runtime.settings.master_key
        self.unparsed = Path(runtime.settings.data_dir) / "inbound" / "unparsed"
        self.suppressor = Suppressor(runtime.control, runtime.store)

    def valid_rcpt(self, address: str) -> bool:
        token = token_of(address) or unsubscribe_token_of(address)
        return bool(token and parse_token(self.key, token))

    async def message(self, email_id: str) -> dict:
        """The message's request payload; ``NotKnownYet`` while it is not in the store."""
        if self.rt.store is None:
            raise NotKnownYet("no analytics store")
        msg = await queries.message_by_id(self.rt.store, email_id)
        if msg is None:
            raise NotKnownYet(email_id)
        return msg

    async def handle(self, rcpt_tos: list[str], raw: bytes) -> list[ev.Event]:
        """Process one inbound message; returns what was emitted (durable on return)."""
        report = parse(raw)
        emitted: list[ev.Event] = []
        for address in rcpt_tos:
            unsubscribing = unsubscribe_token_of(address) is not None
            parsed = parse_token(self.key, token_of(address) or unsubscribe_token_of(address) or "")
            if parsed is None:  # RCPT accepted only valid tokens (server.py): a bug, answered 451
                raise ValueError(f"not a bounce or unsubscribe address: {address}")
            email_id, index = parsed
            msg = await self.message(email_id)
            if index is ALL:
                rcpts = reported_recipients(msg, report)
            else:
                rcpts = [r] if (r := ev.recipient_at(msg, index)) is not None else []
            if unsubscribing and index is not ALL and rcpts:  # whatever the mail says: RFC 2369 mailto: unsubscribe
                emitted += await self.unsubscribe(msg, rcpts[0])
                continue
            if not rcpts or report.kind == "unknown":
                self.keep(raw, address)
                continue
            for rcpt in rcpts:
                emitted += await self.apply(msg, rcpt, report)
        return emitted

    async def apply(self, msg: dict, rcpt: str, report: Report) -> list[ev.Event]:
        """Emit the event a report makes, durably, then apply the suppression rules to it. A
        DSN that says ``Action: delayed`` is ``deferred`` (Resend's ``delivery_delayed``), not a
        bounce: the server that sent it still holds the message and keeps trying, so it says
        nothing about the address and counts toward no suppression."""
        common = {**ev.lifecycle_fields(msg), "recipient": rcpt}
        event: ev.Complained | ev.Bounced | ev.Deferred
        if report.kind == "complaint":
            event = ev.Complained(id=ev.derived_id(msg["email_id"], rcpt, "complained"),
                                  feedback_type=report.feedback_type, **common)
            cls, detail = None, report.feedback_type
        else:
            r = next((x for x in report.recipients if x.recipient and x.recipient.lower() == rcpt.lower()),
                     report.recipients[0])
            if r.bounce_type is None:
                return []
            # the DSN's Status field is the enhanced code, its Diagnostic-Code the server's reply
            reply = f"{r.status or ''} {r.diagnostic or ''}".strip()
            if r.action == "delayed":
                delayed = ev.Deferred(id=ev.derived_id(msg["email_id"], rcpt, "deferred", "dsn", r.status or ""),
                                      smtp_code=r.smtp_code, smtp_reply=reply[:1000], **common)
                await self.rt.log.append_many(ev.Topic.EVENTS, [(msg["email_id"], ev.encode(delayed))])
                return [delayed]
            cls, detail = classify(r.smtp_code, reply, permanent=r.bounce_type == "hard"), None
            event = ev.Bounced(id=ev.derived_id(msg["email_id"], rcpt, "bounced", r.status or r.bounce_type),
                               bounce_type=cls.bounce_type, bounce_class=cls.bounce_class, smtp_code=r.smtp_code,
                               smtp_reply=reply[:1000], **common)
        await self.rt.log.append_many(ev.Topic.EVENTS, [(msg["email_id"], ev.encode(event))])
        await self.suppressor.apply(event, cls, detail)
        return [event]

    async def unsubscribe(self, msg: dict, rcpt: str) -> list[ev.Event]:
        """Mail to a List-Unsubscribe ``mailto:`` address: ``unsubscribed`` (the same event
        id as the one-click POST, so using both counts once) and a suppression."""
        # with the message's from, subject and tags, as every lifecycle event
        out: list[ev.Event] = [ev.Unsubscribed(id=ev.derived_id(msg["email_id"], rcpt, "unsubscribed"), recipient=rcpt,
                                               **ev.lifecycle_fields(msg))]
        await self.rt.log.append_many(ev.Topic.EVENTS, [(msg["email_id"], ev.encode(e)) for e in out])
        await self.rt.control.suppress(msg["workspace_id"], msg["service_id"], rcpt, "unsubscribe",
                                       "List-Unsubscribe mailto:", msg["email_id"])
        return out

    def keep(self, raw: bytes, address: str) -> None:
        self.unparsed.mkdir(parents=True, exist_ok=True)
        (self.unparsed / f"{time.time():.6f}-{(token_of(address) or 'x')[:40]}.eml").write_bytes(raw)
