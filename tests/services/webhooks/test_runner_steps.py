"""The webhook runner's steps in-process, on a real embedded log, control plane and outbox:
which endpoints an event is queued for, and what each attempt's result does to the delivery
and the endpoint (services/webhooks/runner.py's docstring). The HTTP side of an attempt is
tests/services/webhooks/test_dispatch_steps.py; the whole service over HTTP, test_webhooks.py."""
from __future__ import annotations

import contextlib
import threading
import time

import pytest

from services.webhooks.dispatch import AttemptResult
from services.webhooks.outbox import Delivery
from services.webhooks.runner import AUTO_DISABLE_AFTER, MAX_RETRY_AFTER, WebhookService
from shared import events as ev
from shared.crypto import seal
from tests.support.outbox import due
from tests.support.inproc import api_runtime

EVENT = {"id": "evt-1", "type": "delivered", "email_id": "m1"}


@contextlib.asynccontextmanager
async def service(tmp_path):
    async with api_runtime(tmp_path, webhook_retry_schedule="5,60") as (rt, _):
        svc = WebhookService(rt)
        try:
            yield rt, svc
        finally:
            svc.outbox.close()


async def endpoint(rt, events=("delivered",), status="enabled") -> ev.WebhookSaved:
    wid = ev.new_id()
    wh = ev.WebhookSaved(workspace_id="w", service_id="s", webhook_id=wid, url="http://127.0.0.1:9/hook",
                         events=list(events), status=status, created_at=ev.utcnow(),
                         secret_sealed=seal(rt.settings.master_key, b"whsec_c2VjcmV0", wid))
    return await rt.control.save(wh)


async def attempts(rt, webhook_id: str) -> list[ev.WebhookAttempted]:
    reader = rt.log.consumer([ev.Topic.EVENTS], None)
    await reader.start()
    try:
        found = [ev.decode(r.value) for r in await reader.poll(max_records=1000, timeout=0.5) if r.key == webhook_id]
    finally:
        await reader.close()
    return [e for e in found if isinstance(e, ev.WebhookAttempted)]


async def test_an_event_is_queued_for_each_enabled_endpoint_that_subscribed_to_it(tmp_path):
    async with service(tmp_path) as (rt, svc):
        wanted = await endpoint(rt)
        await endpoint(rt, status="disabled")
        await endpoint(rt, events=("bounced",))
        event = ev.Delivered(workspace_id="w", service_id="s", email_id="m1", recipient="ann@example.com")
        await rt.log.append(ev.Topic.EVENTS, "m1", ev.encode(event))
        reader = rt.log.consumer([ev.Topic.EVENTS], None)
        await reader.start()
        records = [r for r in await reader.poll(timeout=1) if r.key == "m1"]
        await reader.close()
        await svc.handle(records)
        [queued] = due(svc.outbox, time.time() + 1)
        assert queued.webhook_id == wanted.webhook_id and queued.event["id"] == event.id


async def test_a_2xx_finishes_the_delivery(tmp_path):
    async with service(tmp_path) as (rt, svc):
        wh = await endpoint(rt)
        await svc.outbox.add([("k1", wh.webhook_id, EVENT)])
        [d] = due(svc.outbox, time.time())
        await svc._record(wh, d, AttemptResult(204, 3.0))
        assert due(svc.outbox, time.time() + 10**6) == []
        [att] = await attempts(rt, wh.webhook_id)
        assert (att.outcome, att.attempt, att.status_code, att.event_id) == ("delivered", 1, 204, "evt-1")


async def test_a_429_waits_its_retry_after_and_at_most_a_day(tmp_path):
    async with service(tmp_path) as (rt, svc):
        wh = await endpoint(rt)
        for key, retry_after, wait in (("k1", 120, 120), ("k2", 10**9, MAX_RETRY_AFTER)):
            await svc.outbox.add([(key, wh.webhook_id, EVENT)])
            before = time.time()
            await svc._record(wh, Delivery(key, wh.webhook_id, EVENT, 0), AttemptResult(429, 1.0, retry_after=retry_after))
            assert key not in {d.key for d in due(svc.outbox, before + wait - 1)}
            assert key in {d.key for d in due(svc.outbox, time.time() + wait + 1)}
        assert {a.outcome for a in await attempts(rt, wh.webhook_id)} == {"retrying"}


