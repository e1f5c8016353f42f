"""The relay handler's steps in-process (Postal's processor spec is the model): a request
in, the outcome events, retry records and ledger entries out — against a real SQLite log,
a real ledger and a real SMTP server answering per recipient, no subprocess."""
from __future__ import annotations

from datetime import timedelta

import pytest

from services.relay.handler import RelayContext, announce, process, retry_plan
from services.relay.ledger import Ledger
from services.relay.outcome import DeliveryResult
from services.relay.senders.smarthost import SmarthostSender
from services.relay.signing import Signer
from services.relay.outcome import PartlySent
from shared.consumer_loop import BatchLost
from shared import events as ev
from shared.control.state import ControlState
from shared.log.sqlite import SqliteLog
from shared.settings import Settings
from tests.support.smtp_sink import SmtpSink

OK, GONE, LATER = "ok@example.com", "gone@example.com", "later@example.com"
M1 = "6a0e6a0e-0000-4000-8000-000000000001"  # email ids are UUIDs (VERP addresses carry them)


@pytest.fixture
def sink():
    s = SmtpSink(rcpt_replies={GONE: "550 5.1.1 no such user",
                               LATER: "451 4.7.1 greylisted, try again in 10 minutes"}).start()
    yield s
    s.stop()


@pytest.fixture
async def ctx(tmp_path, sink):
    settings = Settings(data_dir=tmp_path, secret_key="step-tests", delivery="smarthost", smarthost=sink.address,
                        retry_schedule="60,300,900", queue_lifetime=3600)
    log = SqliteLog(tmp_path / "log.sqlite3", partitions=1)
    await log.start()
    c = RelayContext(settings=settings, log=log, control=ControlState(), sender=SmarthostSender(settings),
                     ledger=Ledger(tmp_path / "ledger"), signer=Signer(settings.master_key))
    yield c
    await c.sender.close()
    c.ledger.close()
    c.signer.close()
    await log.close()


def request(*rcpts: str, **over) -> ev.SendRequested:
    return ev.SendRequested(workspace_id="w", service_id="s", email_id=over.pop("email_id", M1), mode="sandbox",
                            to=list(rcpts), recipients=list(rcpts), subject="hi", text="body",
                            **{"from": "sandbox@postline.localhost"}, **over)


async def read(ctx: RelayContext, topic: str) -> list:
    consumer = ctx.log.consumer([topic], None)
    await consumer.start()
    try:
        return [ev.decode(r.value) for r in await consumer.poll(max_records=100, timeout=0.5)]
    finally:
        await consumer.close()


def by_type(events) -> dict[str, list]:
    out: dict[str, list] = {}
    for e in events:
        out.setdefault(e.type, []).append(e)
    return out


async def test_one_outcome_event_per_recipient_and_finals_in_the_ledger(ctx):
    await process(ctx, request(OK, GONE))
    got = by_type(await read(ctx, ev.Topic.EVENTS))
    assert sorted(e.recipient for e in got["sent"]) == [GONE, OK]
    assert [e.recipient for e in got["delivered"]] == [OK] and got["delivered"][0].smtp_code == 250
    assert [(e.recipient, e.smtp_code, e.bounce_type) for e in got["bounced"]] == [(GONE, 550, "hard")]
    recorded = await ctx.ledger.done(M1, [OK, GONE])
    assert {r: status for r, (status, _) in recorded.items()} == {OK: "delivered", GONE: "bounced"}


async def test_a_redelivered_request_emits_the_same_events_and_sends_nothing(ctx, sink):
    await process(ctx, request(OK))
    await process(ctx, request(OK))  # at-least-once: the same record again
    assert len(sink.to(OK)) == 1
    events = await read(ctx, ev.Topic.EVENTS)
    delivered = [e for e in events if e.type == "delivered"]
    assert len(delivered) == 2 and delivered[0].id == delivered[1].id and delivered[0].time == delivered[1].time


