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
- One unit is one accepted message (whatever its recipient count), as Postmark counts.
- With N API replicas (POSTLINE_API_REPLICAS) each replica enforces ceil(limit / N) of every
  window, so the total holds without a shared counter; the daily count is re-seeded from the
  analytics store after a restart.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

BASE_MINUTE, BASE_DAY = 600, 10_000
SANDBOX_DAY = 50
REFRESH_SECONDS = 600


@dataclass
class Window:
    """A fixed window counter; ``index`` is the window number (now // length)."""

    index: int = -1
    count: int = 0
    length: int = 60

    def roll(self, now: float) -> None:
        index = int(now // self.length)
        if index != self.index:
            self.index, self.count = index, 0

    def current(self, now: float) -> int:
        return self.count if self.index == int(now // self.length) else 0

    def reset_in(self, now: float) -> int:
        return int((self.index + 1) * self.length - now) + 1


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int = 0
    scope: str = "minute"

    def headers(self) -> dict[str, str]:
        h = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(max(0, self.remaining)),
             "RateLimit-Reset": str(self.reset)}
        if not self.allowed:
            h["Retry-After"] = str(self.retry_after)
        return h


@dataclass
class ServiceCounters:
    minute: Window = field(default_factory=lambda: Window(length=60))
    day: Window = field(default_factory=lambda: Window(length=86400))
    sandbox_day: Window = field(default_factory=lambda: Window(length=86400))
    tier: int = 0
    refreshed_at: float = -1e9
    seeded_day: float = -1.0


def tier_for(sent_7d: int, bounced_7d: int, complained_7d: int) -> int:
    if sent_7d == 0:
        return 0
    bounce, complaint = bounced_7d / sent_7d, complained_7d / sent_7d
    if bounce > 0.05 or complaint > 0.005:
        return -1
    if bounce >= 0.02 or complaint >= 0.001:
        return 0
    return 3 if sent_7d >= 50_000 else 2 if sent_7d >= 10_000 else 1 if sent_7d >= 1_000 else 0


class RateLimiter:
    def __init__(self, replicas: int = 1, store=None, per_minute: int = BASE_MINUTE, per_day: int = BASE_DAY,
                 overrides=None):
        """``overrides(service_id)`` → ``(per_minute, per_day)`` of the service's own base, each
        None when not set (read from the control state on every call, so a PATCH applies at once)."""
        self.replicas, self.store = replicas, store
        self.base_minute, self.base_day = per_minute, per_day
        self.overrides = overrides or (lambda service_id: (None, None))
        self._counters: dict[str, ServiceCounters] = {}

    def base(self, service_id: str) -> tuple[int, int]:
        minute, day = self.overrides(service_id)
        return minute or self.base_minute, day or self.base_day

    def limits(self, service_id: str) -> tuple[int, int]:
        tier = self._counters.get(service_id, ServiceCounters()).tier
        factor = 0.5 if tier < 0 else 2 ** tier
        base_minute, base_day = self.base(service_id)
        return int(base_minute * factor), int(base_day * factor)

    def _share(self, limit: int) -> int:
        return math.ceil(limit / self.replicas)

    async def refresh(self, service_id: str, now: float | None = None) -> ServiceCounters:
        """Seed today's count and the reputation tier from the analytics store (at most every 10 min)."""
        now = now or time.time()
        c = self._counters.setdefault(service_id, ServiceCounters())
        if self.store is None or now - c.refreshed_at < REFRESH_SECONDS:
            return c
        c.refreshed_at = now
        try:
            from shared.store import queries

            week = await queries.stats(self.store, service_id, "7d", "day", None)
            t = week["totals"]
            c.tier = tier_for(t["sent"], t["bounced"], t["complained"])
            day_start = now - (now % 86400)
            if c.seeded_day != day_start:
                c.seeded_day = day_start
                today = await queries.messages_since(self.store, service_id, datetime.fromtimestamp(day_start, timezone.utc))
                c.day.roll(now)
                c.day.count = max(c.day.count, math.ceil(today / self.replicas))
        except Exception:  # the store is a read model: limits still hold on local counts
            pass
        return c

    async def take(self, service_id: str, sandboxed: bool, n: int = 1) -> Decision:
        """Count ``n`` messages if every window has room; else a refusal saying when to retry."""
        now = time.time()
        c = await self.refresh(service_id, now)
        per_min, per_day = self.limits(service_id)
        windows = [("minute", c.minute, self._share(per_min)), ("day", c.day, self._share(per_day))]
        if sandboxed:
            windows.append(("sandbox day", c.sandbox_day, self._share(SANDBOX_DAY)))
        for _, w, _ in windows:
            w.roll(now)
        blocked = [(name, w, lim) for name, w, lim in windows if w.count + n > lim]
        if blocked:
            name, w, lim = blocked[-1]
            reset = w.reset_in(now)
            return Decision(False, lim, lim - w.count, reset, retry_after=reset, scope=name)
        for _, w, _ in windows:
            w.count += n
        name, w, lim = min(windows, key=lambda x: x[2] - x[1].count)
        return Decision(True, lim, lim - w.count, w.reset_in(now), scope=name)

    def view(self, service_id: str) -> dict:
        now = time.time()
        c = self._counters.get(service_id, ServiceCounters())
        per_min, per_day = self.limits(service_id)
        base_minute, base_day = self.base(service_id)
        minute, day = c.minute.current(now), c.day.current(now)
        return {"per_minute": per_min, "per_day": per_day, "base_per_minute": base_minute, "base_per_day": base_day,
                "overridden": self.overrides(service_id) != (None, None), "sandbox_per_day": SANDBOX_DAY,
                "reputation_tier": c.tier, "usage": {"this_minute": minute,
                                                     "today": day}}
