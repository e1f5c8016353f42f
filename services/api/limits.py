"""Per-service rate limits: per minute and per day, plus the sandbox daily cap.

Rules (documented in docs/rate-limits.md):
- Production starts at 600 messages/min and 10,000/day (POSTLINE_RATE_PER_MINUTE/_PER_DAY). Sandbox (and sandbox_fallback)
  messages are also capped at 50/day.
- A workspace admin can set a service's own base (``PATCH /services/{id}`` with
  ``rate_limits: {per_minute, per_day}``); it replaces the global base for that service and
  reputation multiplies it the same way.
- Reputation doubles the production limits per tier, up to 8x: tier 1 after 1,000 messages
  in the last 7 days, tier 2 after 10,000, tier 3 after 50,000 — each only while the 7-day
  bounce rate stays under 2% and the complaint rate under 0.1%. A bounce rate over 5% or a
  complaint rate over 0.5% halves the base limits instead.
- One unit is one accepted message (whatever its recipient count), as Postmark counts. A strict
  batch is counted as a whole: all its messages fit and are counted, or none is (``admit``).
- The windows are sliding (shared/quota/window.py): "minute" is any 60 s, "day" any 24 h, so
  no burst around a boundary gets twice the limit through. They are the service's, whatever
  the number of API processes or replicas (shared/quota/: exact in the embedded log's write
  transaction, shared through the log on Kafka).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.quota import Decision, Quota, Take, Window
from shared.store.port import AnalyticsStore

BASE_MINUTE, BASE_DAY = 600, 10_000
SANDBOX_DAY = 50
REFRESH_SECONDS = 600
# (scope, window length, slot length) in seconds
MINUTE, DAY, SANDBOX = ("minute", 60, 1), ("day", 86_400, 300), ("sandbox day", 86_400, 300)

__all__ = ["Decision", "RateLimiter", "tier_for"]


def tier_for(sent_7d: int, bounced_7d: int, complained_7d: int) -> int:
    if sent_7d == 0:
        return 0
    bounce, complaint = bounced_7d / sent_7d, complained_7d / sent_7d
    if bounce > 0.05 or complaint > 0.005:
        return -1
    if bounce >= 0.02 or complaint >= 0.001:
        return 0
    return 3 if sent_7d >= 50_000 else 2 if sent_7d >= 10_000 else 1 if sent_7d >= 1_000 else 0


@dataclass
class Reputation:
    tier: int = 0
    refreshed_at: float = -1e9


class RateLimiter:
    def __init__(self, quota: Quota, store: AnalyticsStore | None = None, per_minute: int = BASE_MINUTE,
                 per_day: int = BASE_DAY,
                 overrides: Callable[[str], tuple[int | None, int | None]] | None = None) -> None:
        """``quota``: the service-wide counters (shared/quota). ``overrides(service_id)`` →
        ``(per_minute, per_day)`` of the service's own base, each None when not set (read
        from the control state on every call, so a PATCH applies at once)."""
        self.quota, self.store = quota, store
        self.base_minute, self.base_day = per_minute, per_day
        self.overrides = overrides or (lambda service_id: (None, None))
        self._reputation: dict[str, Reputation] = {}

    def base(self, service_id: str) -> tuple[int, int]:
        minute, day = self.overrides(service_id)
        return minute or self.base_minute, day or self.base_day

    def limits(self, service_id: str) -> tuple[int, int]:
        tier = self._reputation.get(service_id, Reputation()).tier
        factor = 0.5 if tier < 0 else 2 ** tier
        base_minute, base_day = self.base(service_id)
        return int(base_minute * factor), int(base_day * factor)

    async def refresh(self, service_id: str, now: float | None = None) -> Reputation:
        """The reputation tier from the analytics store (at most every 10 min; each process
        reads the same store, so they agree)."""
        now = now or time.time()
        rep = self._reputation.setdefault(service_id, Reputation())
        if self.store is None or now - rep.refreshed_at < REFRESH_SECONDS:
            return rep
        rep.refreshed_at = now
        try:
            from shared.store import queries

            t = (await queries.stats(self.store, service_id, "7d", "day", None))["totals"]
            rep.tier = tier_for(t["sent"], t["bounced"], t["complained"])
        except Exception:  # the store is a read model: limits still hold at the last tier
            pass
        return rep

    async def take_for(self, service_id: str, sandboxed: bool, n: int = 1) -> Take:
        """What one send (``n`` units; 0 for a send with no recipient left) asks of the windows."""
        await self.refresh(service_id)
        per_min, per_day = self.limits(service_id)
        windows = [Window(*MINUTE, per_min), Window(*DAY, per_day)]
        if sandboxed:
            windows.append(Window(*SANDBOX, SANDBOX_DAY))
        return Take(service_id, n, tuple(windows))

    async def admit(self, topic: str, takes: list[Take], items: Sequence[tuple[str | None, bytes]],
                    all_or_nothing: bool = False) -> list[Decision]:
        """Count each take if it fits and append the records of those that do (shared/quota);
        ``all_or_nothing``: all of them counted and appended, or none (``Quota.admit``)."""
        return await self.quota.admit(topic, takes, items, all_or_nothing=all_or_nothing)

    async def peek(self, service_id: str) -> Decision:
        """The service's state now, counting nothing (for ``RateLimit-*`` on answers that send nothing)."""
        return self.quota.peek(await self.take_for(service_id, sandboxed=False, n=0))

    def view(self, service_id: str) -> dict:
        per_min, per_day = self.limits(service_id)
        base_minute, base_day = self.base(service_id)
        usage = self.quota.usage(service_id, [MINUTE, DAY, SANDBOX])
        return {"per_minute": per_min, "per_day": per_day, "base_per_minute": base_minute, "base_per_day": base_day,
                "overridden": self.overrides(service_id) != (None, None), "sandbox_per_day": SANDBOX_DAY,
                "reputation_tier": self._reputation.get(service_id, Reputation()).tier,
                # "today" is the day window: the last 24 hours, as the limit counts them
                "usage": {"this_minute": usage["minute"], "today": usage["day"], "sandbox_today": usage["sandbox day"]}}
