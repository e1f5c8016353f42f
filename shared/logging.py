"""JSON structured logs on stderr (one object per line)."""
from __future__ import annotations

import json
import logging
import sys
import time


_ENCODER = json.JSONEncoder(default=str)  # one encoder: json.dumps(default=...) builds one per call


class JsonFormatter(logging.Formatter):
    """``ts`` (UTC, milliseconds), ``level``, ``logger``, ``msg``, the record's structured
    ``fields``, and ``exc`` for a traceback. Nothing about where the call was made: the
    records do not compute it (``setup_logging``)."""

    _last: tuple[int, str] = (-1, "")  # the last record's second, formatted: most lines share it (one tuple: threads)

    def format(self, record: logging.LogRecord) -> str:
        second, stamp = self._last
        if second != int(record.created):
            second = int(record.created)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._last = (second, stamp)
        out = {"ts": f"{stamp}.{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        out.update(getattr(record, "fields", None) or {})  # structured fields: log.info(msg, extra={"fields": {...}})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(out)


def setup_logging(level: str = "INFO") -> None:
    # What the JSON lines never show is not computed for each record (the logging HOWTO's
    # "Optimization"): the caller's file and line walk the stack, ~13 µs of the ~35 µs an
    # access-log line cost; thread and process names a few more.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # aiosmtpd logs every session at info, and "Available AUTH mechanisms: LOGIN PLAIN" for a
    # listener that offers no AUTH at all: misleading noise. Its warnings and errors still show.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # httpx logs every request at info with its whole URL: a webhook endpoint's URL may carry the
    # receiver's secret, and the probes' store pings every few seconds are not news.
    logging.getLogger("httpx").setLevel(logging.WARNING)
