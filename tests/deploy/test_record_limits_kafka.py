"""A Kafka topic made with a smaller ``max.message.bytes`` than Postline asks for (by hand,
or by an older init job): a batch of sends it would take in part is refused whole, before
anything is appended (shared/log/kafka.py ``read_record_limits``). Kafka refuses the records
of a produce request one batch at a time, so without the check a strict batch answered 413
had already appended, and would deliver, its smaller items; a retry then sent them twice.

The topics are made here, before Postline starts, with small limits: ``email.requests``
takes 300,000 bytes and ``email.retry.1`` 250,000, so a request is held to 250,000 (it may
travel there). tansu stores the setting but enforces none: the refusals seen here are
Postline's own, made before any record is sent."""
from __future__ import annotations

import asyncio
import base64

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared import events as ev
from shared.log import open_log
from shared.log.port import LogRecordTooLarge
from shared.settings import Settings
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service

pytestmark = pytest.mark.kafka
REQUESTS_LIMIT, RETRY_LIMIT = 300_000, 250_000


@pytest.fixture(scope="module")
def small_topics(tansu):
    """The broker with ``email.requests`` and ``email.retry.1`` made with small limits."""
    async def make() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([
                NewTopic(str(ev.Topic.REQUESTS), 4, 1, topic_configs={"max.message.bytes": str(REQUESTS_LIMIT)}),
                NewTopic(ev.retry_topic(1), 4, 1, topic_configs={"max.message.bytes": str(RETRY_LIMIT)})])
        finally:
            await admin.close()
    asyncio.run(make())
    return tansu


def settings(broker) -> Settings:
    return Settings(kafka_bootstrap=broker.bootstrap, kafka_idempotence=False, kafka_session_timeout_ms=2000)


async def requests_end(lg) -> int:
    return sum((await lg.end_offsets(str(ev.Topic.REQUESTS))).values())


async def test_an_append_a_topic_would_take_in_part_appends_nothing(small_topics):
    lg = open_log(settings(small_topics))
    await lg.start()
    try:
        before = await requests_end(lg)
        fits, over = b"x" * (RETRY_LIMIT - 1000), b"x" * (RETRY_LIMIT + 1000)  # the second fits email.requests alone
        with pytest.raises(LogRecordTooLarge) as refused:
            await lg.append_many(str(ev.Topic.REQUESTS), [("a", fits), ("b", fits), ("c", over)])
        assert refused.value.index == 2
        assert await requests_end(lg) == before  # not the two that fit either
        await lg.append_many(str(ev.Topic.REQUESTS), [("a", fits), ("b", fits)])
        assert await requests_end(lg) == before + 2
        # a topic's own limit, not a request's: the events topic (made by Postline) takes the larger record
        await lg.append(str(ev.Topic.EVENTS), "k", over)
        assert lg.writable()
    finally:
        await lg.close()


def appended(broker) -> int:
    """Records on ``email.requests`` now (a log of its own: one event loop per ``asyncio.run``)."""
    async def read() -> int:
        lg = open_log(settings(broker))
        await lg.start()
        try:
            return await requests_end(lg)
        finally:
            await lg.close()
    return asyncio.run(read())


def send(to: str, attachment_bytes: int = 0) -> dict:
    body = {"from": "billing@acme.test", "to": [to], "subject": "Invoice", "text": "Attached."}
    if attachment_bytes:
        content = base64.b64encode(b"\x89" * attachment_bytes).decode()
        body["attachments"] = [{"filename": "invoice.pdf", "content": content, "content_type": "application/pdf"}]
    return body


def test_a_strict_batch_with_an_item_the_log_cannot_take_sends_nothing(tmp_path, small_topics):
    """Strict: 413 naming the item, nothing appended; permissive: that item's 413 in
    ``errors``, the others sent; one send alike: 413, the API still ready."""
    dns = DnsServer().start()
    env = {"POSTLINE_KAFKA_BOOTSTRAP": small_topics.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "2000", "POSTLINE_DNS_SERVER": dns.address,
           "POSTLINE_SUBMISSION_PORT": "0"}
    proc = PostlineProcess(tmp_path / "api", role="api", env=env).start()
    try:
        api = Api(proc.url)
        _, key = production_service(api, dns)
        before = appended(small_topics)
        large = send("bob@example.com", attachment_bytes=200_000)  # ~270 KB base64: over 250,000 encoded

        strict = api.http.post("/emails/batch", json=[send("ann@example.com"), large], headers={"Api-Key": key})
        assert strict.status_code == 413, strict.text
        assert strict.json()["error"].startswith("[1]: the message is too large for the event log"), strict.json()
        assert appended(small_topics) == before  # ann's send was not appended either

        permissive = api.http.post("/emails/batch", json=[large, send("ann@example.com")],
                                   headers={"Api-Key": key, "x-batch-validation": "permissive"})
        assert permissive.status_code == 200, permissive.text
        answer = permissive.json()
        assert len(answer["data"]) == 1 and [e["index"] for e in answer["errors"]] == [0], answer
        assert "too large for the event log" in answer["errors"][0]["message"]
        assert appended(small_topics) == before + 1

        one = api.send(key, large)
        assert one.status_code == 413 and "too large for the event log" in one.json()["error"], one.text
        assert api.send(key, send("ann@example.com")).status_code == 200  # ready as before
        assert appended(small_topics) == before + 2
    finally:
        proc.stop()
        dns.stop()


async def test_the_item_too_large_is_named_by_its_place_in_the_batch_whatever_the_limits_left_out(small_topics):
    """Kafka's rate limits (GossipQuota) append only the items the limits allowed: the item the
    topic refuses is named by its place among all of them (its place among those appended
    named a valid send, refused in its stead)."""
    from shared.quota import Take, Window
    from shared.quota.gossip import GossipQuota

    lg = open_log(settings(small_topics))
    await lg.start()
    try:
        quota = GossipQuota(lg)
        over = Take("svc", 1, (Window("minute", 60, 1, 0),))  # a window with no room: refused by the limit
        fits = Take("svc2", 1, (Window("minute", 60, 1, 100),))
        items = [("a", b"x"), ("b", b"x"), ("c", b"x" * (RETRY_LIMIT + 1000))]
        with pytest.raises(LogRecordTooLarge) as refused:
            await quota.admit(str(ev.Topic.REQUESTS), [over, fits, fits], items)
        assert refused.value.index == 2  # not 1, its place among the two appended
    finally:
        await lg.close()
