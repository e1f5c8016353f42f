"""The inbound SMTP listener (aiosmtpd, POSTLINE_INBOUND_SMTP_PORT): bounces and complaints
to the bounce domain, and mail to the receiving domains of the services.

At RCPT: a valid VERP (or List-Unsubscribe) address goes to the bounce processor
(services/relay/inbound/bounce_processor.py) as before; an address at a receiving domain to
the receiver (receiver.py), within the sending IP's rate (451 4.7.1 over it); anything
else is refused — 550 5.1.1 on a bounce domain, 550 5.7.1 for a domain nobody receives for
here — except a domain set to receive but not verified (yet, or since a re-check that
missed a record): 451, so its mail waits at the sender until the domain verifies again.
Messages over POSTLINE_INBOUND_MAX_MESSAGE_BYTES are refused by aiosmtpd (552).
Events are durable before the 250; when a bounce's message is not known yet, the store is
down or anything fails, the answer is 451, so the sending server retries — nothing is lost."""
from __future__ import annotations

import asyncio
import logging
from typing import cast

from aiosmtpd.smtp import SMTP, Envelope, Session

from services.relay.inbound.bounce_processor import BounceProcessor, NotKnownYet
from services.relay.inbound.rate import PerAddressRate
from services.relay.inbound.receiver import Envelope as Received, Receiver, domain_of
from shared.runtime import Runtime

log = logging.getLogger(__name__)


def refusal_for(address: str) -> str:
    """The 550 for an address nobody takes here."""
    local = address.rpartition("@")[0].lower()
    if domain_of(address).startswith("bounces.") or local.startswith("unsubscribe+"):
        return "550 5.1.1 no such user here"
    return f"550 5.7.1 {domain_of(address) or 'this domain'} does not receive mail here"


class _Handler:
    def __init__(self, processor: BounceProcessor, receiver: Receiver, rate: PerAddressRate) -> None:
        self.p, self.receiver, self.rate = processor, receiver, rate

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.p.valid_rcpt(address):
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"
        if not await self.receiver.receives(address):
            if self.receiver.awaits_verification(address):
                return f"451 4.7.1 {domain_of(address)} is not verified here yet; try again later"
            return refusal_for(address)
        if not any(self.receiver.service_for(a) for a in envelope.rcpt_tos):  # the message's first: count it
            if not self.rate.allow(str((session.peer or ("",))[0])):
                return "451 4.7.1 too many messages from your address; try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = cast(bytes, envelope.original_content or envelope.content)  # bytes: made without decode_data
        bounces = [a for a in envelope.rcpt_tos if self.p.valid_rcpt(a)]
        receiving = [a for a in envelope.rcpt_tos if a not in bounces]
        try:
            if receiving:
                await self.receiver.handle(Received(mail_from=envelope.mail_from or "", rcpt_tos=receiving,
                                                    remote_ip=str((session.peer or ("",))[0]),
                                                    helo=session.host_name or ""), raw)
            if bounces:
                await self.p.handle(bounces, raw)
        except NotKnownYet:
            return "451 4.3.0 message not known yet, try again later"
        except Exception:
            log.exception("inbound processing failed; asking the sender to retry")
            return "451 4.3.0 temporary failure, try again later"
        return "250 2.0.0 OK"


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    """Listen until ``stop``; every connection is one aiosmtpd SMTP session."""
    s = runtime.settings
    handler = _Handler(BounceProcessor(runtime), Receiver(runtime), PerAddressRate(s.inbound_rate_per_minute))
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname=s.hostname, data_size_limit=s.inbound_max_message_bytes, enable_SMTPUTF8=True),
        host=s.http_host, port=s.inbound_smtp_port)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
