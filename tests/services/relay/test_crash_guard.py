"""A request that kills the relay process is given up after it did so ``limit`` times while
handled alone, and the requests behind it are delivered (services/relay/crash_guard.py).

In-process: the guard's marks across simulated deaths (a new guard over the same directory
without a stop); the real relay after an unclean end, where an exception is no death and a
request counted dead twice is given up (its events, the ledger, the dead letter). As a real
`postline all`: a request whose tag makes the relay process exit (the
``relay.handling#poison`` failpoint) every time it is handled; the supervisor restarts the
relay, which gives the request up (``email.failed``) and delivers every other one."""
from __future__ import annotations

import asyncio
import contextlib

import pytest
from pydantic import ValidationError

from services.relay import runner
from services.relay.crash_guard import CrashGuard
from services.relay.outcome import DeliveryResult
from shared import events as ev
from shared.log.port import Record
from shared.settings import Settings
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.relay import append_requests, request, running_relay, until
from tests.support.smtp_sink import SmtpSink

EMAIL, BEHIND = "7c0e7c0e-0000-4000-8000-000000000001", "7c0e7c0e-0000-4000-8000-000000000002"


def record(partition: int, offset: int) -> Record:
    return Record(topic="email.requests", partition=partition, offset=offset, key=None, value=b"{}", timestamp_ms=0)


def test_a_clean_stop_leaves_the_next_start_normal(tmp_path):
    first = CrashGuard(tmp_path, limit=2, window=3)
    first.start()
    assert not first.unclean and not first.careful(record(0, 0))  # a fresh directory: no run before it
    first.stop()
    again = CrashGuard(tmp_path, limit=2, window=3)
    again.start()
    assert not again.unclean


def test_after_a_death_the_first_records_of_each_partition_are_careful_and_counted(tmp_path):
    dying = CrashGuard(tmp_path, limit=2, window=2)
    dying.start()  # ... and never stopped: the process died
    after = CrashGuard(tmp_path, limit=2, window=2)
    after.start()
    assert after.unclean
    assert [after.careful(record(0, n)) for n in range(3)] == [True, True, False]  # the window, per partition
    assert after.careful(record(0, 0))  # a batch read again (a retry) stays in it
    assert after.careful(record(1, 7)) and not after.careful(record(1, 9))  # from the first offset read
    poison, fine = record(0, 0), record(0, 1)
    after.before([fine, poison])
    after.after([fine])  # handled: its count is lowered again
    # ... and the process dies with poison in hand
    third = CrashGuard(tmp_path, limit=2, window=2)
    third.start()
    assert (third.deaths(poison), third.deaths(fine)) == (1, 0)
    third.before([poison])  # and dies again
    fourth = CrashGuard(tmp_path, limit=2, window=2)
    fourth.start()
    assert fourth.deaths(poison) == 2 == fourth.limit  # the relay gives it up now
    fourth.stop()
    fifth = CrashGuard(tmp_path, limit=2, window=2)
    fifth.start()
    assert not fifth.unclean and fifth.deaths(poison) == 0  # a graceful stop forgets the marks


def test_a_guard_that_cannot_use_its_directory_steps_aside(tmp_path):
    (tmp_path / "ledger").write_text("not a directory")
    guard = CrashGuard(tmp_path / "ledger", limit=2, window=2)
    guard.start()
    assert not guard.unclean and not guard.careful(record(0, 0))


async def events_of(rt, topic: str) -> list:
    out = []
    async for batch in rt.log.scan(topic, 0):
        out += batch
    return out


@pytest.fixture
def sink():
    started = SmtpSink().start()
    yield started
    started.stop()


def dead_before(ledger, *offsets: int, times: int = 1) -> None:
    """Processes that died ``times`` with the requests at ``offsets`` of partition 0 in hand
    (with none: the last run ended unclean, no count left)."""
    ledger.mkdir(parents=True, exist_ok=True)
    (ledger / "running").touch()
    before = CrashGuard(ledger, limit=2, window=8)
    before.start()
    for _ in range(times):
        before.before([record(0, o) for o in offsets])


@contextlib.asynccontextmanager
async def relay_handling(data_dir, sink, monkeypatch, handling=None):
    """``running_relay`` on one partition, where ``handling(relay, real, ctx, req)`` stands for
    the handler's ``process`` (``real``) when given."""
    relays: list = []
    if handling is not None:
        real = runner.process

        async def patched(ctx, req):
            await handling(relays[0], real, ctx, req)

        monkeypatch.setattr(runner, "process", patched)
    async with running_relay(data_dir, sink, embedded_partitions=1) as (rt, relay):
        relays.append(relay)
        yield rt, relay


