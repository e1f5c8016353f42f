"""The JSON log lines (shared/logging.py): one object per record with its time, level,
logger, message and structured fields."""
from __future__ import annotations

import json
import logging
import time

from shared.logging import JsonFormatter


def line(formatter: JsonFormatter, created: float, **extra) -> dict:
    record = logging.LogRecord("postline.access", logging.INFO, "", 0, "request %s", ("done",), None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    record.__dict__.update(extra)
    return json.loads(formatter.format(record))


def test_each_line_has_its_own_time_to_the_millisecond():
    formatter, at = JsonFormatter(), 1_700_000_000.25
    first, same_second, next_second = line(formatter, at), line(formatter, at + 0.5), line(formatter, at + 1.0)
    assert first["ts"] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + ".250Z"
    assert same_second["ts"] == first["ts"][:-5] + ".750Z"
    assert next_second["ts"] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at + 1)) + ".250Z"
    assert line(formatter, at)["ts"] == first["ts"]  # an older second again


def test_fields_message_and_values_json_cannot_spell():
    out = line(JsonFormatter(), time.time(), fields={"status": 200, "route": "/emails", "at": object.__new__(object)})
    assert (out["level"], out["logger"], out["msg"], out["status"], out["route"]) == (
        "info", "postline.access", "request done", 200, "/emails")
    assert out["at"].startswith("<object object")  # written as its str(), never an error


def test_a_traceback_is_one_field():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        out = line(JsonFormatter(), time.time(), exc_info=sys.exc_info())
    assert "ValueError: boom" in out["exc"]
