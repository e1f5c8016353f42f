"""The shaping store port: what every relay process of the installation shares about each
mailbox provider — connection leases, the rate, the adaptive state, warm-up counts.

Embedded (``store.py``): one SQLite file in the data dir, exact across the processes of
`postline all`. Kafka (``gossip.py``): each relay replica publishes what it holds on a
compacted topic and takes its share among the relays that want the provider now. Neither
needs to know how many relays run."""
from __future__ import annotations

import abc
from dataclasses import dataclass

MIN_RATE_SHARE = 1 / 16  # back-off never goes below this share of the configured rate
QUEUE_TTL = 30.0  # seconds a process's queue count lives without a refresh


@dataclass(frozen=True)
class ProviderView:
    """One provider's state as ``GET /api/email/shaping`` shows it."""
    provider: str
    rate: float | None  # current messages/s; None: never backed off (the configured rate)
    paused_until: float  # epoch seconds; 0: not paused
    backing_off: bool
    last_reply: str | None
    last_reply_at: float | None
    connections: int
    paused_for_blocks: bool
    queued: int = 0  # recipients waiting in the relays for its turn, pause or warm-up cap


class ShapingStore(abc.ABC):
    blocking = True  # its methods do file I/O: the shaper runs ``views``/``sent_today`` off the event loop
    waits_in_reserve = False  # ``reserve`` returns a start time (False) or waits for it itself (True)

    async def start(self) -> None:
        """Be ready to decide (Kafka: the other relays' state read up to now)."""

    async def close(self) -> None:
        """Give back what ``start`` took (Kafka: tell the others this relay wants nothing)."""

    @abc.abstractmethod
    async def lease(self, provider: str, max_connections: int) -> str | None:
        """A connection slot for ``provider`` (its lease id), or None when none is free now."""

    @abc.abstractmethod
    async def renew(self, lease: str) -> bool:
        """The session holding ``lease`` is still open; False when the lease had lapsed meanwhile
        (its slot may be another session's now: the caller closes its session)."""

    @abc.abstractmethod
    async def release(self, lease: str) -> None:
        """The session holding ``lease`` closed."""

    def over_share(self, provider: str, max_connections: int) -> bool:
        """This process holds more of ``provider``'s connections than its share now (a relay
        joined): the session that just finished a message closes instead of idling."""
        return False

    @abc.abstractmethod
    async def queued(self, provider: str, n: int) -> None:
        """``n`` more (negative: fewer) of this process's recipients wait for ``provider``;
        ``n`` = 0 says the ones counted still wait (a count not refreshed for ``QUEUE_TTL``
        seconds is gone: its process died)."""

    @abc.abstractmethod
    async def reserve(self, provider: str, configured: float) -> float:
        """A start time for one message (epoch seconds; the caller waits until then): after
        the provider's pause and spaced by its current rate, for the whole installation."""

    async def paused_until(self, provider: str) -> float:
        """When the provider's current pause ends (epoch seconds; 0: none). A store whose
        ``reserve`` waits itself re-checks the pause while it waits and need not answer."""
        return 0.0

    @abc.abstractmethod
    async def throttled(self, provider: str, configured: float, reply: str, pause: float) -> float:
        """A throttling reply: halve the current rate (not below ``MIN_RATE_SHARE`` of the
        configured one; once per pause), pause ``pause`` seconds. Returns the new rate."""

    @abc.abstractmethod
    async def blocked(self, provider: str, reply: str, spike: int, pause: float, scope: str) -> float | None:
        """A 5.7.x policy block; when it completes a spike (``spike`` within a minute) and the
        provider was not paused for blocks yet, it is paused now: returns when (the alert's
        episode start; ``scope`` names whose message completed it, for the clearing)."""

    @abc.abstractmethod
    async def clean(self, provider: str, configured: float, recovery: float) -> list[tuple[str, float]]:
        """A message went through: after ``recovery`` clean seconds a backed-off rate grows a
        quarter of the configured rate. When a pause for policy blocks has ended: the raised
        alerts' ``(scope, since)`` this process is to clear (each once)."""

    @abc.abstractmethod
    async def take_warmup(self, ip: str, provider: str, day: str, cap: int) -> bool:
        """Count one message from ``ip`` to ``provider`` on ``day`` if fewer than ``cap`` were."""

    @abc.abstractmethod
    def sent_today(self, day: str) -> dict[str, dict[str, int]]:
        """Messages counted per address and provider on ``day``."""

    @abc.abstractmethod
    def views(self) -> list[ProviderView]:
        """Every provider with state (read-only; the API's view)."""
