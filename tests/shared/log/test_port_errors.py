"""The event-log port's error tree and declared capabilities: adapters translate their
library's errors (aiokafka's ``retriable`` flag becomes the port's), and methods only some
adapters offer are asked through a flag, with the port's default elsewhere."""
from __future__ import annotations

import pytest
from aiokafka.errors import (KafkaConnectionError, MessageSizeTooLargeError, NotLeaderForPartitionError, RequestTimedOutError,
                             TopicAuthorizationFailedError)

from shared.log.deadline import DeadlineLog
from shared.log.kafka import KafkaLog, translate
from shared.log.port import LogError, LogRecordTooLarge, LogRefused, LogTimeout, LogUnavailable, LogUnsupported
from shared.log.sqlite import SqliteLog
from shared.settings import Settings


@pytest.mark.parametrize(("error", "expected", "retriable"), [
    (KafkaConnectionError(), LogUnavailable, True),
    (NotLeaderForPartitionError(), LogUnavailable, True),
    (RequestTimedOutError(), LogTimeout, True),
    (MessageSizeTooLargeError(), LogRecordTooLarge, False),  # a LogRefused: the record's fault (a 413)
    (TopicAuthorizationFailedError(), LogRefused, False),
])
def test_aiokafka_errors_become_the_ports(error, expected, retriable):
    translated = translate(error, "append to t")
    assert type(translated) is expected and isinstance(translated, LogError)
    assert translated.retriable is retriable


async def test_capabilities_are_declared_and_forwarded(tmp_path):
    embedded = DeadlineLog(SqliteLog(tmp_path / "log.sqlite3"), timeout=5)
    await embedded.start()
    try:
        assert embedded.keyed_lookups and embedded.local_sql and embedded.end_offsets_local
        assert embedded.local_file == tmp_path / "log.sqlite3"
        await embedded.append("t", "k", b"v")
        assert [r.value for r in embedded.by_key("t", "k")] == [b"v"]
        assert embedded.read(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
    finally:
        await embedded.close()
    kafka = DeadlineLog(KafkaLog(Settings(kafka_bootstrap="127.0.0.1:9")), timeout=5)  # never started
    assert not (kafka.keyed_lookups or kafka.local_sql) and kafka.local_file is None
    assert kafka.by_key("t", "k") == [] and kafka.writable()
    with pytest.raises(LogUnsupported):
        kafka.read(lambda conn: None)
