"""Smarthost sender: everything goes to one relay host (POSTLINE_SMARTHOST)."""
from __future__ import annotations

from typing import cast

from services.relay.outcome import DeliveryResult
from services.relay.senders.base import Sender
from services.relay.senders.smtp_pool import SmtpPool
from shared.settings import Settings


class SmarthostSender(Sender):
    def __init__(self, settings: Settings) -> None:
        host, _, port = cast(str, settings.smarthost).rpartition(":")  # set with delivery=smarthost
        self.pool = SmtpPool(host, int(port), size=min(16, settings.relay_concurrency), tls=settings.smarthost_tls,
                             user=settings.smarthost_user, password=settings.smarthost_password)

    async def send(self, mail_from: str, rcpts: list[str], raw: bytes) -> dict[str, DeliveryResult]:
        return await self.pool.send(mail_from, rcpts, raw)

    async def close(self) -> None:
        await self.pool.close()