async def test_a_deferral_waits_on_the_level_the_servers_retry_after_asks_for(ctx):
    await process(ctx, request(OK, LATER))
    deferred = by_type(await read(ctx, ev.Topic.EVENTS))["deferred"]
    assert [(e.recipient, e.attempt) for e in deferred] == [(LATER, 1)]
    # "try again in 10 minutes" (600 s) → the first level waiting that long: 900 s, not 60 s
    retries = await read(ctx, ev.retry_topic(2))
    assert [(r.recipients, r.attempt) for r in retries] == [([LATER], 1)]
    assert await read(ctx, ev.retry_topic(0)) == []
    assert deferred[0].retry_at == retries[0].scheduled_at
    assert await ctx.ledger.done(M1, [LATER]) == {}  # not final: nothing in the ledger


async def test_past_the_queue_lifetime_a_deferral_fails_and_is_final(ctx):
    first = ev.utcnow() - timedelta(hours=2)
    await process(ctx, request(LATER, attempt=3, first_attempt_at=first))
    got = by_type(await read(ctx, ev.Topic.EVENTS))
    assert [e.reason for e in got["failed"]] == ["queue lifetime exceeded"] and "deferred" not in got
    assert [await read(ctx, ev.retry_topic(i)) for i in range(3)] == [[], [], []]
    assert (await ctx.ledger.done(M1, [LATER]))[LATER][0] == "failed"


def test_announce_only_on_the_first_attempt():
    req = request(OK, dropped=[ev.DroppedRecipient(recipient=GONE, reason="suppressed")])
    assert [(e.type, e.recipient) for e in announce(req)] == [("sent", OK), ("dropped", GONE)]
    assert announce(req.model_copy(update={"attempt": 1})) == []


def test_retry_plan_takes_the_longest_retry_after_of_the_deferred(ctx):
    results = {"a": DeliveryResult("deferred", 451, "x", retry_after=200),
               "b": DeliveryResult("deferred", 451, "y", retry_after=50),
               "c": DeliveryResult("delivered", 250, "ok", retry_after=10_000)}  # not deferred: ignored
    assert retry_plan(ctx, request(OK), results).level == 2 - 1  # 200 s → the 300 s level


class _LosesTheBatchFor(SmarthostSender):
    """The smarthost, except that a transaction to ``lost.example`` finds the relay's batch
    given away right before it starts (Kafka: ``ensure_batch_current`` in the SMTP pool)."""

    async def send(self, mail_from, rcpts, raw, require_tls=False):
        if any(r.endswith("@lost.example") for r in rcpts):
            raise BatchLost("given to another relay")
        return await super().send(mail_from, rcpts, raw, require_tls)


async def test_a_message_whose_batch_is_lost_between_its_transactions_records_the_ones_that_went_out(ctx, sink):
    """A message with a transaction per destination: one went out, then the batch went to
    another relay. The reply of the one that went out reaches the ledger and the events
    (else a relay handling the request again would send it again); nothing is emitted or
    scheduled for the other, the new owner's, and the batch stays lost (``PartlySent``, not
    committed). A message none of whose transactions started is left whole: nothing recorded."""
    await ctx.sender.close()
    ctx.sender = _LosesTheBatchFor(ctx.settings)
    with pytest.raises(PartlySent):
        await process(ctx, request(OK, "ann@lost.example"))
    assert len(sink.to(OK)) == 1
    got = by_type(await read(ctx, ev.Topic.EVENTS))
    assert sorted(e.recipient for e in got["sent"]) == ["ann@lost.example", OK]
    assert [e.recipient for e in got["delivered"]] == [OK] and "deferred" not in got
    assert await read(ctx, ev.retry_topic(0)) == []
    assert {r: s for r, (s, _) in (await ctx.ledger.done(M1, [OK, "ann@lost.example"])).items()} == {OK: "delivered"}

    other = "6a0e6a0e-0000-4000-8000-000000000002"
    with pytest.raises(BatchLost):
        await process(ctx, request("bob@lost.example", email_id=other))
    assert [e for e in await read(ctx, ev.Topic.EVENTS) if e.email_id == other] == []
