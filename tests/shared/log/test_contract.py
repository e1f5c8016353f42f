"""One contract suite for every event-log adapter (embedded SQLite, Kafka via tansu)."""
from __future__ import annotations

import uuid

import pytest

from shared.log.kafka import KafkaLog
from shared.log.sqlite import SqliteLog
from shared.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def make_log(request, tmp_path):
    """A factory of logs sharing one storage, so a test can 'restart' the process."""
    opened = []

    def factory():
        if request.param == "sqlite":
            lg = SqliteLog(tmp_path / "log.sqlite3", partitions=4)
        else:
            tansu = request.getfixturevalue("tansu")
            lg = KafkaLog(Settings(kafka_bootstrap=tansu.bootstrap, kafka_idempotence=False,
                                   kafka_session_timeout_ms=2000))
        opened.append(lg)
        return lg

    yield factory


@pytest.fixture
def topic():
    return f"test.{uuid.uuid4().hex[:10]}"


async def drain(consumer, want: int, rounds: int = 30):
    got = []
    for _ in range(rounds):
        got += await consumer.poll(max_records=1000, timeout=0.5)
        if len(got) >= want:
            break
    return got


async def test_append_returns_position_and_consumer_reads_it(make_log, topic):
    lg = make_log()
    await lg.start()
    part, off = await lg.append(topic, "k", b"hello", {"h": "1"})
    assert off >= 0 and part >= 0
    c = lg.consumer([topic], None)
    await c.start()
    recs = await drain(c, 1)
    assert [(r.key, r.value, r.partition, r.offset) for r in recs] == [("k", b"hello", part, off)]
    assert recs[0].headers == {"h": "1"}
    await c.close()
    await lg.close()


async def test_same_key_same_partition_in_order(make_log, topic):
    lg = make_log()
    await lg.start()
    positions = [await lg.append(topic, "user-1", str(i).encode()) for i in range(20)]
    assert len({p for p, _ in positions}) == 1
    offsets = [o for _, o in positions]
    assert offsets == sorted(offsets) and len(set(offsets)) == 20
    c = lg.consumer([topic], None)
    await c.start()
    recs = await drain(c, 20)
    assert [r.value for r in recs] == [str(i).encode() for i in range(20)]
    await c.close()
    await lg.close()


async def test_group_resumes_after_last_commit(make_log, topic):
    lg = make_log()
    await lg.start()
    await lg.append_many(topic, [(f"k{i}", f"v{i}".encode()) for i in range(10)])
    group = f"g-{uuid.uuid4().hex[:6]}"
    c = lg.consumer([topic], group)
    await c.start()
    recs = await drain(c, 10)
    assert len(recs) == 10
    first_half = sorted(recs, key=lambda r: (r.partition, r.offset))
    # commit only the records of one partition: the rest must come back
    done_part = first_half[0].partition
    committed = [r for r in recs if r.partition == done_part]
    await c.commit(committed)
    await c.close()
    await lg.close()

    lg2 = make_log()
    await lg2.start()
    c2 = lg2.consumer([topic], group)
    await c2.start()
    again = await drain(c2, 10 - len(committed), rounds=8)
    assert sorted(r.value for r in again) == sorted(r.value for r in recs if r.partition != done_part)
    await c2.close()
    await lg2.close()


async def test_uncommitted_records_are_redelivered(make_log, topic):
    lg = make_log()
    await lg.start()
    await lg.append(topic, "a", b"1")
    group = f"g-{uuid.uuid4().hex[:6]}"
    c = lg.consumer([topic], group)
    await c.start()
    assert len(await drain(c, 1)) == 1
    await c.close()  # no commit: a crash before the effect was durable
    c = lg.consumer([topic], group)
    await c.start()
    assert [r.value for r in await drain(c, 1)] == [b"1"]
    await c.close()
    await lg.close()


async def test_caught_up_after_reading_existing_records(make_log, topic):
    lg = make_log()
    await lg.start()
    await lg.append_many(topic, [(str(i), b"x") for i in range(5)])
    c = lg.consumer([topic], None)
    await c.start()
    recs = await drain(c, 5)
    assert len(recs) == 5
    assert await c.caught_up()
    await c.close()
    await lg.close()


async def test_records_survive_reopen(make_log, topic):
    lg = make_log()
    await lg.start()
    await lg.append(topic, "durable", b"yes")
    await lg.close()
    lg = make_log()
    await lg.start()
    c = lg.consumer([topic], None)
    await c.start()
    assert [r.value for r in await drain(c, 1)] == [b"yes"]
    await c.close()
    await lg.close()
