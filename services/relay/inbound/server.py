"""The inbound SMTP listener for the bounce domain (aiosmtpd, POSTLINE_INBOUND_SMTP_PORT).

Accepts mail only to valid VERP addresses and hands each message to the bounce processor
(services/relay/inbound/bounce_processor.py). The events are durable before the 250; when
the message is not known yet (or the store is down) the answer is 451, so the sending
server retries — nothing is lost."""
from __future__ import annotations

import asyncio
import logging
from typing import cast

from aiosmtpd.smtp import SMTP, Envelope, Session

from services.relay.inbound.bounce_processor import BounceProcessor, NotKnownYet
from shared.runtime import Runtime

log = logging.getLogger(__name__)


class _Handler:
    def __init__(self, processor: BounceProcessor) -> None:
        self.p = processor

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if not self.p.valid_rcpt(address):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        try:
            # bytes: the SMTP server is made without decode_data
            await self.p.handle(envelope.rcpt_tos, cast(bytes, envelope.original_content or envelope.content))
        except NotKnownYet:
            return "451 4.3.0 message not known yet, try again later"
        except Exception:
            log.exception("inbound processing failed; asking the sender to retry")
            return "451 4.3.0 temporary failure, try again later"
        return "250 2.0.0 OK"


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    """Listen until ``stop``; every connection is one aiosmtpd SMTP session."""
    handler = _Handler(BounceProcessor(runtime))
    s = runtime.settings
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname=s.hostname, data_size_limit=20 * 1024 * 1024, enable_SMTPUTF8=True),
        host=s.http_host, port=s.inbound_smtp_port)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
