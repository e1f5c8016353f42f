"""Errors while a dependency is down: one line per dependency per interval, each error
counted in ``postline_dependency_errors_total``; the recovery is logged once; a library's
own warnings (aiokafka's, under its child loggers) obey the same rule."""
from __future__ import annotations

import logging
import time

from prometheus_client import REGISTRY

from shared.backoff_log import DependencyLog, LibraryFilter, dependency_of
from shared.log.port import LogNotStarted, LogRefused, LogTimeout, LogUnavailable
from shared.store.port import StoreRefused, StoreUnavailable


def errors_counted(dependency: str) -> float:
    return REGISTRY.get_sample_value("postline_dependency_errors_total", {"dependency": dependency}) or 0.0


def test_one_line_per_interval_every_error_counted_recovery_once(caplog):
    reporter = DependencyLog(interval=0.3)
    before = errors_counted("test-broker")
    with caplog.at_level(logging.WARNING, logger="postline.dependency"):
        written = [reporter.failed("test-broker", ConnectionRefusedError("refused")) for _ in range(200)]
        reporter.failed("test-store", "timed out")  # another dependency has its own budget
        time.sleep(0.35)
        reporter.failed("test-broker", ConnectionRefusedError("refused"))
        reporter.ok("test-broker")
        reporter.ok("test-broker")
    assert written.count(True) == 1
    assert errors_counted("test-broker") - before == 201
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "test-broker unavailable: ConnectionRefusedError: refused"
    assert lines[1] == "test-store unavailable: timed out"
    assert lines[2] == "test-broker unavailable: ConnectionRefusedError: refused (199 more errors in the last 0.3 s)"
    assert lines[3] == "test-broker available again"
    assert len(lines) == 4
    assert REGISTRY.get_sample_value("postline_dependency_up", {"dependency": "test-broker"}) == 1


def test_a_librarys_warnings_become_rate_limited_errors_of_its_dependency(caplog):
    reporter = DependencyLog(interval=60)
    handler = logging.Handler()
    seen: list[logging.LogRecord] = []
    handler.emit = seen.append
    handler.addFilter(LibraryFilter({"aiokafka": "kafka-under-test"}, reporter))
    for name in ("aiokafka", "aiokafka.conn", "aiokafka.consumer.fetcher"):
        for _ in range(50):
            handler.handle(logging.LogRecord(name, logging.ERROR, __file__, 1, "Unable connect to node", None, None))
    handler.handle(logging.LogRecord("aiokafka", logging.DEBUG, __file__, 1, "debug detail", None, None))
    handler.handle(logging.LogRecord("services.api", logging.ERROR, __file__, 1, "a bug", None, None))
    assert [r.getMessage() for r in seen] == ["debug detail", "a bug"]  # the library's errors went to the reporter
    assert errors_counted("kafka-under-test") == 150


def test_dependency_of_follows_the_cause_chain():
    try:
        try:
            raise LogUnavailable("no acknowledgement")
        except LogUnavailable as exc:
            raise RuntimeError("batch failed") from exc
    except RuntimeError as outer:
        assert dependency_of(outer) == "event_log"
    assert dependency_of(ValueError("a bug")) is None


def test_dependency_down_is_decided_by_the_ports_retriable_errors():
    assert dependency_of(LogTimeout("no acknowledgement in time")) == "event_log"
    assert dependency_of(StoreUnavailable("ClickHouse refused the connection")) == "analytics_store"
    for not_down in (LogRefused("record too large"), LogNotStarted("a bug"), StoreRefused("unknown column")):
        assert not not_down.retriable and dependency_of(not_down) is None  # logged in full: not an outage

    class ForeignError(Exception):  # a library error the adapter did not translate: no module-name guessing
        __module__ = "aiokafka.errors"

    assert dependency_of(ForeignError("connection reset")) is None
