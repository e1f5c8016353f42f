"""The control plane of two processes over one embedded log (two SqliteLog instances on one
file, as ``postline all`` runs them): read-your-writes through ``catch_up``, changes that keep
each other's fields, and a latest record per key that holds the whole state (compaction)."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from shared import events as ev
from shared.control.errors import ChangeRefused, ControlBehind
from shared.control.merge import same_state
from shared.control.plane import ControlPlane
from shared.control.state import ControlState
from shared.log.fresh_query import FreshQuery
from shared.log.sqlite import SqliteLog


@contextlib.asynccontextmanager
async def two_processes(tmp_path):
    logs = [SqliteLog(tmp_path / "log.sqlite3") for _ in range(2)]
    planes = []
    for lg in logs:
        await lg.start()
        planes.append(ControlPlane(lg))
        await planes[-1].start()
    try:
        yield planes
    finally:
        for plane, lg in zip(planes, logs):
            await plane.close()
            await lg.close()


def new_service(**fields) -> ev.ServiceSaved:
    return ev.ServiceSaved(**{"workspace_id": "w", "service_id": "s", "name": "app", "created_at": ev.utcnow(), **fields})


def latest_records(lg: SqliteLog) -> ControlState:
    """The state a replay of only the latest record of each key yields (Kafka's compaction)."""
    rows = lg._reader.execute("SELECT value FROM records WHERE topic=? AND off IN (SELECT MAX(off) FROM records "
                              "WHERE topic=? GROUP BY key)", (ev.Topic.CONTROL, ev.Topic.CONTROL)).fetchall()
    state = ControlState()
    for i, (value,) in enumerate(rows):
        state.apply(ev.decode(value), i)
    return state


async def test_a_change_on_one_process_is_read_by_the_next_request_on_the_other(tmp_path):
    async with two_processes(tmp_path) as (a, b):
        for i in range(20):
            await a.save(new_service(service_id=f"s{i}"))
            await b.catch_up()  # what every request that reads control state does first
            assert f"s{i}" in b.state.services


async def test_a_change_from_a_stale_view_keeps_the_fields_it_did_not_set(tmp_path):
    async with two_processes(tmp_path) as (a, b):
        await a.save(new_service())
        await b.catch_up()
        stale = b.state.services["s"]  # B read the service before A's change
        await a.change(a.state.services["s"], mode="production")
        after = await b.change(stale, rate_per_minute=100)
        assert (after.mode, after.rate_per_minute) == ("production", 100)
        await a.catch_up()
        assert same_state(a.state.services["s"], after)
        # the latest record of the key alone holds the whole state (an anchor was appended)
        assert same_state(latest_records(a.log).services["s"], after)


async def test_two_changes_of_one_field_from_one_view_the_later_is_refused(tmp_path):
    async with two_processes(tmp_path) as (a, b):
        await a.save(new_service())
        await b.catch_up()
        stale = b.state.services["s"]
        await a.change(a.state.services["s"], name="first")
        with pytest.raises(ChangeRefused) as refused:
            await b.change(stale, name="second")
        assert refused.value.status == 409
        await b.catch_up()
        assert b.state.services["s"].name == "first"
        assert latest_records(b.log).services["s"].name == "first"


async def test_a_change_of_an_entity_deleted_meanwhile_is_a_404_and_stays_deleted(tmp_path):
    async with two_processes(tmp_path) as (a, b):
        await a.save(new_service())
        await b.catch_up()
        stale = b.state.services["s"]
        await a.change(a.state.services["s"], deleted=True)
        with pytest.raises(ChangeRefused) as refused:
            await b.change(stale, track_opens=True)
        assert refused.value.status == 404
        assert "s" not in latest_records(b.log).services


class _NeverThere:
    """A log whose control topic ends past what its consumer ever delivers."""

    async def end_offsets(self, topic):
        return {0: 10}


async def test_catch_up_that_cannot_reach_the_end_raises_control_behind():
    plane = ControlPlane(_NeverThere(), catch_up_timeout=0.2)
    with pytest.raises(ControlBehind):
        await plane.catch_up()


async def test_fresh_query_shares_one_call_that_started_after_each_caller_arrived():
    calls, release = [], asyncio.Event()

    async def fetch():
        calls.append(len(calls))
        await release.wait()
        return len(calls)

    query = FreshQuery(fetch)
    first = asyncio.ensure_future(query())
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(query()) for _ in range(5)]  # arrive while the first call runs
    await asyncio.sleep(0)
    release.set()
    assert await first == 1
    assert [await f for f in later] == [2] * 5  # one more call, started after they arrived
    assert len(calls) == 2
