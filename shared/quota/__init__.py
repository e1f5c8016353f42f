"""Service-wide rate counters shared by every API process or replica (docs/rate-limits.md).

Embedded: exact — the counters live in the event log's own SQLite file and are checked and
updated in the write transaction that appends the send (``sqlite.py``). Kafka: each replica
counts what it accepts and publishes its counts through the log; every replica adds the
others' (``gossip.py``): nothing needs to know how many replicas run, and the total can
overshoot only by what the others accepted in the last moment (≤ one flush interval plus a
fetch, a fraction of a second of traffic)."""
from shared.log.port import EventLog
from shared.quota.port import Quota
from shared.settings import Settings
from shared.quota.window import Decision, Take, Window

__all__ = ["Decision", "Quota", "Take", "Window", "open_quota"]


def open_quota(log: EventLog, settings: Settings) -> Quota:
    """The counters that match the log: in the embedded log's transaction, else gossiped."""
    if settings.kafka_bootstrap:
        from shared.quota.gossip import GossipQuota

        return GossipQuota(log, flush_interval=settings.quota_flush_interval)
    from shared.quota.sqlite import SqliteQuota

    return SqliteQuota(log)
