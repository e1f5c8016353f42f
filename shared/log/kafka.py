"""Kafka adapter of the event-log port (aiokafka).

Production defaults, set explicitly because aiokafka's own are weaker: ``acks="all"``,
idempotent producer, no auto-commit (offsets are committed by the consumer after its
effect is durable), ``auto_offset_reset="earliest"`` so a new group misses nothing.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, AsyncGenerator, Awaitable, Callable, Iterator, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (CommitFailedError, IllegalStateError, KafkaConnectionError, KafkaError, KafkaTimeoutError,
                             MessageSizeTooLargeError, RecordTooLargeError, RequestTimedOutError, TopicAlreadyExistsError)

from shared.events import Topic, retry_topic
from shared.log.fresh_query import FreshQuery
from shared.log.port import (CommitFailed, Consumer, EventLog, LogError, LogNotStarted, LogRecordTooLarge, LogRefused,
                             LogTimeout, LogUnavailable, Record)
from shared.settings import Settings
from shared.retry_schedule import MAX_LEVELS as MAX_RETRY_LEVELS

log = logging.getLogger(__name__)
REVOKE_WAIT = 20.0
"""Seconds a rebalance waits for a member's batch in hand; a longer batch lets it go on
(``batch_current`` turns False once it has: a relay starts no new delivery of it, and only
the deliveries already under way may be made twice). Under the other members' JoinGroup
request timeout (aiokafka's request_timeout_ms, 40 s), past which they log errors and
reconnect, and under a stop's grace period (services/supervisor.py, 30 s)."""
NO_GENERATION = -1  # aiokafka's generation of a member that is not (or no longer) in its group


MAX_RECORD_BYTES = 16 * 1024 * 1024
"""The largest record Postline appends and fetches: a send with 10 MB of attachments (base64
on the log) fits. Every topic Postline creates allows it (``max.message.bytes``: a broker's
default is ~1 MB, which would refuse any send over it)."""
RECORD_FRAMING = 128
"""Bytes a batch of one record adds to its key, value and headers, as the broker counts it
against ``max.message.bytes`` (the batch header is 61, the record's own varints and
attributes at most ~30): a record within this much of a topic's limit is refused by
Postline, not the broker."""

# The control topic keeps the latest state per entity; the quota topic one total per counted
# slot, and nothing older than its longest window (a day, plus a slot) plus a margin; the
# idempotency topic the latest record per key (its answer, once done) for the keys' 24 h plus a margin,
# and every record for those 25 h (``min.compaction.lag.ms``: a replica that starts reads each key's
# use from its first claim, services/api/idempotency/claims.py);
# the shaping topic each relay's latest heartbeat (with its warm-up counts of the day) and each provider's state.
TOPIC_CONFIGS = {Topic.CONTROL: {"cleanup.policy": "compact"},
                 Topic.QUOTA: {"cleanup.policy": "compact,delete", "retention.ms": str(26 * 3600 * 1000)},
                 Topic.SHAPING: {"cleanup.policy": "compact,delete", "retention.ms": str(26 * 3600 * 1000)},
                 Topic.IDEMPOTENCY: {"cleanup.policy": "compact,delete", "retention.ms": str(25 * 3600 * 1000),
                                     "min.compaction.lag.ms": str(25 * 3600 * 1000)}}


def translate(exc: KafkaError, what: str) -> LogError:
    """aiokafka's error as the port's: a timeout is ``LogTimeout``; what aiokafka marks
    ``retriable`` (or a lost connection) is ``LogUnavailable``; anything else the broker
    refused (record too large, not authorised, unknown topic) is ``LogRefused``."""
    message = f"{what}: {type(exc).__name__}: {exc}"
    if isinstance(exc, (KafkaTimeoutError, RequestTimedOutError)):
        return LogTimeout(message)
    if isinstance(exc, (RecordTooLargeError, MessageSizeTooLargeError)):
        return LogRecordTooLarge(message)
    if exc.retriable or isinstance(exc, KafkaConnectionError):
        return LogUnavailable(message)
    return LogRefused(message)


@contextlib.contextmanager
def kafka_errors(what: str) -> Iterator[None]:
    """Raise aiokafka's errors inside as the port's (``translate``)."""
    try:
        yield
    except KafkaError as exc:
        raise translate(exc, what) from exc


def topic_specs(partitions: int, replication: int) -> list[NewTopic]:
    """The topics Postline needs; the control topic is compacted (latest state per entity)."""
    specs = []
    for topic in Topic:
        configs = {"max.message.bytes": str(MAX_RECORD_BYTES), **TOPIC_CONFIGS.get(topic, {})}
        specs.append(NewTopic(str(topic), num_partitions=partitions, replication_factor=replication, topic_configs=configs))
    for level in range(MAX_RETRY_LEVELS):
        specs.append(NewTopic(retry_topic(level), num_partitions=partitions, replication_factor=replication,
                              topic_configs={"max.message.bytes": str(MAX_RECORD_BYTES)}))
    return specs


class KafkaLog(EventLog):
    def __init__(self, settings: Settings):
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._offsets: AIOKafkaConsumer | None = None  # no group, no assignment: asks for end offsets only
        self._admin: AIOKafkaAdminClient | None = None  # asks for groups' committed offsets (``committed``)
        self._admin_lock = asyncio.Lock()
        self._committed_queries: dict[tuple[str, str], FreshQuery[dict[int, int]]] = {}
        self._end_queries: dict[str, FreshQuery[dict[int, int]]] = {}
        self._offsets_lock = asyncio.Lock()
        self._limits: dict[str, int] = {}  # topic → the largest record it takes (``read_record_limits``)
        self._limits_reread: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.ensure_topics()
        await self.read_record_limits()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=self.settings.kafka_idempotence,
            linger_ms=2,
            max_request_size=MAX_RECORD_BYTES,
            # aiokafka's default is 40 s; appends are bounded by this setting anyway (deadline.py)
            request_timeout_ms=int(self.settings.log_append_timeout * 1000),
        )
        try:
            await self._producer.start()
        except KafkaError as exc:
            self._producer = None
            raise translate(exc, f"cannot reach Kafka at {self.bootstrap}") from exc

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise LogNotStarted("log is not started")
        return self._producer

    async def ensure_topics(self) -> None:
        """Create missing topics (idempotent). Brokers that auto-create topics need nothing."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in topic_specs(self.settings.kafka_partitions, self.settings.kafka_replication) if t.name not in existing]
            if missing:
                await admin.create_topics(missing)
        except TopicAlreadyExistsError:
            pass
        except KafkaError as exc:  # e.g. no CreateTopics permission: topics come from the init job
            log.warning("could not create topics: %s", exc)
        finally:
            await admin.close()

    async def read_record_limits(self) -> None:
        """The largest record each topic takes: its ``max.message.bytes`` as the broker
        applies it (its own default included), at most Postline's 16 MiB. Appends are checked
        against it before anything is sent, so an ``append_many`` that a topic would refuse in
        part (a topic made by hand with a smaller limit) is refused whole: a batch of sends is
        all or nothing. A request travels on from ``email.requests`` to the retry topics and,
        given up, to the dead-letter topic, so it is held to the smallest of their limits (else
        it would be accepted and then stick at its first deferral). Not readable (no
        DescribeConfigs permission, an older broker): the limits stay 16 MiB and the broker
        has the last word. Read at start and again after the broker refused a record
        (someone lowered a limit meanwhile), on the admin client ``committed`` uses."""
        try:
            admin = await self._admin_client()
            topics = [spec.name for spec in topic_specs(1, 1)]
            answers = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
        except KafkaError as exc:
            log.warning("could not read the topics' max.message.bytes (%s): records are checked by the broker only", exc)
            return
        limits = {}
        for answer in answers:
            for error, _, _, topic, entries in answer.resources:
                for name, value, *_ in entries if not error else []:
                    if name == "max.message.bytes" and value is not None:
                        limits[topic] = min(int(value), MAX_RECORD_BYTES)
        travels = [str(Topic.REQUESTS), *(retry_topic(level) for level in range(MAX_RETRY_LEVELS)), str(Topic.DEAD_LETTER)]
        limits[str(Topic.REQUESTS)] = min(limits.get(t, MAX_RECORD_BYTES) for t in travels)
        self._limits = limits

    def _fits(self, topic: str, items: Sequence[tuple[str | None, bytes]], headers: dict[str, str] | None = None) -> None:
        """Raise ``LogRecordTooLarge`` (naming the item) when one of ``items`` is over the topic's
        limit (``read_record_limits``); nothing is sent then."""
        limit = self._limits.get(topic, MAX_RECORD_BYTES)
        extra = RECORD_FRAMING + sum(len(k) + len(v.encode()) for k, v in (headers or {}).items())
        for i, (key, value) in enumerate(items):
            size = len(value) + (len(key.encode()) if key is not None else 0) + extra
            if size > limit:
                raise LogRecordTooLarge(f"append to {topic}: record {i} takes {size} bytes, the topic at most {limit} "
                                        "(its max.message.bytes)", index=i)

    def _limit_changed(self) -> None:
        """The broker refused a record the limits let through: read them again (once at a time)."""
        if self._limits_reread is None or self._limits_reread.done():
            self._limits_reread = asyncio.create_task(self.read_record_limits())

    async def append(self, topic: str, key: str | None, value: bytes,
                     headers: dict[str, str] | None = None) -> tuple[int, int]:
        producer = self._started()
        self._fits(str(topic), [(key, value)], headers)
        with self._refusals(), kafka_errors(f"append to {topic}"):
            md = await producer.send_and_wait(
                str(topic), value, key=key.encode() if key is not None else None,
                headers=[(k, v.encode()) for k, v in (headers or {}).items()] or None)
        return md.partition, md.offset

    async def append_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> list[tuple[int, int]]:
        producer = self._started()
        self._fits(str(topic), items)
        out = []
        with self._refusals(), kafka_errors(f"append to {topic}"):
            futs = [await producer.send(str(topic), v, key=k.encode() if k is not None else None) for k, v in items]
            for fut in futs:
                md = await fut
                out.append((md.partition, md.offset))
        return out

    @contextlib.contextmanager
    def _refusals(self) -> Iterator[None]:
        try:
            yield
        except LogRecordTooLarge:
            self._limit_changed()
            raise

    def consumer(self, topics: list[str], group: str | None) -> KafkaConsumer:
        return KafkaConsumer(self, [str(t) for t in topics], group)

    async def ping(self) -> bool:
        """A broker answers a metadata request now (raises ``LogUnavailable`` when none does)."""
        producer = self._started()
        with kafka_errors("cluster metadata"):
            await producer.client.fetch_all_metadata()
        return True

    async def scan(self, topic: str, partition: int, start: int = 0,
                   since_ms: int | None = None) -> AsyncGenerator[list[Record], None]:
        with kafka_errors(f"scan of {topic}/{partition}"):
            async with contextlib.aclosing(self._scan(str(topic), partition, start, since_ms)) as batches:
                async for batch in batches:
                    yield batch

    async def _scan(self, topic: str, partition: int, start: int, since_ms: int | None) -> AsyncGenerator[list[Record], None]:
        tp = TopicPartition(topic, partition)
        c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                             max_partition_fetch_bytes=MAX_RECORD_BYTES,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100)
        await c.start()
        try:
            c.assign([tp])
            end = (await c.end_offsets([tp]))[tp]
            if since_ms is not None:
                found = (await c.offsets_for_times({tp: since_ms}))[tp]
                if found is None or found.timestamp < 0:  # nothing appended since (tansu answers -1, not null)
                    return
                start = max(start, found.offset)
            c.seek(tp, start)
            while True:
                # A short look past the end too: some brokers (tansu) report the end of a partition
                # as the base offset of its last batch + 1; a fetch returns whole batches.
                msgs = (await c.getmany(tp, timeout_ms=200 if start >= end else 1000, max_records=2000)).get(tp, [])
                if msgs:
                    if recs := [_record(m) for m in msgs if m.offset >= start]:  # tansu may answer from earlier
                        yield recs
                    if msgs[-1].offset >= end - 1:
                        return
                elif await c.position(tp) >= end:  # the fetch position: past offsets compaction left empty
                    return
        finally:
            await c.stop()

    async def partition_count(self, topic: str) -> int:
        producer = self._started()
        with kafka_errors(f"partitions of {topic}"):
            return len(await producer.partitions_for(str(topic)))

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """As ``EventLog.end_offsets``: one ListOffsets request to the partitions' leaders,
        shared by the callers that arrive while the previous one runs (``FreshQuery``)."""
        topic = str(topic)
        query = self._end_queries.get(topic)
        if query is None:
            query = self._end_queries[topic] = FreshQuery(lambda: self._fetch_ends(topic))
        return await query()

    async def _fetch_ends(self, topic: str) -> dict[int, int]:
        try:
            async with self._offsets_lock:  # one client, however many topics ask at once
                if self._offsets is None:
                    # a request stuck on a broker that went away must not hold the next ones past the deadline
                    client = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                              request_timeout_ms=int(self.settings.log_append_timeout * 1000))
                    await client.start()
                    self._offsets = client
                offsets = self._offsets
            parts = await self._started().partitions_for(topic)
            ends = await offsets.end_offsets([TopicPartition(topic, p) for p in parts])
        except KafkaError as exc:
            raise translate(exc, f"cannot read the end offsets of {topic}") from exc
        return {tp.partition: off for tp, off in ends.items()}

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        """As ``EventLog.committed``: one OffsetFetch to the group's coordinator, shared by the
        callers that arrive while the previous one runs (``FreshQuery``), on an admin client
        kept for it (made at the first call)."""
        key = (group, str(topic))
        query = self._committed_queries.get(key)
        if query is None:
            query = self._committed_queries[key] = FreshQuery(lambda: self._fetch_committed(*key))
        return await query()

    async def _fetch_committed(self, group: str, topic: str) -> dict[int, int]:
        try:
            admin = await self._admin_client()
            # the topic's partitions named: asking for all of the group's (none named) is the same
            # request with no topics, which tansu answers in a form aiokafka cannot read
            parts = await self._started().partitions_for(topic)
            offsets = await admin.list_consumer_group_offsets(group, partitions=[TopicPartition(topic, p) for p in parts])
        except KafkaError as exc:
            raise translate(exc, f"cannot read the offsets {group} committed on {topic}") from exc
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}

    async def _admin_client(self) -> AIOKafkaAdminClient:
        """The admin client ``committed`` and ``read_record_limits`` ask, started once (its own
        lock: the end offsets' client is not held up by it); one that failed to start is closed,
        the next call tries again."""
        async with self._admin_lock:
            if self._admin is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                            request_timeout_ms=int(self.settings.log_append_timeout * 1000))
                try:
                    await admin.start()
                except BaseException:
                    await admin.close()
                    raise
                self._admin = admin
            return self._admin

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        if self._limits_reread is not None:
            self._limits_reread.cancel()
            await asyncio.gather(self._limits_reread, return_exceptions=True)
        if self._offsets:
            await self._offsets.stop()
            self._offsets = None
        if self._producer:
            await self._producer.stop()
            self._producer = None


class KafkaConsumer(Consumer):
    unassigned_warning_seconds = 30.0

    def __init__(self, log_: KafkaLog, topics: list[str], group: str | None):
        s = log_.settings
        self.group = group
        self.topics = topics
        self._ends: dict[TopicPartition, int] | None = None
        self._closed = False
        self.on_assigned = None
        self.partitions_move = group is not None
        self._unassigned_since: float | None = time.monotonic() if group else None  # no assignment yet
        self._warned_at = 0.0
        self._released = asyncio.Event()  # cleared while records polled by a group member are in hand
        self._released.set()
        self._generation = 0  # rebalances begun so far (records taken before the last one are stale)
        self._member_generation = NO_GENERATION  # the group's generation the records in hand were polled in
        self._assigned_generation: int | None = None  # the generation of the latest assignment
        self._continues = False  # see assignment_continues
        self._getting: asyncio.Future[tuple[int, dict[TopicPartition, list[Any]]]] | None = None  # see _getmany
        max_poll_ms = max(300000, s.kafka_session_timeout_ms)
        self.hook_heartbeat_limit = max_poll_ms / 1000  # see _Assignment.on_partitions_assigned
        self._preparing = False  # the on_assigned hook runs
        self._c = AIOKafkaConsumer(
            bootstrap_servers=log_.bootstrap,
            max_partition_fetch_bytes=MAX_RECORD_BYTES,  # a fetch always holds at least one whole record
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, s.kafka_session_timeout_ms // 5),
            max_poll_interval_ms=max_poll_ms,
            # how long the group waits for its members to rejoin: aiokafka's default is the session
            # timeout, which a member still in its revocation (a batch, up to REVOKE_WAIT) or its
            # assignment hook (a ledger rebuild) outlasts; Kafka would then drop it (the Java
            # client's default, max.poll.interval.ms)
            rebalance_timeout_ms=max_poll_ms,
            fetch_max_wait_ms=100,
            metadata_max_age_ms=5000,
        )

    async def start(self) -> None:
        """Join the group; returns once it has given this consumer its partitions (aiokafka
        waits for the first assignment), warning every ``unassigned_warning_seconds`` until then."""
        self._c.subscribe(self.topics, listener=_Assignment(self))
        joining = asyncio.ensure_future(self._c.start())
        try:
            with kafka_errors("cannot reach Kafka"):
                while not (await asyncio.wait({joining}, timeout=self.unassigned_warning_seconds))[0]:
                    self._warn_while_unassigned()
                joining.result()
        except asyncio.CancelledError:
            joining.cancel()
            raise

    async def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        self._warn_while_unassigned()
        with kafka_errors(f"poll of {self.topics}"):
            batches = await self._getmany(timeout, max_records)
        if batches and self.group:
            self._released.clear()
            self._member_generation = self._group_generation()
        return [_record(m) for msgs in batches.values() for m in msgs]

    async def _getmany(self, timeout: float, max_records: int) -> dict[TopicPartition, list[Any]]:
        """aiokafka's getmany, but back after ``timeout`` even while the group rebalances: getmany
        then waits for the new assignment without limit, and a rebalance waits for the batch in
        hand (``on_partitions_revoked``) — a loop gathering its batch (analytics) would stall it,
        and a stop would go unseen. A getmany still waiting is left running (cancelling it
        breaks aiokafka's poll-interval bookkeeping) and taken up by the next poll. Records it
        took before a rebalance began are dropped: the new assignment starts again from the
        committed offsets, so they come again (else they would be handled beside their new owner)."""
        if self._getting is None:
            self._getting = asyncio.ensure_future(self._stamped_getmany(timeout, max_records))
        done, _ = await asyncio.wait({self._getting}, timeout=timeout + 0.1)
        if not done:
            return {}
        getting, self._getting = self._getting, None
        generation, batches = getting.result()
        return batches if generation == self._generation else {}

    async def _stamped_getmany(self, timeout: float, max_records: int) -> tuple[int, dict[TopicPartition, list[Any]]]:
        """getmany's records with the rebalances begun when they were taken."""
        batches = await self._c.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        return self._generation, batches

    def release(self) -> None:
        self._released.set()

    @property
    def assignment_continues(self) -> bool:
        return self._continues

    def batch_current(self) -> bool:
        """The group's generation is still the one the batch was polled in: it changes when a
        rebalance completes (one that waited ``REVOKE_WAIT`` for the batch in vain) and is
        reset (-1) when the member learns it was expelled (a heartbeat answered "unknown
        member" or "illegal generation") or leaves after a poll interval without a poll."""
        if not self.group:
            return True
        generation = self._group_generation()
        return generation == self._member_generation and generation != NO_GENERATION

    def _group_generation(self) -> int:
        # aiokafka has no public accessor for the member's generation; its group coordinator
        # keeps it (aiokafka is pinned in uv.lock; tests/shared/log/test_contract.py checks this)
        coordinator = self._c._coordinator
        return NO_GENERATION if coordinator is None else int(coordinator.generation)

    def owns(self, topic: str, partition: int) -> bool:
        return not self.group or TopicPartition(topic, partition) in self._c.assignment()

    async def until_released(self) -> None:
        """Wait (at most ``REVOKE_WAIT`` seconds) until the caller releases what it polled."""
        if self._released.is_set():
            return
        log.info("consumer group %s: a rebalance waits for the batch in hand", self.group)
        try:
            await asyncio.wait_for(self._released.wait(), REVOKE_WAIT)
        except asyncio.TimeoutError:
            log.warning("consumer group %s: the batch in hand is not done after %.0f s; the rebalance goes on "
                        "(its records may be handled again by the partitions' next owner)", self.group, REVOKE_WAIT)

    async def commit(self, records: list[Record]) -> None:
        if not self.group or not records:
            return
        if self._closed:
            raise CommitFailed(f"{self.group}: this consumer is closed")
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        try:
            await self._c.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance is under way (CommitFailedError) or done and the partition is no
            # longer ours (IllegalStateError): the port's caller must know nothing was committed.
            raise CommitFailed(f"{self.group}: commit refused after a rebalance: {exc}") from exc
        except KafkaError as exc:
            raise translate(exc, f"{self.group}: commit") from exc

    @property
    def assigned(self) -> bool:
        return self._unassigned_since is None and not self._preparing

    def _warn_while_unassigned(self) -> None:
        """A consumer the group has not given an assignment (not even an empty one), at its
        start or after a revocation, consumes nothing and says nothing: say so every
        ``unassigned_warning_seconds``, so that a stalled join can be told from an idle topic."""
        if self._unassigned_since is None:
            return
        now, every = time.monotonic(), self.unassigned_warning_seconds
        if now - self._unassigned_since >= every and now - self._warned_at >= every:
            self._warned_at = now
            log.warning("consumer group %s: no partition assignment for %.0f s (topics %s)",
                        self.group, now - self._unassigned_since, ",".join(self.topics))

    async def caught_up(self) -> bool:
        assigned = self._c.assignment()
        if not assigned:
            return False
        with kafka_errors(f"{self.group}: end offsets"):
            if self._ends is None:
                self._ends = await self._c.end_offsets(list(assigned))
            for tp, end in self._ends.items():
                if tp in assigned and await self._c.position(tp) < end:
                    return False
        return True

    async def close(self) -> None:
        self._closed = True
        self._released.set()  # a rebalance waiting for a batch of this consumer goes on
        if self._getting is not None:
            self._getting.cancel()
            await asyncio.wait({self._getting})
            self._getting = None
        await self._c.stop()


def _partitions(tps: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps))


def _record(m: Any) -> Record:  # an aiokafka ConsumerRecord
    return Record(m.topic, m.partition, m.offset, m.key.decode() if m.key is not None else None, m.value,
                  m.timestamp, {k: v.decode() for k, v in (m.headers or ())})


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    """Runs the consumer's ``on_assigned`` hook inside the rebalance, before any record of the
    newly assigned partitions is returned: they are paused while it runs (aiokafka has marked
    the assignment done and lets polls return its records before it calls the listener), and
    the member heartbeats meanwhile (up to the poll interval: ``_run``)."""

    def __init__(self, consumer: KafkaConsumer):
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before the group takes partitions away: the batch in hand is finished and committed
        first (``Consumer.release``), or its new owner would handle it at the same time —
        a relay would deliver the same messages twice (its ledger is rebuilt from outcomes
        the old owner has not appended yet). aiokafka keeps heartbeating meanwhile."""
        self.consumer._generation += 1
        if revoked:
            await self.consumer.until_released()
        if self.consumer.group:  # unassigned until the rebalance assigns again
            self.consumer._unassigned_since = time.monotonic()
        if revoked:
            log.info("consumer group %s: revoked %s", self.consumer.group, _partitions(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.consumer._unassigned_since = None
        # generations count the group's rebalances: a gap means rebalances without this member
        # (it was expelled) or an empty assignment, in which its partitions may have been another's
        generation, previous = self.consumer._group_generation(), self.consumer._assigned_generation
        self.consumer._continues = previous is not None and generation == previous + 1
        self.consumer._assigned_generation = generation if assigned else None  # nothing held: nothing kept
        log.info("consumer group %s: assigned %s", self.consumer.group, _partitions(assigned) or "no partition")
        hook = self.consumer.on_assigned
        if hook is None:
            return
        c = self.consumer._c
        if assigned:
            c.pause(*assigned)  # a relay would otherwise handle requests before their ledger is rebuilt
        self.consumer._preparing = True
        try:
            await self._run(hook, {(tp.topic, tp.partition): (await c.committed(tp)) or 0 for tp in assigned})
        finally:
            self.consumer._preparing = False
            with contextlib.suppress(IllegalStateError):  # no longer assigned: nothing to resume
                if assigned:
                    c.resume(*assigned)

    async def _run(self, hook: Callable[[dict[tuple[str, int], int]], Awaitable[None]],
                   starts: dict[tuple[str, int], int]) -> None:
        """The hook, heartbeating meanwhile: aiokafka stops heartbeats for the whole join, this
        callback included, so a hook that outlasts the session timeout (a long ledger rebuild)
        would get the member expelled — and at its rejoin the hook would run again, as long.
        The join is complete here (the member has its generation): heartbeats are valid again,
        and a rebalance they hear of is joined after. Up to ``hook_heartbeat_limit`` (the poll
        interval) only: a hook stuck beyond it (a disk that cannot be written) stops them
        again, so the group gives its partitions to another member instead of waiting."""
        coordinator = self.consumer._c._coordinator
        coordinator._start_heartbeat_task()
        running = asyncio.ensure_future(hook(starts))
        try:
            if not (await asyncio.wait({running}, timeout=self.consumer.hook_heartbeat_limit))[0]:
                log.error("consumer group %s: the assignment hook has run for %.0f s; heartbeats stop, so that "
                          "the group gives these partitions to another member", self.consumer.group,
                          self.consumer.hook_heartbeat_limit)
                await coordinator._stop_heartbeat_task()
            await running
        finally:
            running.cancel()  # the consumer stops: so does its hook
