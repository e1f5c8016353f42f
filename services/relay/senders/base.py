"""What a sender does: hand one message to the next hop, one outcome per recipient."""
from __future__ import annotations

import abc

from services.relay.outcome import DeliveryResult


class Sender(abc.ABC):
    @abc.abstractmethod
    async def send(self, mail_from: str, rcpts: list[str], raw: bytes,
                   require_tls: bool = False) -> dict[str, DeliveryResult]:
        """Deliver ``raw`` to ``rcpts``: one outcome per recipient. Never raises for delivery
        failures, which are outcomes: a refused recipient is ``bounced`` (5xx) or ``deferred``
        (4xx) alone, and a next hop that cannot be reached (host down, DNS failure, inbox
        storage unusable) defers every recipient with ``smtp_code`` None. Checked for every
        sender by ``tests/services/relay/senders/test_contract.py``. ``require_tls``: only
        over certificate-verified TLS, else deferred (the service's or the send's
        ``require_tls``; docs/delivery.md)."""

    async def start(self) -> None:
        """Be ready to send (MX on Kafka: the other relays' shaping state read)."""

    async def close(self) -> None:
        """Close pooled connections."""
