"""JSON structured logs on stderr (one object per line)."""
from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        out.update(getattr(record, "fields", None) or {})  # structured fields: log.info(msg, extra={"fields": {...}})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO") -> None:
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
