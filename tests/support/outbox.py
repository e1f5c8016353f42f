"""What a webhook outbox holds, read the dispatcher's way (services/webhooks/outbox.py)."""
from __future__ import annotations

from services.webhooks.outbox import Delivery, Outbox


def due(outbox: Outbox, now: float) -> list[Delivery]:
    """Every pending delivery due at ``now``, oldest first."""
    return outbox.load([key for key, _ in outbox.due_keys(now, per_endpoint=10**9)])
