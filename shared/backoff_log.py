"""Errors while a dependency is down: one log line per dependency per interval, every
error counted in a metric.

A broker that is down makes every consumer, producer and probe fail many times a second
(issue 17 measured ~575 lines a second per relay); the log must stay readable and cheap.
``DependencyLog.failed`` logs the first error about a dependency at once, then at most one
line per ``POSTLINE_DEPENDENCY_LOG_INTERVAL`` seconds saying how many more there were;
``ok`` logs the recovery once. ``postline_dependency_errors_total{dependency}`` counts each
error and ``postline_dependency_up{dependency}`` shows the current state.

``LibraryFilter`` applies the same rule to the records of the libraries that talk to a
dependency (aiokafka logs each failed connection attempt itself)."""
from __future__ import annotations

import logging
import threading
import time

from shared import metrics
from shared.log.port import LogError
from shared.store.port import StoreError

log = logging.getLogger("postline.dependency")
DEFAULT_INTERVAL = 30.0


class DependencyLog:
    """Per-dependency rate-limited error reporting; thread-safe, never blocks."""

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last_line: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._down: set[str] = set()
        self._up: set[str] = set()  # dependencies whose gauge already says 1

    def failed(self, dependency: str, error: BaseException | str) -> bool:
        """Count one error of ``dependency``; log it if no line about it was written in the
        last interval. Returns True when a line was written."""
        metrics.DEPENDENCY_ERRORS.labels(dependency).inc()
        metrics.DEPENDENCY_UP.labels(dependency).set(0)
        now = time.monotonic()
        with self._lock:
            self._down.add(dependency)
            self._up.discard(dependency)
            last = self._last_line.get(dependency)
            if last is not None and now - last < self.interval:
                self._suppressed[dependency] = self._suppressed.get(dependency, 0) + 1
                return False
            self._last_line[dependency] = now
            more = self._suppressed.pop(dependency, 0)
        detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        log.error("%s unavailable: %s%s", dependency, detail,
                  f" ({more} more errors in the last {self.interval:g} s)" if more else "",
                  extra={"fields": {"dependency": dependency, "suppressed": more}})
        return True

    def ok(self, dependency: str) -> None:
        """The dependency answered: log the recovery once (if it was down). Cheap when it
        was not down (called after every append)."""
        if dependency not in self._down:
            if dependency not in self._up:
                self._up.add(dependency)
                metrics.DEPENDENCY_UP.labels(dependency).set(1)
            return
        metrics.DEPENDENCY_UP.labels(dependency).set(1)
        with self._lock:
            if dependency not in self._down:
                return
            self._down.discard(dependency)
            self._up.add(dependency)
            self._last_line.pop(dependency, None)
            more = self._suppressed.pop(dependency, 0)
        log.warning("%s available again%s", dependency, f" ({more} errors not logged)" if more else "",
                    extra={"fields": {"dependency": dependency, "suppressed": more}})

    def is_down(self, dependency: str) -> bool:
        return dependency in self._down


class LibraryFilter(logging.Filter):
    """On the log handlers: the warnings and errors of a library that talks to a dependency
    (aiokafka logs each failed connection attempt itself, under many child loggers) become
    errors of that dependency, so they obey the one-line-per-interval rule; everything else
    passes untouched."""

    def __init__(self, libraries: dict[str, str], reporter: DependencyLog):
        super().__init__()
        self.libraries, self.reporter = libraries, reporter

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        for prefix, dependency in self.libraries.items():
            if record.name == prefix or record.name.startswith(prefix + "."):
                self.reporter.failed(dependency, f"{record.name}: {record.getMessage()}")
                return False
        return True


DEPENDENCIES = DependencyLog()
# The libraries that log about a dependency themselves, by logger name, and the port they serve.
LIBRARIES = {"aiokafka": LogError.dependency, "kafka": LogError.dependency,
             "clickhouse_connect": StoreError.dependency, "urllib3": StoreError.dependency}
PORT_ERRORS: tuple[type[LogError] | type[StoreError], ...] = (LogError, StoreError)


def dependency_of(exc: BaseException | None) -> str | None:
    """The dependency that is down when ``exc`` (or one of its causes) is a port's retriable
    error (``LogUnavailable``, ``StoreUnavailable``, ...: the adapters translate their
    library's errors into these); None for anything else (a bug keeps its full traceback)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, PORT_ERRORS) and exc.retriable:
            return exc.dependency
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def configure(interval: float) -> None:
    """Set the interval and filter the libraries' records on every handler of the root
    logger (call after the handlers are set up: a logger's own filters do not reach the
    records of its child loggers, a handler's do)."""
    DEPENDENCIES.interval = interval
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, LibraryFilter) for f in handler.filters):
            handler.addFilter(LibraryFilter(LIBRARIES, DEPENDENCIES))
