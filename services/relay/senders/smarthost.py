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
                             user=settings.smarthost_user, password=settings.smarthost_password,
                             verified="none" if settings.smarthost_tls == "none" else "pkix")

    async def send(self, mail_from: str, rcpts: list[str], raw: bytes,
                   require_tls: bool = False) -> dict[str, DeliveryResult]:
        """``require_tls`` holds for the hop Postline makes: to a smarthost without TLS
        (POSTLINE_SMARTHOST_TLS=none) such mail is deferred; with TLS the smarthost's
        certificate is verified (the default context) and it decides the next hop."""
        if require_tls and self.pool.tls == "none":
            refused = DeliveryResult("deferred", None, "TLS required by require_tls: the smarthost is configured "
                                     "without TLS (POSTLINE_SMARTHOST_TLS=none)", connect_error=True)
            return {r: refused for r in rcpts}
        return await self.pool.send(mail_from, rcpts, raw)

    async def close(self) -> None:
        await self.pool.close()
