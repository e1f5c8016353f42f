"""Smarthost sender: everything goes to one relay host (POSTLINE_SMARTHOST)."""
from __future__ import annotations

from services.relay.senders.base import Sender
from services.relay.senders.smtp_pool import SmtpPool


class SmarthostSender(Sender):
    def __init__(self, settings):
        host, _, port = settings.smarthost.rpartition(":")
        self.pool = SmtpPool(host, int(port), size=min(16, settings.relay_concurrency), tls=settings.smarthost_tls,
                             user=settings.smarthost_user, password=settings.smarthost_password)

    async def send(self, mail_from, rcpts, raw):
        return await self.pool.send(mail_from, rcpts, raw)

    async def close(self):
        await self.pool.close()