async def test_a_410_disables_the_endpoint(tmp_path):
    async with service(tmp_path) as (rt, svc):
        wh = await endpoint(rt)
        await svc._record(wh, Delivery("k1", wh.webhook_id, EVENT, 0), AttemptResult(410, 1.0))
        now = rt.control.state.webhooks[wh.webhook_id]
        assert now.status == "disabled" and "410" in now.disabled_reason


async def test_messages_failing_the_whole_schedule_in_a_row_disable_the_endpoint(tmp_path):
    async with service(tmp_path) as (rt, svc):
        wh = await endpoint(rt)
        last = len(rt.settings.webhook_delays)  # the attempt after the schedule's last delay
        for i in range(AUTO_DISABLE_AFTER):
            assert rt.control.state.webhooks[wh.webhook_id].status == "enabled"
            await svc._record(wh, Delivery(f"k{i}", wh.webhook_id, EVENT, last), AttemptResult(500, 1.0))
        assert rt.control.state.webhooks[wh.webhook_id].status == "disabled"
        assert [a.outcome for a in await attempts(rt, wh.webhook_id)] == ["failed"] * AUTO_DISABLE_AFTER


async def test_a_success_between_failures_resets_the_count(tmp_path):
    async with service(tmp_path) as (rt, svc):
        wh = await endpoint(rt)
        last = len(rt.settings.webhook_delays)
        for i, code in enumerate([500, 500, 200, 500, 500]):
            await svc._record(wh, Delivery(f"k{i}", wh.webhook_id, EVENT, last if code == 500 else 0),
                              AttemptResult(code, 1.0))
        assert rt.control.state.webhooks[wh.webhook_id].status == "enabled"


async def test_a_delivery_the_outbox_cannot_record_is_not_sent_again_and_is_recorded_later(tmp_path):
    """The endpoint answered 2xx but the outbox cannot be written (a full disk): the delivery's
    new state is kept in memory and the row is not dispatched again (it was, every 20 ms), and
    it is written once the outbox can be written again."""
    import asyncio

    from shared import failpoints
    from tests.support.receiver import Receiver

    rx = Receiver()
    async with service(tmp_path) as (rt, svc):
        wh = await rt.control.change(await endpoint(rt), url=rx.url)
        rt.settings.webhook_allow_private = True  # the receiver is on loopback
        stop = asyncio.Event()
        failpoints.configure("webhooks.outbox.write", 1.0)
        try:
            event = {**EVENT, "v": 1, "time": "2026-01-01T00:00:00Z", "workspace_id": "w", "service_id": "s"}
            await svc.outbox.add([("k1", wh.webhook_id, event)])
            loop = asyncio.create_task(svc.dispatch_loop(stop))
            await asyncio.sleep(2.0)
            during = len(rx.received)
            failpoints.configure("webhooks.outbox.write", None)
            deadline = time.monotonic() + 10
            while due(svc.outbox, time.time() + 10**6) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            after = due(svc.outbox, time.time() + 10**6)
        finally:
            failpoints.configure("webhooks.outbox.write", None)
            stop.set()
            await loop
            rx.stop()
    assert (during, len(rx.received), after) == (1, 1, [])


async def test_finished_deliveries_are_purged_a_day_after_they_were_queued(tmp_path):
    async with service(tmp_path) as (rt, svc):
        wh = await endpoint(rt)
        await svc.outbox.add([("old", wh.webhook_id, EVENT), ("new", wh.webhook_id, EVENT), ("waiting", wh.webhook_id, EVENT)])
        svc.outbox.finish("old", "done", 1)
        svc.outbox.finish("new", "done", 1)
        assert svc.outbox.purge(time.time() - 3600) == 0  # all queued just now
        assert svc.outbox.purge(time.time() + 1) == 2  # the finished ones; the pending one stays
        assert [d.key for d in due(svc.outbox, time.time() + 10)] == ["waiting"]


