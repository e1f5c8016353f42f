"""The event-log port and its adapters (embedded SQLite, Kafka)."""
from shared.log.port import Consumer, EventLog, Record

__all__ = ["Consumer", "EventLog", "Record", "open_log"]


def open_log(settings) -> EventLog:
    """The adapter the settings ask for: Kafka when POSTLINE_KAFKA_BOOTSTRAP is set, else embedded."""
    if settings.kafka_bootstrap:
        from shared.log.kafka import KafkaLog

        return KafkaLog(settings)
    from shared.log.sqlite import SqliteLog

    return SqliteLog(settings.data_dir / "log.sqlite3", partitions=settings.embedded_partitions)
