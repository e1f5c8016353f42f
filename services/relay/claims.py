"""One delivery of a message at a time in a relay process.

Two copies of one request can reach a relay together — an ``Idempotency-Key`` duplicate
accepted by two API processes gets the same derived email id, and both copies can land in
one consumer batch, whose records are handled concurrently (services/relay/runner.py). The
ledger alone cannot stop the second: neither copy finds an outcome before the first has
one. So a request holds its email id while it is processed; a second copy waits, then
finds the first's final outcomes in the ledger and emits them again instead of sending.
(Copies on different relays cannot happen: one email id is one partition, one owner.)"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator


class Claims:
    """Email ids being processed; ``hold`` waits while another request holds the same id."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # id → (its lock, [holders + waiters])

    @contextlib.asynccontextmanager
    async def hold(self, email_id: str) -> AsyncIterator[None]:
        """Hold ``email_id`` for the block; waits (never raises) while another holds it."""
        lock, users = self._held.setdefault(email_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._held[email_id]

    def __len__(self) -> int:
        return len(self._held)