@pytest.mark.parametrize("stuck_endpoints", [1, 9])
async def test_a_backlog_takes_a_few_tasks_and_leaves_the_other_endpoints_their_turn(tmp_path, stuck_endpoints):
    """Endpoints that answer nothing with thousands of retries due: the dispatcher takes a few
    of each at a time (not a task each), and another endpoint's delivery still goes out — also
    with more stuck endpoints than the global slots allow (each waits in its own queue first)."""
    import asyncio

    from services.webhooks.runner import QUEUED_PER_ENDPOINT
    from tests.support.receiver import Receiver

    stuck, fine = threading.Event(), Receiver()
    slow = [Receiver(gate=stuck) for _ in range(stuck_endpoints)]  # answer nothing until the test ends
    async with service(tmp_path) as (rt, svc):
        rt.settings.webhook_allow_private = True  # the receivers are on loopback
        rt.settings.webhook_timeout = 60.0  # no stuck attempt ends (and frees its slots) during the test
        event = {**EVENT, "v": 1, "time": "2026-01-01T00:00:00Z", "workspace_id": "w", "service_id": "s"}
        for rx in slow:
            backlogged = await rt.control.change(await endpoint(rt), url=rx.url)
            await svc.outbox.add([(f"{backlogged.webhook_id}|e{i}", backlogged.webhook_id, {**event, "id": f"e{i}"})
                                  for i in range(3000 // stuck_endpoints)])
        other = await rt.control.change(await endpoint(rt), url=fine.url)
        await svc.outbox.add([(f"{other.webhook_id}|x", other.webhook_id, {**event, "id": "x"})])
        stop = asyncio.Event()
        loop = asyncio.create_task(svc.dispatch_loop(stop))
        try:
            deadline = time.monotonic() + 10
            while not fine.received and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            in_flight, delivered = len(svc._in_flight), len(fine.received)  # before the stuck ones are let go
        finally:
            stuck.set()
            stop.set()
            await loop
            for rx in (*slow, fine):
                rx.stop()
    assert delivered == 1 and in_flight <= stuck_endpoints * QUEUED_PER_ENDPOINT + 1

async def test_a_delivery_for_an_endpoint_not_known_yet_waits_and_an_old_one_is_skipped(tmp_path):
    """A replay or test event can be queued for an endpoint created a moment ago on another
    process, before this one's control state has it: kept pending and tried again a second
    later (it was skipped, lost). Queued over a minute ago, the endpoint is gone: skipped."""
    async with service(tmp_path) as (rt, svc):
        await svc.outbox.add([("new", "not-known-yet", EVENT), ("old", "deleted-long-ago", EVENT)])
        svc.outbox._db.execute("UPDATE deliveries SET created=created-120 WHERE key='old'")
        for d in due(svc.outbox, time.time()):
            await svc._deliver(None, d)
        assert [d.key for d in due(svc.outbox, time.time() + 2)] == ["new"]


async def test_a_retry_whose_endpoint_was_disabled_meanwhile_ends_skipped_in_its_attempts_log(tmp_path):
    """A delivery waiting for its retry when its endpoint is disabled is not tried; the
    endpoint's attempts log ends with ``skipped`` (the attempt not made), not with a
    "retrying" whose next attempt never comes."""
    async with service(tmp_path) as (rt, svc):
        wh = await endpoint(rt)
        await svc.outbox.add([("k1", wh.webhook_id, EVENT)])
        [d] = due(svc.outbox, time.time())
        await svc._record(wh, d, AttemptResult(500, 3.0))  # first attempt failed: a retry in 5 s
        await rt.control.change(rt.control.state.webhooks[wh.webhook_id], status="disabled", disabled_reason="by test")
        [retry] = due(svc.outbox, time.time() + 10)
        await svc._deliver(None, retry)
        assert due(svc.outbox, time.time() + 10**6) == []
        first, last = await attempts(rt, wh.webhook_id)
        assert (first.outcome, first.attempt) == ("retrying", 1)
        assert (last.outcome, last.attempt, last.status_code, last.event_id) == ("skipped", 2, None, "evt-1")
        assert last.error == "not tried: the endpoint is disabled" and last.next_attempt_at is None
        await svc.outbox.add([("k2", wh.webhook_id, {**EVENT, "id": "evt-2"})])  # never tried: leaves nothing
        [first_try] = due(svc.outbox, time.time())
        await svc._deliver(None, first_try)
        assert due(svc.outbox, time.time() + 10**6) == [] and len(await attempts(rt, wh.webhook_id)) == 2


async def test_failures_in_a_row_count_across_webhooks_processes(tmp_path):
    """Two webhooks processes — each its own runtime (control plane and follower) on the one
    log, and its own outbox, as two pods with their own volumes — share an endpoint's
    deliveries: their failures add to one count, and a success on one of them resets the count
    the other one sees."""
    import asyncio

    from services.webhooks.outbox import Outbox

    async def knows(rt, wh, **fields) -> None:
        for _ in range(200):
            now = rt.control.state.webhooks.get(wh.webhook_id)
            if now is not None and all(getattr(now, k) == v for k, v in fields.items()):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{fields} not seen")

    async with service(tmp_path) as (rt_a, pod_a), \
            api_runtime(tmp_path, webhook_retry_schedule="5,60") as (rt_b, _):
        pod_b = WebhookService(rt_b)
        pod_b.outbox.close()
        pod_b.outbox = Outbox(tmp_path / "pod-b" / "webhooks.sqlite3")
        try:
            last = len(rt_a.settings.webhook_delays)
            reset, counted = await endpoint(rt_a), await endpoint(rt_a)
            await knows(rt_b, counted)
            for i, (pod, code) in enumerate([(pod_a, 500), (pod_a, 500), (pod_b, 200), (pod_a, 500)]):
                await pod._record(reset, Delivery(f"r{i}", reset.webhook_id, EVENT, last if code == 500 else 0),
                                  AttemptResult(code, 1.0))
            await knows(rt_a, reset, consecutive_failures=1)
            assert rt_a.control.state.webhooks[reset.webhook_id].status == "enabled"
            for i in range(AUTO_DISABLE_AFTER):  # a, b, a: one count of three, never two and one
                assert rt_a.control.state.webhooks[counted.webhook_id].status == "enabled"
                await (pod_a, pod_b)[i % 2]._record(counted, Delivery(f"c{i}", counted.webhook_id, EVENT, last),
                                                   AttemptResult(500, 1.0))
            await knows(rt_b, counted, status="disabled")
            await knows(rt_a, counted, status="disabled")
        finally:
            pod_b.outbox.close()


async def test_failures_counted_at_the_same_moment_disable_the_endpoint(tmp_path):
    """More failures at once than a count has tries: the count reaches the limit (no failure
    below it lost to another's change) and the endpoint is disabled."""
    import asyncio

    async with service(tmp_path) as (rt, svc):
        wh = await endpoint(rt)
        last = len(rt.settings.webhook_delays)
        await asyncio.gather(*(svc._record(wh, Delivery(f"k{i}", wh.webhook_id, EVENT, last), AttemptResult(500, 1.0))
                               for i in range(8)))
        now = rt.control.state.webhooks[wh.webhook_id]
        assert (now.status, now.consecutive_failures) == ("disabled", AUTO_DISABLE_AFTER)


async def test_an_endpoint_enabled_again_starts_its_count_afresh(tmp_path):
    async with api_runtime(tmp_path, webhook_retry_schedule="5,60", webhook_allow_private=True) as (rt, admin):
        sid = await admin.service("billing")
        hook = (await admin("POST", f"/api/email/services/{sid}/webhooks",
                            json={"url": "http://127.0.0.1:9/hook", "events": ["delivered"]})).json()
        svc = WebhookService(rt)
        try:
            wh, last = rt.control.state.webhooks[hook["id"]], len(rt.settings.webhook_delays)
            for i in range(AUTO_DISABLE_AFTER):
                await svc._record(wh, Delivery(f"k{i}", wh.webhook_id, EVENT, last), AttemptResult(500, 1.0))
            assert rt.control.state.webhooks[wh.webhook_id].status == "disabled"
            r = await admin("PATCH", f"/api/email/services/{sid}/webhooks/{wh.webhook_id}", json={"status": "enabled"})
            assert r.status_code == 200, r.text
            await svc._record(wh, Delivery("again", wh.webhook_id, EVENT, last), AttemptResult(500, 1.0))
            now = rt.control.state.webhooks[wh.webhook_id]
            assert (now.status, now.consecutive_failures) == ("enabled", 1)  # one failure since, not four
        finally:
            svc.outbox.close()
