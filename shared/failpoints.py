"""Failpoints: named places where a test can make the process crash (``os._exit``).

``POSTLINE_FAILPOINTS="relay.after_ledger=0.02,relay.before_commit=0.05"`` crashes at each
named point with that probability. Unset in production: the check is one dict lookup."""
from __future__ import annotations

import os
import random

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
