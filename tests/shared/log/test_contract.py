"""One contract suite for every event-log adapter (embedded SQLite, Kafka via tansu).

``LogContract`` holds the tests; each adapter has a thin subclass that says how to open
its log, how to make it unreachable and how a consumer loses its partitions (the
pattern of eventsourcing's per-adapter test subclasses)."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid

import pytest

from shared.log.kafka import KafkaLog
from shared.log.port import CommitFailed, LogNotStarted, LogRecordTooLarge, LogUnavailable
from shared.log.sqlite import SqliteLog
from shared.settings import Settings
from tests.support.broker import free_port


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


async def member_with_a_batch(lg, topic: str, n: int):
    """``(group, consumer, records)``: ``n`` records appended, then polled by the first member of a new group."""
    await lg.append_many(topic, [(f"k{i}", b"x") for i in range(n)])
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = lg.consumer([topic], group)
    await consumer.start()
    records = await drain(consumer, n)
    assert len(records) == n
    return group, consumer, records


async def _scan(lg, topic, part, **kw) -> list[bytes]:
    return [r.value for batch in [b async for b in lg.scan(topic, part, **kw)] for r in batch]


class LogContract:
    """The tests every adapter must pass; subclasses implement the three hooks below."""

    def new_log(self, request, tmp_path):
        """A log over the test's storage; two calls share it, so a test can 'restart'."""
        raise NotImplementedError

    def unreachable_log(self, request, tmp_path):
        """A log whose broker or storage cannot be reached."""
        raise NotImplementedError

    async def lose_partitions(self, lg, consumer, topic: str, group: str) -> None:
        """Make ``consumer`` lose the partitions it polled (close, or a rebalance)."""
        await consumer.close()

    @pytest.fixture
    def make_log(self, request, tmp_path):
        return lambda: self.new_log(request, tmp_path)

    async def test_append_returns_position_and_consumer_reads_it(self, make_log, topic):
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


    async def test_same_key_same_partition_in_order(self, make_log, topic):
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


    async def test_a_groups_commits_are_readable_by_anyone(self, make_log, topic):
        """``committed``: what a group committed, per partition, as another process reads it
        (with ``end_offsets``: whether the group has handled everything appended before)."""
        lg = make_log()
        await lg.start()
        for i in range(6):  # one record a batch: tansu's ListOffsets counts a batch of several as one
            await lg.append(topic, f"k{i}", f"v{i}".encode())
        group = f"g-{uuid.uuid4().hex[:6]}"
        assert await lg.committed(group, topic) == {}
        c = lg.consumer([topic], group)
        await c.start()
        recs = await drain(c, 6)
        await c.commit(recs)
        ends = await lg.end_offsets(topic)
        assert {p: o for p, o in (await lg.committed(group, topic)).items() if ends.get(p)} == \
            {p: e for p, e in ends.items() if e}
        await c.close()
        await lg.close()

    async def test_group_resumes_after_last_commit(self, make_log, topic):
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


    async def test_uncommitted_records_are_redelivered(self, make_log, topic):
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


    async def test_caught_up_after_reading_existing_records(self, make_log, topic):
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

    async def test_end_offsets_are_past_every_acknowledged_append_of_any_process(self, make_log, topic):
        """Read-your-writes rests on it: ``end_offsets`` read after an append (here by another
        instance, as another process would) is past that append's offset."""
        writer, reader = make_log(), make_log()
        await writer.start()
        await reader.start()
        await reader.append(topic, "warm-up", b"x")  # the topic exists for both
        for i in range(5):
            part, off = await writer.append(topic, f"k{i}", b"v")
            assert (await reader.end_offsets(topic))[part] >= off + 1
        await writer.close()
        await reader.close()

    async def test_records_survive_reopen(self, make_log, topic):
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

    async def test_append_before_start_raises_log_not_started(self, make_log, topic):
        lg = make_log()
        with pytest.raises(LogNotStarted):
            await lg.append(topic, "k", b"v")
        with pytest.raises(LogNotStarted):
            await lg.append_many(topic, [("k", b"v")])

    async def test_start_raises_log_unavailable_when_the_broker_or_store_is_down(self, request, tmp_path):
        lg = self.unreachable_log(request, tmp_path)
        with pytest.raises(LogUnavailable):
            await asyncio.wait_for(lg.start(), timeout=60)
        await lg.close()

    async def test_commit_after_losing_partitions_raises_commit_failed(self, make_log, topic):
        lg = make_log()
        await lg.start()
        group, c, recs = await member_with_a_batch(lg, topic, 20)
        c.release()  # given up (a rebalance waits for a batch in hand: test_a_rebalance_waits_for_the_batch_in_hand)
        await self.lose_partitions(lg, c, topic, group)
        with pytest.raises(CommitFailed):
            await c.commit(recs)
        await c.close()
        await lg.close()


    async def test_scan_from_an_offset_or_a_time_up_to_the_end(self, make_log, topic):
        """``scan`` (the delivery-ledger rebuild reads outcomes with it): one partition from an
        offset or from a time up to its end."""
        lg = make_log()
        await lg.start()
        first = [await lg.append(topic, "k", f"a{i}".encode()) for i in range(3)]
        part = first[0][0]
        await asyncio.sleep(0.05)
        between = int(time.time() * 1000)
        await asyncio.sleep(0.05)
        await lg.append_many(topic, [("k", b"b0"), ("k", b"b1")])
        assert await _scan(lg, topic, part) == [b"a0", b"a1", b"a2", b"b0", b"b1"]
        assert await _scan(lg, topic, part, start=first[1][1]) == [b"a1", b"a2", b"b0", b"b1"]
        assert await _scan(lg, topic, part, since_ms=between) == [b"b0", b"b1"]
        assert await _scan(lg, topic, part, since_ms=int(time.time() * 1000) + 60_000) == []
        assert await lg.partition_count(topic) >= 1
        await lg.close()


    async def test_on_assigned_runs_with_resume_offsets_before_any_record(self, make_log, topic):
        """A group consumer's ``on_assigned`` hook runs with the resume offsets before any
        record of the partitions is returned."""
        lg = make_log()
        await lg.start()
        await lg.append_many(topic, [("k", f"v{i}".encode()) for i in range(5)])
        group = f"g-{uuid.uuid4().hex[:6]}"
        c = lg.consumer([topic], group)
        await c.start()
        got = await drain(c, 5)
        await c.commit(got[:2])  # resume at the third record of the partition
        await c.close()
        part = got[0].partition

        calls, polled, at_end = [], [], []

        async def hook(starts):  # slow, as a ledger rebuild can be: polls go on meanwhile
            calls.append((dict(starts), len(polled)))
            await asyncio.sleep(1.0)
            at_end.append(len(polled))

        c = lg.consumer([topic], group)
        c.on_assigned = hook
        await c.start()
        for _ in range(30):  # one poll at a time, so the hook sees what came back so far
            polled += await c.poll(max_records=1000, timeout=0.5)
            if len(polled) >= 3:
                break
        assert [r.value for r in polled] == [b"v2", b"v3", b"v4"]
        assert calls and calls[0][1] == 0 and at_end == [0]  # no record came back before the hook ended
        assert calls[0][0][(topic, part)] == got[2].offset
        await c.close()
        await lg.close()


