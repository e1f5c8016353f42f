"""The Kafka-mode shaping store (services/relay/shaping/gossip.py), two relays' stores on one
real log (the embedded adapter of the same port; tests/deploy/test_shaping_kafka.py runs
relay processes on the broker): connection shares that never sum past the limit while a
relay joins, one rate split between the relays that want it, a throttle one relay meets
slowing the other (and two at once halving once; a stale write not undoing it), a relay
that is not heard stopping, warm-up caps counted together, and a leaving relay's share
returning."""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from services.relay.shaping import gossip
from services.relay.shaping.gossip import GossipShapingStore, merge
from shared import events as ev

MAX = 3


@pytest.fixture
async def relays(sqlite_log):
    stores = [GossipShapingStore(sqlite_log), GossipShapingStore(sqlite_log)]
    for store in stores:
        await store.start()
    yield stores
    for store in stores:
        await store.close()


async def until(check, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


def heard(store: GossipShapingStore) -> bool:
    return store._heard_now(time.monotonic())


def held(store: GossipShapingStore) -> int:
    m = store.mine.get("google")
    return len(m.leases) if m else 0


async def test_a_joining_relay_gets_a_share_and_the_sum_never_passes_the_limit(relays):
    a, b = relays
    await until(lambda: heard(a) and heard(b) and a._alive() and b._alive(), "both relays hear themselves and each other")
    a_leases: list[str] = []
    deadline = time.monotonic() + 5
    while len(a_leases) < MAX and time.monotonic() < deadline:  # alone: the whole limit, after its settle
        if (lease := await a.lease("google", MAX)) is not None:
            a_leases.append(lease)
        await asyncio.sleep(0.02)
    assert len(a_leases) == MAX
    b_leases: list[str] = []
    deadline = time.monotonic() + 10
    while not b_leases and time.monotonic() < deadline:  # b joins; a closes what is above its share
        if (lease := await b.lease("google", MAX)) is not None:
            b_leases.append(lease)
        if a.over_share("google", MAX):
            await a.release(a_leases.pop())
        assert held(a) + held(b) <= MAX
        await asyncio.sleep(0.02)
    assert b_leases, "the joining relay never got a connection"
    assert not a.over_share("google", MAX) and held(a) >= 1 and held(a) + held(b) <= MAX


async def test_one_rate_for_both_relays(relays):
    a, b = relays
    await until(lambda: heard(a) and heard(b) and a._alive() and b._alive(), "both relays hear themselves and each other")
    for store in relays:  # both want google before the first message: each takes half the rate
        store._want("google")
    await until(lambda: len(a._active("google")) == 2 == len(b._active("google")),
                "each relay sees the other wanting google")
    starts = await asyncio.gather(*(s.reserve("google", 10.0) for s in relays for _ in range(12)))
    starts.sort()
    busiest = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    assert busiest <= 10 + 1, f"{busiest} starts in one second at 10/s"
    assert starts[-1] - starts[0] >= 2.0  # 24 starts at 10/s in all


async def test_a_throttle_met_by_one_relay_slows_the_other(relays):
    a, b = relays
    assert await a.throttled("yahoo", 8.0, "421 4.7.0 try again later", pause=5) == 4.0
    await until(lambda: b.row("yahoo")["rate"] == 4.0, "the other relay reads the halved rate")
    view = next(v for v in b.views() if v.provider == "yahoo")
    assert view.backing_off and view.last_reply.startswith("421") and view.paused_until > 0
    assert await b.throttled("yahoo", 8.0, "421 4.7.0 try again later", pause=5) == 4.0  # the same pause: once


async def test_two_relays_throttled_at_once_halve_the_rate_once(relays):
    a, b = relays
    first = await asyncio.gather(a.throttled("apple", 8.0, "421 4.7.0 busy", pause=5),
                                 b.throttled("apple", 8.0, "421 4.7.0 busy", pause=5))
    assert first == [4.0, 4.0]  # each from the state it had, before reading the other's
    await until(lambda: a.row("apple")["last_throttle"] == b.row("apple")["last_throttle"], "both rows merged")
    assert a.row("apple")["rate"] == b.row("apple")["rate"] == 4.0


def test_a_stale_recovery_step_does_not_undo_a_newer_throttle():
    throttle = {"rate": 4.0, "last_throttle": 100.0, "last_step": 0.0, "paused_until": 105.0,
                "last_reply": "421 slow down", "last_reply_at": 100.0}
    stale_step = {"rate": 6.0, "last_throttle": 50.0, "last_step": 100.5, "paused_until": 51.0}  # never saw the throttle
    for merged in (merge(throttle, stale_step), merge(stale_step, throttle)):
        assert merged["rate"] == 4.0 and merged["paused_until"] == 105.0 and merged["last_reply"] == "421 slow down"
    step_after = {**throttle, "rate": 6.0, "last_step": 110.0}  # a step that knew the throttle wins
    assert merge(throttle, step_after)["rate"] == merge(step_after, throttle)["rate"] == 6.0


async def test_a_relay_that_is_not_heard_opens_nothing_and_closes_what_it_holds(relays):
    a, b = relays
    await until(lambda: heard(a) and heard(b), "both relays hear themselves")
    lease = None
    deadline = time.monotonic() + 5
    while lease is None and time.monotonic() < deadline:
        lease = await a.lease("gmx", 4)
        await asyncio.sleep(0.02)
    assert lease is not None and not a.over_share("gmx", 4)
    a._tasks[-1].cancel()  # its heartbeats stop reaching the log (cut off from Kafka)
    await until(lambda: not heard(a), "a no longer hears itself", timeout=gossip.ALIVE + 5)
    assert await a.lease("gmx", 4) is None and a.over_share("gmx", 4)
    await until(lambda: b._active("gmx") == [], "b no longer counts a", timeout=gossip.ALIVE + 5)


async def test_warmup_caps_count_every_relays_messages(relays):
    a, b = relays
    day = "2026-12-06"
    assert [await a.take_warmup("127.0.0.9", "google", day, 5) for _ in range(3)] == [True] * 3
    await until(lambda: b.sent_today(day) == {"127.0.0.9": {"google": 3}}, "the other relay reads the count")
    assert [await b.take_warmup("127.0.0.9", "google", day, 5) for _ in range(3)] == [True, True, False]


async def test_a_relay_that_leaves_gives_its_share_back(sqlite_log):
    a, b = GossipShapingStore(sqlite_log), GossipShapingStore(sqlite_log)
    await a.start()
    await b.start()
    try:
        for store in (a, b):
            store._want("google")
        await until(lambda: a._connection_share("google", 4) == 2, "a's share is half")
        await b.close()
        await until(lambda: a._connection_share("google", 4) == 4, "a's share is whole again",
                    timeout=gossip.ALIVE + 5)
    finally:
        await a.close()


async def test_an_alert_whose_relay_restarted_during_the_pause_is_cleared(sqlite_log):
    """The relay that raised a provider_paused alert restarts (its memory of it gone): once the
    pause is over, a relay that sees it over clears it — once."""
    raiser, other = GossipShapingStore(sqlite_log), GossipShapingStore(sqlite_log)
    await raiser.start()
    await other.start()
    try:
        since = await raiser.blocked("yahoo", "554 5.7.1 blocked", spike=1, pause=0.3, scope="svc1")
        assert since is not None
        await raiser.close()  # restarted: the new process is another relay
        again = GossipShapingStore(sqlite_log)
        await again.start()
        try:
            await until(lambda: gossip.paused_for_blocks(other.row("yahoo")), "the pause seen by the other relay")
            await asyncio.sleep(0.4 + gossip.ALIVE)  # the pause is over and the raiser no longer heard
            cleared = await other.clean("yahoo", 5.0, recovery=60)
            assert cleared == [("svc1", since)]
            assert await other.clean("yahoo", 5.0, recovery=60) == []  # once
        finally:
            await again.close()
    finally:
        await other.close()


async def test_a_live_relay_counts_whatever_its_clock_says_and_a_gone_one_read_at_start_does_not(sqlite_log):
    """Liveness is judged by receipt, not by the sender's clock: a heartbeat that arrives while
    following counts though its time is 10 s behind this relay's clock (another host's clock);
    the last heartbeat of a relay gone 10 s ago, read back at the start, does not."""
    def beat(pid: str, at: float) -> tuple[str, bytes]:
        return f"relay|{pid}", json.dumps({"k": "relay", "p": pid, "at": at, "want": ["google"], "held": {},
                                           "blocks": {}, "warm": {}, "queued": {}}).encode()

    await sqlite_log.append_many(ev.Topic.SHAPING, [beat("gone", time.time() - 10)])
    a = GossipShapingStore(sqlite_log)
    await a.start()
    try:
        await until(lambda: heard(a), "the relay hears itself")
        assert "gone" not in a._alive_ids()
        await sqlite_log.append_many(ev.Topic.SHAPING, [beat("skewed", time.time() - 10)])
        await until(lambda: "skewed" in a._alive_ids(), "a live relay whose clock is 10 s behind counts")
        assert "gone" not in a._alive_ids()
    finally:
        await a.close()
