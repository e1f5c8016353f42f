"""Received mail past its service's retention is deleted (docs/receiving.md).

Each message was stored with ``expires_at`` = arrival + the service's
``receiving_retention_days`` (default 30). Reads skip expired rows at once; the tables' TTL
drops them at ClickHouse's next merge; this duty deletes them every ``PURGE_INTERVAL`` so
the data is gone within the hour whatever the merges do. A housekeeping duty: one per data
dir (embedded) or per relay pod (Kafka; the deletes are idempotent)."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from shared import events as ev
from shared.runtime import Runtime
from shared.store import received
from shared.store.port import StoreError

log = logging.getLogger(__name__)
PURGE_INTERVAL = 3600.0


async def run_received_retention(runtime: Runtime, stop: asyncio.Event, interval: float = PURGE_INTERVAL) -> None:
    """Purge expired received mail every ``interval`` seconds until ``stop``; a store that is
    down is tried again at the next round."""
    while not stop.is_set():
        if runtime.store is not None:
            try:
                await received.purge_expired(runtime.store, ev.utcnow())
            except StoreError as exc:  # down, or refused: logged, tried again next round
                log.warning("received-mail retention failed (%s): %s; next try in %.0f s", exc.dependency, exc, interval)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
