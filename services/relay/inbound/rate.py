"""How many messages the inbound listener takes from one sending IP address per minute
(POSTLINE_INBOUND_RATE_PER_MINUTE): a token bucket per address, as an MTA's per-client
limits are (Postfix's anvil). Held by the listener itself: there is one listener per
inbound port, and a sender over the limit is told to come back (451), so a limit counted
by each of several listeners apart only lets a sender that spreads over them go faster."""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

MAX_TRACKED = 100_000  # addresses remembered at once; the least recently seen are forgotten


class PerAddressRate:
    def __init__(self, per_minute: int, clock: Callable[[], float] | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self.clock = clock or time.monotonic
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address → (tokens, at)

    def allow(self, address: str) -> bool:
        """Take one message's token for ``address``; False when it has none left."""
        now = self.clock()
        tokens, at = self.buckets.pop(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        self.buckets[address] = (tokens - 1.0 if allowed else tokens, now)
        while len(self.buckets) > MAX_TRACKED:
            self.buckets.popitem(last=False)
        return allowed
