"""Failpoints: named places where a test can make the process crash (``os._exit``).

``POSTLINE_FAILPOINTS="relay.after_ledger=0.02,relay.before_commit=0.05"`` crashes at each
named point with that probability. Unset in production: the check is one dict lookup.
Names ending in ``.delay`` are pauses instead, their value in seconds
(``control.follow.delay=2``: this process reads the control topic two seconds late).
``io_error`` points raise ``OSError(ENOSPC)`` instead (a full disk at that write); an
in-process test switches a point on and off with ``configure``."""
from __future__ import annotations

import errno
import os
import random
from typing import Iterable

_points: dict[str, float] = {}
for item in filter(None, os.environ.get("POSTLINE_FAILPOINTS", "").split(",")):
    name, _, prob = item.partition("=")
    _points[name.strip()] = float(prob or 1)


def hit(name: str) -> bool:
    p = _points.get(name)
    return p is not None and random.random() < p


def failpoint(name: str) -> None:
    """Crash here (with the configured probability)."""
    if hit(name):
        os._exit(137)


def crash_on_tag(name: str, tags: Iterable[str]) -> None:
    """Crash handling a message that carries a tag the test named (``relay.handling#poison=1``):
    a record that kills the process each time it is handled."""
    if _points:
        for tag in tags:
            failpoint(f"{name}#{tag}")


def delay(name: str) -> float:
    """Seconds to pause at the ``name`` delay point (0 unless a test configured it)."""
    return _points.get(name + ".delay", 0.0)


def io_error(name: str) -> None:
    """Raise ``OSError(ENOSPC)`` here (with the configured probability): a full disk."""
    if hit(name):
        raise OSError(errno.ENOSPC, f"No space left on device (failpoint {name})")


def configure(name: str, value: float | None) -> None:
    """Set (a probability, or a delay's seconds) or clear (None) one point in this process."""
    if value is None:
        _points.pop(name, None)
    else:
        _points[name] = value