async def test_an_error_while_handled_alone_is_not_a_death(tmp_path, sink, monkeypatch):
    """After an unclean end, a request whose handling raises (the log out of reach) is retried
    with its batch and delivered: no count is left behind, nothing is given up."""
    dead_before(tmp_path / "data" / "ledger")
    counted = []

    async def flaky(relay, real, ctx, req):
        counted.append(relay.crashes.deaths(record(0, 0)))  # raised while in hand
        if len(counted) <= 2:
            raise ConnectionError("the event log is out of reach")
        await real(ctx, req)

    async with relay_handling(tmp_path / "data", sink, monkeypatch, flaky) as (rt, relay):
        await append_requests(rt, [request(EMAIL, "ann@example.com")])
        await until(lambda: sink.received, what="the delivery")
        # the sink has the message before the handling returns and the count is lowered
        await until(lambda: relay.crashes.deaths(record(0, 0)) == 0, what="the count taken back")
        assert counted == [1, 1, 1]
        types = [ev.decode(r.value).type for r in await events_of(rt, ev.Topic.EVENTS)]
        assert "failed" not in types and await events_of(rt, ev.Topic.DEAD_LETTER) == []


def test_one_death_is_too_few_to_give_a_request_up():
    """The first death is counted while a request is handled in a batch: a limit of 1 would give
    up every request of the batch that died."""
    with pytest.raises(ValidationError, match="relay_crashes_per_request"):
        Settings(relay_crashes_per_request=1)


async def test_a_count_stays_raised_until_every_request_of_the_batch_has_ended(tmp_path, sink, monkeypatch):
    """One request of the counted batch fails at once (not a death: the batch is retried); the
    other is still in hand, so its count must stay raised until it ends too."""
    dead_before(tmp_path / "data" / "ledger")
    failed, seen = [], []

    async def one_fails_one_is_slow(relay, real, ctx, req):
        if req.email_id == EMAIL and not failed:
            failed.append(req.email_id)
            raise ConnectionError("the event log is out of reach")
        if req.email_id == BEHIND and not seen:
            await until(lambda: failed, what="the other request's failure")
            await asyncio.sleep(0.2)  # the failure has reached the batch by now
            seen.append(relay.crashes.deaths(record(0, 1)))
        await real(ctx, req)

    async with relay_handling(tmp_path / "data", sink, monkeypatch, one_fails_one_is_slow) as (rt, relay):
        await append_requests(rt, [request(EMAIL, "ann@example.com"), request(BEHIND, "bob@example.com")])
        await until(lambda: len(sink.received) >= 2, what="both delivered")
        assert seen == [1]  # still counted while in hand, though its batch had already failed
        await until(lambda: relay.crashes.deaths(record(0, 1)) == 0, what="the count taken back")


async def test_a_stop_ends_the_suspects_turn_without_committing(tmp_path, sink, monkeypatch):
    """Suspects are handled one at a time; a stop meanwhile leaves the rest for the next start
    (the batch uncommitted) instead of running on past the stop's grace period."""
    ledger = tmp_path / "data" / "ledger"
    dead_before(ledger, 0, 1)
    handled = []

    async def stop_during_the_first(relay, real, ctx, req):
        handled.append(req.email_id)
        relay.stopping.set()  # SIGTERM while the first suspect is in hand
        await real(ctx, req)

    async with relay_handling(tmp_path / "data", sink, monkeypatch, stop_during_the_first) as (rt, relay):
        await append_requests(rt, [request(EMAIL, "ann@example.com"), request(BEHIND, "bob@example.com")])
        await until(lambda: sink.received, what="the first suspect delivered")
        await asyncio.sleep(0.5)
    assert handled == [EMAIL] and not (ledger / "running").exists()  # a clean stop
    monkeypatch.undo()
    async with relay_handling(tmp_path / "data", sink, monkeypatch):  # the batch again, handled normally
        await until(lambda: len(sink.received) >= 2, what="the second delivered after the restart")
        await asyncio.sleep(0.5)
    delivered = [m.rcpt_tos for m in sink.received]
    assert sorted(delivered) == [["ann@example.com"], ["bob@example.com"]]  # the first not sent again


