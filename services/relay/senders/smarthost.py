"""Smarthost sender: everything goes to one relay host (POSTLINE_SMARTHOST)."""
from __future__ import annotations

import logging
from typing import cast

from services.relay.outcome import DeliveryResult
from services.relay.senders.base import Sender
from services.relay.senders.smtp_pool import SmtpPool
from shared.settings import Settings

log = logging.getLogger(__name__)


class SmarthostSender(Sender):
    """``POSTLINE_SMARTHOST_TLS=none`` with a login (``POSTLINE_SMARTHOST_USER``): the
    password must not cross the network in clear when it need not, so STARTTLS is used when
    the smarthost offers it (its certificate not verified, as between MX hosts: that takes
    ``starttls``); a smarthost that does not offer it still gets the login, and the start-up
    says so once."""

    def __init__(self, settings: Settings) -> None:
        host, _, port = cast(str, settings.smarthost).rpartition(":")  # set with delivery=smarthost
        self.encrypted = settings.smarthost_tls != "none"  # as configured: what require_tls can rely on
        tls: str = settings.smarthost_tls
        if tls == "none" and settings.smarthost_user:
            tls = "opportunistic"
            log.warning("POSTLINE_SMARTHOST_USER is set without POSTLINE_SMARTHOST_TLS: the login uses STARTTLS "
                        "when %s offers it (certificate not verified) and is sent in clear when it does not; set "
                        "POSTLINE_SMARTHOST_TLS=starttls or tls", settings.smarthost)
        self.pool = SmtpPool(host, int(port), size=min(16, settings.relay_concurrency), tls=tls,
                             user=settings.smarthost_user, password=settings.smarthost_password,
                             verified="pkix" if self.encrypted else "none")

    async def send(self, mail_from: str, rcpts: list[str], raw: bytes,
                   require_tls: bool = False) -> dict[str, DeliveryResult]:
        """``require_tls`` holds for the hop Postline makes: to a smarthost without TLS
        (POSTLINE_SMARTHOST_TLS=none) such mail is deferred; with TLS the smarthost's
        certificate is verified (the default context) and it decides the next hop."""
        if require_tls and not self.encrypted:
            refused = DeliveryResult("deferred", None, "TLS required by require_tls: the smarthost is configured "
                                     "without TLS (POSTLINE_SMARTHOST_TLS=none)", connect_error=True)
            return {r: refused for r in rcpts}
        return await self.pool.send(mail_from, rcpts, raw)

    async def close(self) -> None:
        await self.pool.close()
