"""Sliding windows counted in slots, and the decision they give.

A window of ``length`` seconds is counted in slots of ``slot`` seconds. A slot's count stays
in the window until ``length`` seconds after the slot *ends*, so any interval of ``length``
seconds, wherever it falls, holds at most ``limit`` units: unlike a calendar window, a burst
just before a boundary is still counted just after it. The price is that a unit may be
counted up to one slot longer than ``length`` (1 s of 60 for the minute, 5 min of 24 h for
the day)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable


@dataclass(frozen=True)
class Window:
    scope: str   # what a 429 names: "minute", "day", "sandbox day"
    length: int  # seconds
    slot: int    # seconds per counted slot
    limit: int

    def slot_at(self, now: float) -> int:
        return int(now // self.slot)

    def first_live(self, now: float) -> int:
        """The oldest slot still counted at ``now``."""
        return math.floor((now - self.length) / self.slot)

    def expires_in(self, slot: int, now: float) -> int:
        """Whole seconds until ``slot`` stops being counted."""
        return max(1, math.ceil((slot + 1) * self.slot + self.length - now))


@dataclass(frozen=True)
class Take:
    """Count ``n`` units for ``service_id`` in every window, only if each has room."""
    service_id: str
    n: int
    windows: tuple[Window, ...]


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int = 0
    scope: str = "minute"

    def headers(self) -> dict[str, str]:
        h = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(max(0, self.remaining)),
             "RateLimit-Reset": str(self.reset)}
        if not self.allowed:
            h["Retry-After"] = str(self.retry_after)
        return h


@dataclass(frozen=True)
class Counted:
    """What a window holds now: the units counted and the oldest slot that holds any."""
    window: Window
    count: int
    oldest: int | None


Rows = Callable[[Window], Iterable[tuple[int, int]]]  # a window's live (slot, units), oldest first


def decide(take: Take, now: float, counted: list[Counted], rows: Rows) -> Decision:
    """Allowed when every window has room for ``take.n``; the answer names the tightest
    window (or, refused, the one that refused and when enough of it will have expired)."""
    blocked = [c for c in counted if take.n and c.count + take.n > c.window.limit]
    if blocked:
        c = blocked[-1]
        wait = _room_in(c, take.n, now, rows(c.window))
        return Decision(False, c.window.limit, c.window.limit - c.count, wait, retry_after=wait, scope=c.window.scope)
    tight = min(counted, key=lambda c: c.window.limit - c.count - take.n)
    w = tight.window
    reset = w.expires_in(tight.oldest, now) if tight.oldest is not None else w.slot
    return Decision(True, w.limit, w.limit - tight.count - take.n, reset, scope=w.scope)


def _room_in(c: Counted, n: int, now: float, rows: Iterable[tuple[int, int]]) -> int:
    """Seconds until enough of the oldest slots expire for ``n`` more units to fit."""
    left = c.count
    for slot, units in rows:
        left -= units
        if left + n <= c.window.limit:
            return c.window.expires_in(slot, now)
    return c.window.length  # more than the whole limit at once: it never fits