class TestSqliteLog(LogContract):
    def new_log(self, request, tmp_path):
        return SqliteLog(tmp_path / "log.sqlite3", partitions=4)

    def unreachable_log(self, request, tmp_path):
        (tmp_path / "a-file").write_text("not a directory")
        return SqliteLog(tmp_path / "a-file" / "log.sqlite3")


@pytest.mark.kafka
class TestKafkaLog(LogContract):
    def new_log(self, request, tmp_path, bootstrap=None):
        tansu = request.getfixturevalue("tansu")
        return KafkaLog(Settings(kafka_bootstrap=bootstrap or tansu.bootstrap, kafka_idempotence=False,
                                 kafka_session_timeout_ms=2000))

    def unreachable_log(self, request, tmp_path):
        return self.new_log(request, tmp_path, bootstrap=f"127.0.0.1:{free_port()}")  # nothing listens

    async def lose_partitions(self, lg, consumer, topic, group):
        """A second member joins: after the rebalance the first owns only some partitions."""
        other = lg.consumer([topic], group)
        await other.start()
        for _ in range(100):
            await other.poll(timeout=0.1)
            if other._c.assignment() and len(consumer._c.assignment()) < 4:
                break
        assert len(consumer._c.assignment()) < 4
        await other.close()



class _Kept(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.kafka
async def test_a_consumer_says_while_it_waits_for_its_assignment_and_what_it_got(tansu, topic):
    """Until the group gives it partitions, a consumer warns every
    ``unassigned_warning_seconds`` (30 s in service; 0.2 s here, where tansu takes about a
    second to complete a group's first join); once assigned it logs the partitions by name."""
    kept = _Kept()
    logger = logging.getLogger("shared.log.kafka")
    logger.addHandler(kept)
    level = logger.level
    logger.setLevel(logging.INFO)
    lg = KafkaLog(Settings(kafka_bootstrap=tansu.bootstrap, kafka_idempotence=False, kafka_session_timeout_ms=2000))
    await lg.start()
    try:
        await lg.append(topic, "k", b"v")
        consumer = lg.consumer([topic], "watched")
        consumer.unassigned_warning_seconds = 0.2
        assert not consumer.assigned  # a group member has nothing until the group says so
        await consumer.start()
        assert consumer.assigned
        assert [r.value for r in await drain(consumer, 1)] == [b"v"]
        waited = [m for m in kept.messages if m.startswith("consumer group watched: no partition assignment for")]
        assigned = [m for m in kept.messages if m.startswith("consumer group watched: assigned")]
        assert waited and assigned, kept.messages
        assert kept.messages.index(waited[0]) < kept.messages.index(assigned[0])
        assert all(f"{topic}[{p}]" in assigned[0] for p in range(4))  # the only member: every partition, by name
        before = len(kept.messages)
        await consumer.poll(timeout=0.1)
        assert len(kept.messages) == before  # assigned: no more warnings
        await consumer.close()
    finally:
        logger.removeHandler(kept)
        logger.setLevel(level)
        await lg.close()


@pytest.mark.kafka
async def test_a_rebalance_waits_for_the_batch_in_hand(tansu, topic):
    """A member that joins takes no partition from another while that one holds records it
    polled: the group waits until they are released (handled and committed), so the newcomer
    never gets records the first member is still handling (a relay would deliver them twice)."""
    lg = KafkaLog(Settings(kafka_bootstrap=tansu.bootstrap, kafka_idempotence=False, kafka_session_timeout_ms=2000))
    await lg.start()
    a = b = None
    try:
        group, a, held = await member_with_a_batch(lg, topic, 40)
        b = lg.consumer([topic], group)
        joining = asyncio.create_task(b.start())
        await asyncio.sleep(3.0)  # a's heartbeat (every 400 ms) has long heard of the rebalance
        assert not joining.done(), "the newcomer got partitions while the batch was still in hand"
        # a loop gathering its batch (analytics) polls again meanwhile: the poll returns, not
        # waiting for the rebalance that waits for this batch
        assert await asyncio.wait_for(a.poll(timeout=0.5), 5) == []
        await a.commit(held)  # during the rebalance: a is still the owner
        a.release()
        await asyncio.wait_for(joining, 30)
        for _ in range(50):  # a's share of the new assignment may come a moment after b's
            if len(a._c.assignment()) < 4:
                break
            await a.poll(timeout=0.1)
        assert b._c.assignment() and len(a._c.assignment()) < 4
        assert await drain(b, 1, rounds=4) == []  # nothing a held comes again
    finally:
        for c in (a, b):
            if c is not None:
                await c.close()
        await lg.close()


@pytest.mark.kafka
async def test_a_batch_the_group_stopped_waiting_for_is_no_longer_current(tansu, topic, monkeypatch):
    """A batch held past the rebalance's wait (``REVOKE_WAIT``, 1 s here) goes to the group's
    next assignment: the member that polled it learns so (``batch_current``), so a relay
    starts no new delivery of it (its records are the new owner's, uncommitted); and commits
    nothing of it."""
    monkeypatch.setattr("shared.log.kafka.REVOKE_WAIT", 1.0)
    lg = KafkaLog(Settings(kafka_bootstrap=tansu.bootstrap, kafka_idempotence=False, kafka_session_timeout_ms=2000))
    await lg.start()
    a = b = None
    try:
        group, a, held = await member_with_a_batch(lg, topic, 40)
        assert a.batch_current()
        b = lg.consumer([topic], group)
        joining = asyncio.create_task(b.start())
        await asyncio.sleep(0.5)  # the rebalance has begun and still waits for a's batch
        assert a.batch_current()
        await asyncio.wait_for(joining, 30)  # never released: the wait ran out
        deadline = time.monotonic() + 10
        while a.batch_current() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # a's own join completes in its coordinator's task
        assert not a.batch_current()
        assert b._c.assignment()
        with pytest.raises(CommitFailed):
            await a.commit(held)
        # a took part in that rebalance: what it holds again was nobody else's meanwhile
        deadline = time.monotonic() + 10
        while not a.assignment_continues and time.monotonic() < deadline:
            await a.poll(timeout=0.1)  # a's new assignment is handed to it in its coordinator's task
        assert a.assignment_continues and not b.assignment_continues  # b's: its first
    finally:
        for c in (a, b):
            if c is not None:
                await c.close()
        await lg.close()


def _member_in_a_thread(bootstrap: str, topic: str, group: str, joined: threading.Event,
                        stop: threading.Event) -> threading.Thread:
    """Another member of ``group`` on an event loop of its own (it heartbeats while the
    test's loop is blocked), polling until ``stop``."""
    async def run() -> None:
        lg = KafkaLog(Settings(kafka_bootstrap=bootstrap, kafka_idempotence=False, kafka_session_timeout_ms=1000))
        await lg.start()
        member = lg.consumer([topic], group)
        await member.start()
        joined.set()
        while not stop.is_set():
            await member.poll(timeout=0.2)
            member.release()  # a rebalance does not wait for it
        await member.close()
        await lg.close()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    return thread


@pytest.mark.kafka
async def test_the_batch_of_a_member_expelled_for_missed_heartbeats_is_no_longer_current(tansu, topic):
    """A member whose heartbeats stop for longer than the session timeout (its process
    stalled: here its event loop is blocked) is expelled by the broker, and the group gives
    its partitions to another member; once it hears so, the batch it polled before is no
    longer its own."""
    lg = KafkaLog(Settings(kafka_bootstrap=tansu.bootstrap, kafka_idempotence=False, kafka_session_timeout_ms=1000))
    await lg.start()
    a, joined, stop, thread = None, threading.Event(), threading.Event(), None
    try:
        group, a, _ = await member_with_a_batch(lg, topic, 10)
        await asyncio.sleep(0.5)
        assert a.batch_current()
        thread = _member_in_a_thread(tansu.bootstrap, topic, group, joined, stop)
        assert joined.wait(30)  # our loop is blocked meanwhile: no heartbeat, and the newcomer got a's partitions
        deadline = time.monotonic() + 10
        while a.batch_current() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not a.batch_current()
        deadline = time.monotonic() + 30
        while not (a.assigned and a._c.assignment()) and time.monotonic() < deadline:
            await a.poll(timeout=0.2)  # a rejoins and gets a share back
        assert a._c.assignment()
        assert not a.assignment_continues  # the group went on without it: its partitions were another's
    finally:
        stop.set()
        if thread is not None:
            thread.join(10)
        if a is not None:
            await a.close()
        await lg.close()


@pytest.mark.kafka
async def test_a_member_stays_in_its_group_while_its_assignment_hook_outlasts_the_session(tansu, topic):
    """The ``on_assigned`` hook runs inside the rebalance (a relay's ledger rebuild, which can
    take longer than the session timeout): the member heartbeats meanwhile, so a member
    joining then does not get it expelled — an expelled relay would rebuild again at its
    rejoin (its partitions were another's meanwhile), and again at every rejoin while its
    rebuild outlasts the session."""
    lg = KafkaLog(Settings(kafka_bootstrap=tansu.bootstrap, kafka_idempotence=False, kafka_session_timeout_ms=1000))
    await lg.start()
    await lg.append_many(topic, [(f"k{i}", b"x") for i in range(8)])
    group, joined, stop, thread = f"g-{uuid.uuid4().hex[:6]}", threading.Event(), threading.Event(), None
    a = lg.consumer([topic], group)
    calls: list[tuple[set, bool]] = []
    rebuilding = asyncio.Event()

    async def hook(starts):
        calls.append((set(starts), a.assignment_continues))
        if len(calls) == 1:
            rebuilding.set()
            await asyncio.sleep(4.0)  # four session timeouts

    a.on_assigned = hook
    try:
        starting = asyncio.create_task(a.start())
        await asyncio.wait_for(rebuilding.wait(), 30)
        thread = _member_in_a_thread(tansu.bootstrap, topic, group, joined, stop)  # joins meanwhile
        await asyncio.wait_for(starting, 30)
        assert await asyncio.to_thread(joined.wait, 30)
        deadline = time.monotonic() + 30
        while len(calls) < 2 and time.monotonic() < deadline:
            await a.poll(timeout=0.2)  # a's share of the rebalance the newcomer began
            a.release()  # what it polled is left to whoever owns it next
        assert len(calls[0][0]) == 4 and len(calls) >= 2
        assert all(continues for _, continues in calls[1:]), calls  # never expelled
    finally:
        stop.set()
        if thread is not None:
            thread.join(10)
        await a.close()
        await lg.close()


@pytest.mark.kafka
async def test_a_member_whose_assignment_hook_is_stuck_gives_its_partitions_up(tansu, topic):
    """A hook that does not end (a ledger rebuild waiting for a disk that cannot be written)
    heartbeats only up to ``hook_heartbeat_limit`` (the poll interval; 2 s here): then the
    member stops heartbeating, so a member that joins gets every partition instead of the
    group waiting for the stuck one. Meanwhile the stuck member does not say it is assigned
    (its readiness)."""
    lg = KafkaLog(Settings(kafka_bootstrap=tansu.bootstrap, kafka_idempotence=False, kafka_session_timeout_ms=1000))
    await lg.start()
    group, never, stuck = f"g-{uuid.uuid4().hex[:6]}", asyncio.Event(), asyncio.Event()
    a, b = lg.consumer([topic], group), lg.consumer([topic], group)
    a.hook_heartbeat_limit = 2.0

    async def hook(starts):
        stuck.set()
        await never.wait()

    a.on_assigned = hook
    starting = asyncio.create_task(a.start())
    try:
        await asyncio.wait_for(stuck.wait(), 30)
        assert not a.assigned
        await asyncio.sleep(3.5)  # past the limit and a session timeout: a is out of the group
        await asyncio.wait_for(b.start(), 30)
        deadline = time.monotonic() + 10
        while len(b._c.assignment()) < 4 and time.monotonic() < deadline:
            await b.poll(timeout=0.2)
            b.release()
        assert len(b._c.assignment()) == 4
    finally:
        never.set()
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await b.close()
        await a.close()
        await lg.close()


@pytest.mark.kafka
async def test_topics_take_a_whole_send_and_a_larger_record_is_the_records_fault(tansu):
    """The topics Postline creates take records up to 16 MiB (a broker's default ~1 MB would
    refuse every send with a large attachment, answered 503 "safe to retry" for ever); a
    record over the limit is ``LogRecordTooLarge`` and leaves the log writable (ready)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from shared import events as ev
    from shared.log import open_log
    from shared.log.kafka import MAX_RECORD_BYTES

    lg = open_log(Settings(kafka_bootstrap=tansu.bootstrap, kafka_idempotence=False, kafka_session_timeout_ms=2000))
    await lg.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap)
    await admin.start()
    try:
        topics = [str(ev.Topic.REQUESTS), ev.retry_topic(0)]
        [answer] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
        for resource in answer.resources:
            configs = {entry[0]: entry[1] for entry in resource[4]}
            assert configs["max.message.bytes"] == str(MAX_RECORD_BYTES), (resource[3], configs)
        # the claims topic keeps every record of a key's 24 h before compaction may drop one
        [claims] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, str(ev.Topic.IDEMPOTENCY))])
        configs = {entry[0]: entry[1] for entry in claims.resources[0][4]}
        assert int(configs["min.compaction.lag.ms"]) >= 25 * 3600 * 1000, configs
        await lg.append(str(ev.Topic.REQUESTS), "k", b"x" * (2 * 1024 * 1024))  # a 2 MB send goes through
        with pytest.raises(LogRecordTooLarge):
            await lg.append(str(ev.Topic.REQUESTS), "k", b"x" * (MAX_RECORD_BYTES + 1))
        assert lg.writable()
    finally:
        await admin.close()
        await lg.close()
