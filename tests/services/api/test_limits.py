"""Rate-limit arithmetic: sliding windows, the service's counts, reputation tiers.

The windows are checked over both kinds of counters: exact ones in the embedded log's
write transaction (a real SQLite log), and the gossiped ones of Kafka mode (the decision
rules alone here; tests/deploy/test_rate_limits_kafka.py runs replicas on a broker)."""
from __future__ import annotations

import time

import pytest

from services.api.limits import RateLimiter, tier_for
from shared.quota import Take, Window
from shared.quota.gossip import GossipQuota
from shared.quota.sqlite import SqliteQuota


@pytest.fixture(params=["sqlite", "gossip"])
async def quota(request, sqlite_log):
    yield SqliteQuota(sqlite_log) if request.param == "sqlite" else GossipQuota(sqlite_log)


async def admit(limiter: RateLimiter, service_id: str, n: int = 1):
    take = await limiter.take_for(service_id, sandboxed=False, n=n)
    [decision] = await limiter.admit("t", [take], [(service_id, b"request")])
    return decision


async def test_the_minute_limit_holds_then_names_its_window(quota):
    limiter = RateLimiter(quota, per_minute=6)
    results = [await admit(limiter, "svc") for _ in range(7)]
    assert [d.allowed for d in results] == [True] * 6 + [False]
    assert results[5].remaining == 0 and results[6].scope == "minute" and results[6].limit == 6
    assert 1 <= results[6].retry_after <= 61
    assert (await admit(limiter, "other")).allowed  # per service


async def test_a_refused_send_is_not_appended(sqlite_log):
    limiter = RateLimiter(SqliteQuota(sqlite_log), per_minute=2)
    [await admit(limiter, "svc") for _ in range(5)]
    assert sum(sqlite_log._ends("t").values()) == 2


async def test_a_peek_counts_nothing(quota):
    limiter = RateLimiter(quota)
    await admit(limiter, "svc")
    peek = await limiter.peek("svc")
    assert peek.allowed and peek.remaining == 599
    assert limiter.view("svc")["usage"] == {"this_minute": 1, "today": 1, "sandbox_today": 0}


async def test_sandbox_sends_also_count_against_the_sandbox_day(quota):
    limiter = RateLimiter(quota)
    take = await limiter.take_for("svc", sandboxed=True)
    [d] = await limiter.admit("t", [take], [("svc", b"r")])
    assert d.allowed and d.limit == 50 and d.remaining == 49
    assert limiter.view("svc")["usage"]["sandbox_today"] == 1


async def test_a_batch_is_decided_in_order(quota):
    limiter = RateLimiter(quota, per_minute=3)
    takes = [await limiter.take_for("svc", sandboxed=False) for _ in range(5)]
    decisions = await limiter.admit("t", takes, [("svc", b"r")] * 5)
    assert [d.allowed for d in decisions] == [True, True, True, False, False]


async def test_an_all_or_nothing_batch_counts_all_of_it_or_none(quota, sqlite_log):
    """A strict batch: when its takes do not all fit, none is counted and nothing appended;
    every decision is the same refusal, its remaining what the window has without the batch."""
    limiter = RateLimiter(quota, per_minute=3)
    await admit(limiter, "svc")
    appended = sum(sqlite_log._ends("t").values())
    takes = [await limiter.take_for("svc", sandboxed=False) for _ in range(3)]  # room for 2 of 3
    decisions = await limiter.admit("t", takes, [("svc", b"r")] * 3, all_or_nothing=True)
    assert [d.allowed for d in decisions] == [False] * 3 and len({id(d) for d in decisions}) == 1
    assert (decisions[0].scope, decisions[0].limit, decisions[0].remaining) == ("minute", 3, 2)
    assert 1 <= decisions[0].retry_after <= 61
    assert limiter.view("svc")["usage"]["this_minute"] == 1
    assert sum(sqlite_log._ends("t").values()) == appended
    fits = [await limiter.take_for("svc", sandboxed=False) for _ in range(2)]  # room for 2 of 2
    assert [d.allowed for d in await limiter.admit("t", fits, [("svc", b"r")] * 2, all_or_nothing=True)] == [True, True]
    assert limiter.view("svc")["usage"]["this_minute"] == 3
    assert sum(sqlite_log._ends("t").values()) == appended + 2


async def test_an_all_or_nothing_batch_waits_for_its_tightest_window(quota):
    """Sandbox items also need room in the sandbox day: when that window is the one without room,
    the batch's refusal names it, waits for it (not for the minute) and reports its remaining
    without the batch's own units."""
    limiter = RateLimiter(quota, per_minute=100)
    for _ in range(49):
        await limiter.admit("t", [await limiter.take_for("svc", sandboxed=True)], [("svc", b"r")])
    takes = [await limiter.take_for("svc", sandboxed=s) for s in (True, False, True)]
    decisions = await limiter.admit("t", takes, [("svc", b"r")] * 3, all_or_nothing=True)
    assert not decisions[0].allowed and decisions[0].scope == "sandbox day" and decisions[0].remaining == 1
    assert decisions[0].retry_after > 61  # when the day's oldest slots leave, not the minute's
    assert limiter.view("svc")["usage"] == {"this_minute": 49, "today": 49, "sandbox_today": 49}


def sliding_take(n: int = 1) -> Take:
    return Take("svc", n, (Window("minute", 60, 1, 10),))


async def test_no_burst_across_a_boundary_gets_twice_the_limit(quota, monkeypatch):
    """10 units at second 59.9 of a calendar minute; at second 60.1 (a new calendar minute)
    a sliding window still counts them."""
    clock = [1_000_000 * 60 + 59.9]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    assert all(d.allowed for d in await quota.admit("t", [sliding_take()] * 10, [("svc", b"r")] * 10))
    clock[0] += 0.2
    [late] = await quota.admit("t", [sliding_take()], [("svc", b"r")])
    assert not late.allowed and late.retry_after >= 59
    clock[0] += 61  # the whole burst has left the window
    [later] = await quota.admit("t", [sliding_take()], [("svc", b"r")])
    assert later.allowed


def test_reputation_tiers():
    assert tier_for(0, 0, 0) == 0
    assert tier_for(999, 0, 0) == 0
    assert tier_for(1_000, 5, 0) == 1
    assert tier_for(10_000, 100, 5) == 2
    assert tier_for(60_000, 0, 0) == 3
    assert tier_for(60_000, 1_500, 0) == 0      # 2.5% bounces: no raise
    assert tier_for(1_000, 60, 0) == -1         # 6% bounces: halved
    assert tier_for(1_000, 0, 6) == -1          # 0.6% complaints: halved


async def test_limits_follow_the_tier(sqlite_log):
    limiter = RateLimiter(SqliteQuota(sqlite_log))
    rep = await limiter.refresh("svc", time.time())
    rep.tier = 2
    assert limiter.limits("svc") == (2400, 40_000)
    rep.tier = -1
    assert limiter.limits("svc") == (300, 5_000)
