"""Dev-inbox sender: captures the message instead of sending it (embedded default)."""
from __future__ import annotations

import sqlite3

from services.relay.outcome import DeliveryResult
from services.relay.senders.base import Sender
from shared.devinbox import DevInbox


class InboxSender(Sender):
    def __init__(self, inbox: DevInbox) -> None:
        self.inbox = inbox

    async def send(self, mail_from: str, rcpts: list[str], raw: bytes,
                   require_tls: bool = False) -> dict[str, DeliveryResult]:
        try:
            mid = await self.inbox.store(mail_from, rcpts, raw)
        except (OSError, sqlite3.Error) as exc:  # the inbox is this sender's next hop: down → try later
            down = DeliveryResult("deferred", None, f"dev inbox unavailable: {type(exc).__name__}: {exc}", "dev-inbox")
            return {r: down for r in rcpts}
        ok = DeliveryResult("delivered", 250, f"2.0.0 captured in dev inbox as {mid}", "dev-inbox")
        return {r: ok for r in rcpts}
