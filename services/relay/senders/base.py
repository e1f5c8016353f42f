"""What a sender does: hand one message to the next hop, one outcome per recipient."""
from __future__ import annotations

import abc

from services.relay.outcome import DeliveryResult


class Sender(abc.ABC):
    @abc.abstractmethod
    async def send(self, mail_from: str, rcpts: list[str], raw: bytes) -> dict[str, DeliveryResult]:
        """Deliver ``raw`` to ``rcpts``; never raises for delivery failures (they are outcomes)."""

    async def close(self) -> None:
        """Close pooled connections."""
