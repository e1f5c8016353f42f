"""Reading a whole topic and following it, for the topics every replica reads in full (no
consumer group): the rate counts (shared/quota/gossip.py) and the relays' shaping state
(services/relay/shaping/gossip.py)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from shared.log.port import Consumer, Record

log = logging.getLogger(__name__)
START_TIMEOUT = 30.0  # seconds a start reads what was published before it follows anyway


async def read_up_to_now(consumer: Consumer, apply: Callable[[list[Record]], None]) -> None:
    """``apply`` every record published up to now (bounded by ``START_TIMEOUT``)."""
    deadline = time.monotonic() + START_TIMEOUT
    while not await consumer.caught_up() and time.monotonic() < deadline:
        apply(await consumer.poll(max_records=5000, timeout=0.2))


async def follow(consumer: Consumer, apply: Callable[[list[Record]], None], what: str) -> None:
    """``apply`` each new record until cancelled; a failed poll is retried a second later."""
    while True:
        try:
            apply(await consumer.poll(max_records=5000, timeout=1.0))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("%s: poll failed", what, exc_info=True)
            await asyncio.sleep(1)