async def test_a_cancel_counted_dead_twice_is_applied_not_dropped(tmp_path, sink, monkeypatch):
    """A cancel is never given up: dropped, the send it cancels would go out."""
    dead_before(tmp_path / "data" / "ledger", 0, times=2)
    async with relay_handling(tmp_path / "data", sink, monkeypatch) as (rt, relay):
        cancel = ev.SendCanceled(workspace_id="w", service_id="s", email_id=EMAIL)
        await rt.log.append(ev.Topic.REQUESTS, EMAIL, ev.encode(cancel))
        await until(lambda: relay.scheduler.is_canceled(EMAIL), what="the cancel applied")
        assert await events_of(rt, ev.Topic.DEAD_LETTER) == []


async def test_a_request_counted_dead_twice_is_given_up_with_its_events(tmp_path, sink, monkeypatch):
    dead_before(tmp_path / "data" / "ledger", 0, times=2)  # two processes died with it in hand
    raised = []

    async def once_flaky(relay, real, ctx, req):  # the request behind it fails once: the whole batch is handled again
        if req.email_id == BEHIND and not raised:
            raised.append(req.email_id)
            raise ConnectionError("the event log is out of reach")
        await real(ctx, req)

    async with relay_handling(tmp_path / "data", sink, monkeypatch, once_flaky) as (rt, relay):
        # bob's delivery made it to the ledger before the process died: it is kept, not failed
        await relay.ctx.ledger.record([(EMAIL, "bob@example.com", "delivered",
                                        DeliveryResult("delivered", 250, "250 ok", at=ev.utcnow()))])
        await append_requests(rt, [request(EMAIL, "ann@example.com", "bob@example.com"),
                                   request(BEHIND, "cat@example.com")])
        await until(lambda: sink.received, what="the request behind it delivered")
        dead = []
        while not dead:  # dead-lettered once the batch is done
            dead = await events_of(rt, ev.Topic.DEAD_LETTER)
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        events = [ev.decode(r.value) for r in await events_of(rt, ev.Topic.EVENTS) if r.key == EMAIL]
        assert {(e.type, e.recipient) for e in events} == {
            ("sent", "ann@example.com"), ("sent", "bob@example.com"),
            ("delivered", "bob@example.com"), ("failed", "ann@example.com")}
        failed = [e for e in events if e.type == "failed"]
        assert len({e.model_dump_json() for e in failed}) == 1  # handled twice (the retry): the same event
        assert "died 2 times" in failed[0].reason
        [dead] = await events_of(rt, ev.Topic.DEAD_LETTER)  # once, though given up in both tries
        assert dead.key == EMAIL and "died 2 times" in dead.headers["error"]
        assert relay.scheduler.is_canceled(EMAIL)  # a copy held for later never goes out
        recorded = await relay.ctx.ledger.done(EMAIL, ["ann@example.com", "bob@example.com"])
        assert {r: status for r, (status, _) in recorded.items()} == {
            "ann@example.com": "failed", "bob@example.com": "delivered"}  # a later copy sends nothing
        assert not [m for m in sink.received if EMAIL.encode() in m.data] and raised


def test_a_request_that_kills_the_relay_is_given_up_and_the_others_are_delivered(tmp_path):
    sink, dns = SmtpSink().start(), DnsServer().start()
    env = {"POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address, "POSTLINE_DNS_SERVER": dns.address,
           "POSTLINE_FAILPOINTS": "relay.handling#poison=1",
           "POSTLINE_WORKERS": "4"}  # supervised: the relay processes are restarted when they die
    proc = PostlineProcess(tmp_path / "data", env=env).start()
    try:
        api = Api(proc.url)
        _, key = production_service(api, dns)
        body = {"from": "billing@acme.test", "subject": "s", "text": "t"}
        poison = api.send(key, {**body, "to": "ann@example.com", "tags": ["poison"]}).json()["id"]
        others = [api.send(key, {**body, "to": f"u{n}@example.com"}).json()["id"] for n in range(8)]
        failed = api.wait_status(key, poison, "ann@example.com", "failed", timeout=90)
        for n, email_id in enumerate(others):
            api.wait_status(key, email_id, f"u{n}@example.com", "delivered")
        log = proc.log_path.read_text()
        assert "died 2 times handling this message" in log  # given up after two deaths alone
        # deaths in a batch, in a counted batch, alone; the third restart gives it up
        assert log.count("exited with code 137") == 3 and log.count("handled under crash counts") == 3
        with sink.lock:
            assert not [m for m in sink.received if poison.encode() in m.data]
        assert failed["recipients"]["ann@example.com"]["status"] == "failed"
    finally:
        proc.stop()
        sink.stop()
        dns.stop()
