"""The consumer loop's poison handling, on both logs (embedded SQLite and Kafka via tansu):
a record a step cannot handle is dead-lettered and its partition moves on; an
infrastructure fault retries the batch; a batch that is mostly poison halts the consumer."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from shared import events as ev
from shared.consumer_loop import ConsumerHalted, InvalidRecord, PoisonGuard, commit, run_consumer
from shared.log.kafka import KafkaLog
from shared.log.port import CommitFailed, Consumer
from shared.log.sqlite import SqliteLog
from shared.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
async def event_log(request, tmp_path):
    if request.param == "sqlite":
        lg = SqliteLog(tmp_path / "log.sqlite3", partitions=4)
    else:
        tansu = request.getfixturevalue("tansu")
        lg = KafkaLog(Settings(kafka_bootstrap=tansu.bootstrap, kafka_idempotence=False,
                               kafka_session_timeout_ms=2000))
    await lg.start()
    yield lg
    await lg.close()


@pytest.fixture
def topic():
    return f"test.{uuid.uuid4().hex[:10]}"


async def read_all(consumer: Consumer, want: int, rounds: int = 20) -> list:
    await consumer.start()
    got = []
    try:
        for _ in range(rounds):
            got += await consumer.poll(max_records=1000, timeout=0.5)
            if len(got) >= want:
                break
    finally:
        await consumer.close()
    return got


async def dead_letters_of(lg, topic: str, want: int = 1, rounds: int = 20) -> list:
    """The dead-letter records whose source is ``topic`` (the topic is shared by all tests)."""
    got = []
    for _ in range(rounds):
        got = [r for r in await read_all(lg.consumer([ev.Topic.DEAD_LETTER], None), 10**9, rounds=2)
               if r.headers.get("source", "").startswith(f"{topic}/")]
        if len(got) >= want:
            break
    return got


async def run_until(lg, topic: str, group: str, handle, guard: PoisonGuard, done) -> None:
    """Run the loop until ``done()`` holds (with a deadline), then stop it cleanly."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_consumer(lg.consumer([topic], group), handle, stop, guard=guard,
                                            poll_timeout=0.2))
    for _ in range(150):
        if done() or task.done():
            break
        await asyncio.sleep(0.1)
    stop.set()
    await task
    assert done()


async def test_invalid_record_is_dead_lettered_and_the_partition_moves_on(event_log, topic):
    values = [b"ok-0", b"bad", b"ok-1", b"ok-2", b"ok-3"]
    positions = [await event_log.append(topic, "one-key", v) for v in values]
    guard, handled, group = PoisonGuard(event_log, "test-group"), [], f"g-{uuid.uuid4().hex[:6]}"

    async def handle(records):
        for r in records:
            with guard.for_record(r):
                if r.value == b"bad":
                    raise InvalidRecord("no such template")
                handled.append(r.value)

    await run_until(event_log, topic, group, handle, guard, lambda: len(handled) == 4)
    assert handled == [b"ok-0", b"ok-1", b"ok-2", b"ok-3"]
    [dead] = await dead_letters_of(event_log, topic)
    part, off = positions[1]
    assert dead.value == b"bad" and dead.key == "one-key"
    assert dead.headers == {"error": "InvalidRecord: no such template", "group": "test-group",
                            "source": f"{topic}/{part}/{off}"}
    # committed past the poison record: the group has nothing left to read
    assert await read_all(event_log.consumer([topic], group), 1, rounds=4) == []


async def test_a_step_bug_is_poison_but_an_infrastructure_fault_retries_the_batch(event_log, topic):
    await event_log.append_many(topic, [("k", b"ok-0"), ("k", b"crash"), ("k", b"ok-1")])
    guard, handled, calls = PoisonGuard(event_log, "test-group"), [], []

    async def handle(records):
        calls.append(len(records))
        if len(calls) == 1:
            raise ConnectionError("store down")  # nothing marked: the whole batch comes again
        for r in records:
            with guard.for_record(r):
                if r.value == b"crash":
                    {}["missing"]  # a bug meeting this one record
                handled.append(r.value)

    await run_until(event_log, topic, f"g-{uuid.uuid4().hex[:6]}", handle, guard, lambda: len(handled) == 2)
    assert len(calls) >= 2 and handled == [b"ok-0", b"ok-1"]
    [dead] = await dead_letters_of(event_log, topic)
    assert dead.value == b"crash" and dead.headers["error"].startswith("KeyError")


async def test_a_mostly_poison_batch_halts_without_dead_lettering_or_committing(event_log, topic):
    await event_log.append_many(topic, [("k", b"ok")] + [("k", f"bad-{i}".encode()) for i in range(9)])
    guard, group = PoisonGuard(event_log, "test-group"), f"g-{uuid.uuid4().hex[:6]}"

    async def handle(records):
        for r in records:
            with guard.for_record(r):
                if r.value.startswith(b"bad"):
                    raise TypeError("handler from a bad deploy")

    with pytest.raises(ConsumerHalted, match=r"9 of 10 records .* halting"):
        await asyncio.wait_for(run_consumer(event_log.consumer([topic], group), handle, asyncio.Event(),
                                            guard=guard, poll_timeout=0.2), timeout=60)
    assert await dead_letters_of(event_log, topic, want=1, rounds=1) == []
    assert len(await read_all(event_log.consumer([topic], group), 10)) == 10  # nothing committed


async def test_undecodable_records_are_dead_lettered(event_log, topic):
    guard = PoisonGuard(event_log, "test-group")
    await event_log.append(topic, "k", b"{not json")
    [record] = await read_all(event_log.consumer([topic], None), 1)
    assert await guard.decode(record) is None
    await guard.settle([record])  # one bad record of one: dead-lettered, not a halt
    [dead] = await dead_letters_of(event_log, topic)
    assert dead.value == b"{not json" and dead.headers["group"] == "test-group"


class _Rebalanced(Consumer):
    """A consumer whose partitions went to another member: commit raises, as the port says."""
    async def start(self): ...
    async def poll(self, max_records=500, timeout=1.0): return []
    async def caught_up(self): return True
    async def close(self): ...
    async def commit(self, records): raise CommitFailed("g: commit refused after a rebalance")


async def test_a_commit_refused_after_a_rebalance_does_not_stop_the_loop():
    await commit(_Rebalanced(), [])  # logged; the partition's new owner processes the records
