"""Warm-up of new source addresses: daily caps per provider that grow over ~30 days.

A receiver judges a new IP by its first weeks: a sudden volume from an address with no
history is what spam looks like. So a new address of a pool sends at most
``schedule[day - 1]`` messages per provider per UTC day (day 1 is the day it was added);
after the schedule's last day, or for an address marked ``warm``, no cap. The count is
installation-wide (the shaping file, store.py) and counted when a message is given the
address, before its transaction (a failed attempt uses a unit: the cap errs low)."""
from __future__ import annotations

from datetime import date

from shared import events as ev

# Roughly doubling the first week, then +25–50 % a day, to 40 000 a day per provider by day 30
DEFAULT_SCHEDULE: tuple[int, ...] = (50, 100, 200, 300, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000, 3500, 4000,
                                     5000, 6000, 7000, 8000, 9000, 10000, 12000, 14000, 16000, 18000, 20000, 24000,
                                     28000, 32000, 36000, 40000)


def schedule_of(pool: ev.IpPoolSaved) -> tuple[int, ...]:
    return tuple(pool.warmup_schedule) if pool.warmup_schedule else DEFAULT_SCHEDULE


def day_of(address: ev.PoolAddress, today: date) -> int:
    """The address's warm-up day: 1 on the day it was added."""
    return (today - address.added_at.date()).days + 1


def cap(pool: ev.IpPoolSaved, address: ev.PoolAddress, today: date) -> int | None:
    """Today's cap per provider for ``address``; None: warm (no cap)."""
    schedule = schedule_of(pool)
    day = day_of(address, today)
    if address.warm or day > len(schedule):
        return None
    return schedule[max(day, 1) - 1]
