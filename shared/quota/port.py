"""The quota port: count units against service-wide windows and append what they allow."""
from __future__ import annotations

import abc
from collections.abc import Sequence

from shared.quota.window import Decision, Take


class Quota(abc.ABC):
    async def start(self) -> None:
        """Be ready to decide (Kafka: the other replicas' counts read up to now)."""

    async def close(self) -> None:
        """Release what ``start`` took."""

    @abc.abstractmethod
    async def admit(self, topic: str, takes: list[Take], items: Sequence[tuple[str | None, bytes]]
                    ) -> list[Decision]:
        """Decide ``takes`` in order (each one sees the units of those allowed before it) and
        append durably the record of each allowed one (``items[i]`` belongs to ``takes[i]``),
        together. Returns the decisions once those records are durable. Raises as the log's
        ``append`` does; then nothing was counted (embedded) or the count is given back (Kafka)."""

    @abc.abstractmethod
    def peek(self, take: Take) -> Decision:
        """What ``take`` would be told now, counting nothing (``take.n`` is usually 0)."""

    @abc.abstractmethod
    def tally(self, service_id: str, scope: tuple[str, int, int]) -> tuple[int, int | None]:
        """One window ``(scope, length, slot)`` now: the units counted in it and the newest
        slot holding any (None when it holds none). Counts nothing; never blocks (embedded:
        one indexed read; Kafka: memory). For counters that need *when*, not only how many
        (services/api/throttle.py: a block lasts from the last failure)."""

    @abc.abstractmethod
    def usage(self, service_id: str, scopes: list[tuple[str, int, int]]) -> dict[str, int]:
        """Units counted now per scope, for ``(scope, length, slot)`` windows."""
