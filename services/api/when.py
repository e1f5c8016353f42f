"""``scheduled_at`` in the natural-language forms Resend's API documents, besides ISO 8601.

Understood (case-insensitive, times in UTC):

- ``in 1 min``, ``in 30 seconds``, ``in 2 hours``, ``in 3 days``, ``in 1 week``
  (units: s/sec/second(s), m/min/mins/minute(s), h/hr/hrs/hour(s), d/day(s), w/week(s));
- ``now``;
- ``tomorrow``, ``today``, each optionally ``at 9am``, ``at 9:30 pm``, ``at 15:00``.

Anything else is left to pydantic's ISO 8601 parsing, so an unknown phrase gets the usual
"scheduled_at: Input should be a valid datetime" error. A full natural-language parser
(``dateparser``) would pull in a large dependency and locale data for phrases no SDK user
sends; these are the forms in Resend's documentation."""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone

UNITS = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
         "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
         "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
         "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800}
RELATIVE = re.compile(r"^in\s+(\d{1,6})\s*([a-z]+)$")
DAY_AT = re.compile(r"^(today|tomorrow)(?:\s+at\s+(\d{1,2})(?::(\d{2}))?\s*(am|pm)?)?$")


def parse_natural(text: str, now: datetime | None = None) -> datetime | None:
    """The moment ``text`` names, or None when it is not one of the forms above (the
    caller then tries ISO 8601). Raises ValueError for a recognised form with an
    impossible value (``tomorrow at 25pm``)."""
    phrase = " ".join(text.strip().lower().split())
    now = now or datetime.now(timezone.utc)
    if phrase == "now":
        return now
    m = RELATIVE.match(phrase)
    if m and m.group(2) in UNITS:
        try:
            return now + timedelta(seconds=int(m.group(1)) * UNITS[m.group(2)])
        except OverflowError:  # "in 999999 weeks": past any date; a 400, not a 500
            raise ValueError(f"{text!r}: too far ahead (at most 30 days)") from None
    m = DAY_AT.match(phrase)
    if not m:
        return None
    day = now.date() + timedelta(days=1 if m.group(1) == "tomorrow" else 0)
    hour, minute = int(m.group(2) or 0), int(m.group(3) or 0)
    if m.group(4):
        if not 1 <= hour <= 12:
            raise ValueError(f"{text!r}: the hour must be 1-12 with am/pm")
        hour = hour % 12 + (12 if m.group(4) == "pm" else 0)
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r}: not a time of day")
    return datetime.combine(day, time(hour, minute), tzinfo=timezone.utc)
