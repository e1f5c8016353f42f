"""The delivery retry schedule, in one place: its values, its levels and the plan.

A deferred recipient waits on a delay topic (``email.retry.<level>``, one per step of
POSTLINE_RETRY_SCHEDULE) and comes back to ``email.requests`` when due. Every record on a
level waits that level's delay, so due times on a partition stay in order — the delay-topic
forwarder (services/relay/delay_forwarder.py) relies on it. The Kafka adapter creates
``MAX_LEVELS`` delay topics; a longer schedule is refused at start-up (shared/settings.py),
never cut short silently."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_LEVELS = 8  # delay topics that exist; more steps than this is a bad setting


def parse(schedule: str, max_levels: int | None = MAX_LEVELS) -> list[float]:
    """Seconds per retry level from ``"60,300,900"``. Raises ``ValueError`` naming what is
    wrong: not numbers, not positive, or more steps than ``max_levels`` (None: no bound,
    for schedules that use no delay topics, like the webhooks')."""
    try:
        steps = [float(s) for s in schedule.split(",")]
    except ValueError:
        raise ValueError("must be comma-separated seconds") from None
    if not steps or any(s <= 0 for s in steps):
        raise ValueError("must be positive seconds")
    if max_levels is not None and len(steps) > max_levels:
        raise ValueError(f"has {len(steps)} steps; at most {max_levels} (one delay topic each)")
    return steps


@dataclass(frozen=True, slots=True)
class RetryPlan:
    level: int        # the delay topic the deferred recipients wait on
    when: datetime    # when they are due again
    gave_up: bool     # past the queue lifetime: the recipients fail instead


def plan(delays: list[float], queue_lifetime: float, attempt: int, first_attempt_at: datetime,
         now: datetime, retry_after: float | None = None) -> RetryPlan:
    """The next attempt after attempt number ``attempt`` (0 = the first).

    The level follows the attempt (the last one repeats). A server's own ``retry_after``
    (seconds, from its reply) is honoured by moving up to the first level that waits at
    least that long — never by a custom due time, which would break the in-order due times
    of a delay topic. Longer than every level: the last level. Gives up when the next
    attempt would fall after ``first_attempt_at + queue_lifetime``."""
    level = min(attempt, len(delays) - 1)
    if retry_after is not None:
        level = max(level, next((i for i, d in enumerate(delays) if d >= retry_after), len(delays) - 1))
    when = now + timedelta(seconds=delays[level])
    return RetryPlan(level, when, (when - first_attempt_at).total_seconds() > queue_lifetime)
