"""The one retry schedule: parsing, the start-up bound on levels, and the plan."""
from datetime import datetime, timedelta, timezone

import pytest

from shared import retry_schedule
from shared.settings import Settings

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
DELAYS = [60.0, 300.0, 900.0]


def test_parse_refuses_more_levels_than_there_are_delay_topics():
    assert retry_schedule.parse("60,300") == [60.0, 300.0]
    with pytest.raises(ValueError, match="at most 8"):
        retry_schedule.parse(",".join(["60"] * 9))
    assert len(retry_schedule.parse(",".join(["60"] * 9), None)) == 9  # webhooks: no delay topics


def test_a_too_long_schedule_stops_the_process_at_start_up_instead_of_being_cut():
    with pytest.raises(ValueError, match="POSTLINE_RETRY_SCHEDULE has 9 steps"):
        Settings(retry_schedule=",".join(["60"] * 9))
    Settings(webhook_retry_schedule=",".join(["60"] * 9))  # not bound to delay topics


def test_the_level_follows_the_attempt_and_the_last_one_repeats():
    assert [retry_schedule.plan(DELAYS, 10**6, a, NOW, NOW).level for a in range(5)] == [0, 1, 2, 2, 2]
    assert retry_schedule.plan(DELAYS, 10**6, 1, NOW, NOW).when == NOW + timedelta(seconds=300)


def test_a_servers_retry_after_moves_up_to_the_first_level_that_waits_long_enough():
    assert retry_schedule.plan(DELAYS, 10**6, 0, NOW, NOW, retry_after=200).level == 1
    assert retry_schedule.plan(DELAYS, 10**6, 0, NOW, NOW, retry_after=10**5).level == 2  # longest there is
    assert retry_schedule.plan(DELAYS, 10**6, 2, NOW, NOW, retry_after=5).level == 2  # never earlier


def test_gives_up_when_the_next_attempt_falls_after_the_queue_lifetime():
    first = NOW - timedelta(seconds=1000)
    assert not retry_schedule.plan(DELAYS, 2000, 2, first, NOW).gave_up
    assert retry_schedule.plan(DELAYS, 1800, 2, first, NOW).gave_up
