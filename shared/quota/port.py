"""The quota port: count units against service-wide windows and append what they allow."""
from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence

from shared.quota.window import Decision, Take


class Quota(abc.ABC):
    async def start(self) -> None:
        """Be ready to decide (Kafka: the other replicas' counts read up to now)."""

    async def close(self) -> None:
        """Release what ``start`` took."""

    @abc.abstractmethod
    async def admit(self, topic: str, takes: list[Take], items: Sequence[tuple[str | None, bytes]],
                    all_or_nothing: bool = False) -> list[Decision]:
        """Decide ``takes`` in order (each one sees the units of those allowed before it) and
        append durably the record of each allowed one (``items[i]`` belongs to ``takes[i]``),
        together. Returns the decisions once those records are durable. Raises as the log's
        ``append`` does; then nothing was counted (embedded) or the count is given back (Kafka).

        ``all_or_nothing`` (a strict batch): every take is counted and every record appended,
        or — when any take does not fit — none is counted, nothing is appended, and every
        decision is the same refusal (``judge_as_one``). Decided atomically, as one take is."""

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


def judge_as_one(takes: Sequence[Take], judge: Callable[[Take], Decision], count: Callable[[Take], None]
                 ) -> list[Decision]:
    """All or nothing: judge each take in order and count it whether it fits or not, so each
    one sees the units of every take before it (the last one in a window asks room for all of
    them). Every take fits → the decisions as judged, every take counted (keep them). Else the
    caller must give back all it counted, and every decision is the refusal that waits longest —
    its ``retry_after`` is when the whole set fits — with ``remaining`` what its window holds
    without the set. ``judge`` and ``count`` see the same moment (the implementation's ``now``)."""
    decisions: list[Decision] = []
    refusals: list[Decision] = []
    counted: dict[tuple[str, str], int] = {}  # units of this set counted so far, per (key, window scope)
    for take in takes:
        decision = judge(take)
        decisions.append(decision)
        if not decision.allowed:  # its remaining is net of the set's units before it: add them back
            remaining = decision.remaining + counted.get((take.service_id, decision.scope), 0)
            refusals.append(dataclasses.replace(decision, remaining=remaining))
        if take.n:
            count(take)
            for w in take.windows:
                counted[(take.service_id, w.scope)] = counted.get((take.service_id, w.scope), 0) + take.n
    if not refusals:
        return decisions
    refused = max(refusals, key=lambda d: d.retry_after)
    return [refused] * len(takes)
