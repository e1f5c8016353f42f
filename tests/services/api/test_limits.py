"""Rate-limit arithmetic: windows, replica shares, reputation tiers."""
from __future__ import annotations

import time

from services.api.limits import RateLimiter, tier_for


async def test_minute_window_with_replica_share():
    limiter = RateLimiter(replicas=100)  # 600/min shared by 100 replicas → 6 here
    results = [await limiter.take("svc", sandboxed=False) for _ in range(7)]
    assert [d.allowed for d in results] == [True] * 6 + [False]
    assert results[5].remaining == 0 and results[6].retry_after >= 1
    assert await limiter.take("other", sandboxed=False)  # per service


async def test_zero_take_is_a_peek():
    limiter = RateLimiter()
    await limiter.take("svc", sandboxed=False)
    peek = await limiter.take("svc", sandboxed=False, n=0)
    assert peek.allowed and peek.remaining == 599
    assert limiter.view("svc")["usage"] == {"this_minute": 1, "today": 1}


def test_reputation_tiers():
    assert tier_for(0, 0, 0) == 0
    assert tier_for(999, 0, 0) == 0
    assert tier_for(1_000, 5, 0) == 1
    assert tier_for(10_000, 100, 5) == 2
    assert tier_for(60_000, 0, 0) == 3
    assert tier_for(60_000, 1_500, 0) == 0      # 2.5% bounces: no raise
    assert tier_for(1_000, 60, 0) == -1         # 6% bounces: halved
    assert tier_for(1_000, 0, 6) == -1          # 0.6% complaints: halved


async def test_limits_follow_the_tier():
    limiter = RateLimiter()
    c = await limiter.refresh("svc", time.time())
    c.tier = 2
    assert limiter.limits("svc") == (2400, 40_000)
    c.tier = -1
    assert limiter.limits("svc") == (300, 5_000)
