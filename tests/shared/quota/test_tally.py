"""``Quota.tally`` (how many, and the newest slot) over both adapters, and the embedded
counters' sweep of keys nobody counts any more (shared/quota/)."""
from __future__ import annotations

import time

import pytest

from shared.quota import Take, Window
from shared.quota.gossip import GossipQuota
from shared.quota import sqlite as quota_sqlite
from shared.quota.sqlite import SqliteQuota

SCOPE = ("auth-test", 3600, 1)
WINDOW = Window(*SCOPE, 2**62)


@pytest.fixture(params=["sqlite", "gossip"])
async def quota(request, sqlite_log):
    yield SqliteQuota(sqlite_log) if request.param == "sqlite" else GossipQuota(sqlite_log)


async def test_tally_counts_and_names_the_newest_slot(quota):
    assert quota.tally("k", SCOPE) == (0, None)  # nothing counted yet (embedded: no table yet)
    before = int(time.time())
    for _ in range(3):
        await quota.admit("t", [Take("k", 1, (WINDOW,))], [])  # counts, appends nothing
    units, newest = quota.tally("k", SCOPE)
    assert units == 3 and before <= newest <= int(time.time())
    assert quota.tally("other", SCOPE) == (0, None)


class Clock:
    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now


async def test_expired_slots_of_keys_nobody_counts_again_are_swept(sqlite_log, monkeypatch):
    clock = Clock(time.time())
    monkeypatch.setattr(quota_sqlite, "time", clock)
    quota = SqliteQuota(sqlite_log)
    await quota.admit("t", [Take("once", 1, (WINDOW,))], [])
    clock.now += SCOPE[1] + quota_sqlite.SWEEP_INTERVAL + 2  # past the window and the sweep interval
    await quota.admit("t", [Take("later", 1, (WINDOW,))], [])
    keys = sqlite_log.read(lambda conn: [k for (k,) in conn.execute("SELECT svc FROM quota_slots")])
    assert keys == ["later"]
