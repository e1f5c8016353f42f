"""Shaping per mailbox provider (docs/delivery.md "Shaping"): limits per provider
(``limits.py``), which replies mean "slow down" (``replies.py``), the installation-wide
leases, rate and adaptive state (the port ``port.py``: one SQLite file embedded,
``store.py``; gossiped among the relays on Kafka, ``gossip.py``), and the sender's gate
around a transaction (``shaper.py``)."""
from __future__ import annotations

from shared.log.port import EventLog
from shared.settings import Settings
from services.relay.shaping.port import ShapingStore


def open_shaping(settings: Settings, log: EventLog | None, observer: bool = False) -> ShapingStore:
    """The store that matches the log: the data dir's file embedded, gossip on Kafka.
    ``observer``: only reads the relays' state (the API)."""
    if settings.kafka_bootstrap and log is not None:
        from services.relay.shaping.gossip import GossipShapingStore

        return GossipShapingStore(log, observer=observer)
    from services.relay.shaping.store import SqliteShapingStore

    return SqliteShapingStore(settings.data_dir / "shaping.sqlite3")
