"""The event-log port and its adapters (embedded SQLite, Kafka)."""
from shared.log.port import Consumer, EventLog, Record
from shared.settings import Settings

__all__ = ["Consumer", "EventLog", "Record", "open_log"]


def open_log(settings: Settings) -> EventLog:
    """The adapter the settings ask for: Kafka when POSTLINE_KAFKA_BOOTSTRAP is set, else
    embedded; its appends bounded by POSTLINE_LOG_APPEND_TIMEOUT (shared/log/deadline.py)."""
    from shared.log.deadline import DeadlineLog

    if settings.kafka_bootstrap:
        from shared.log.kafka import KafkaLog

        return DeadlineLog(KafkaLog(settings), settings.log_append_timeout)
    from shared.log.sqlite import SqliteLog

    return DeadlineLog(SqliteLog(settings.data_dir / "log.sqlite3", partitions=settings.embedded_partitions),
                       settings.log_append_timeout)
