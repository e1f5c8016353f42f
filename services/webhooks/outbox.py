"""The webhook outbox: one row per (endpoint, event) delivery, durable before the event's
offset is committed, retried on its own schedule. SQLite in the webhooks data dir."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from shared import failpoints


@dataclass
class Delivery:
    key: str
    webhook_id: str
    event: dict
    attempt: int
    created: float = 0.0  # when it was queued (epoch seconds)


class Outbox:
    def __init__(self, path: Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS deliveries(key TEXT PRIMARY KEY, webhook_id TEXT, event TEXT,
                attempt INTEGER DEFAULT 0, next_at REAL, state TEXT DEFAULT 'pending', created REAL);
            CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_at);
            CREATE TABLE IF NOT EXISTS health(webhook_id TEXT PRIMARY KEY, failed_in_a_row INTEGER);""")
        self._lock = threading.Lock()

    def _add(self, rows: list[tuple[str, str, dict]]) -> None:
        now = time.time()
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO deliveries(key, webhook_id, event, next_at, created) VALUES (?,?,?,?,?)",
                [(k, w, json.dumps(e), now, now) for k, w, e in rows])

    async def add(self, rows: list[tuple[str, str, dict]]) -> None:
        """Queue deliveries ``(key, webhook_id, event)``; a known key is ignored (redelivery)."""
        if rows:
            await asyncio.to_thread(self._add, rows)

    def due(self, now: float, exclude: set[str], limit: int = 500, per_endpoint: int | None = None) -> list[Delivery]:
        """Pending deliveries due at ``now``, oldest first, not in ``exclude``; with
        ``per_endpoint``, at most that many of each endpoint are read (a backlog of one
        endpoint does not hide the others' rows behind ``limit``)."""
        args: tuple[float, ...]
        if per_endpoint is None:
            query, args = ("SELECT key, webhook_id, event, attempt, created FROM deliveries WHERE state='pending' AND next_at <= ? "
                           "ORDER BY next_at LIMIT ?", (now, limit + len(exclude)))
        else:
            query, args = ("SELECT key, webhook_id, event, attempt, created FROM (SELECT *, ROW_NUMBER() OVER "
                           "(PARTITION BY webhook_id ORDER BY next_at) AS rn FROM deliveries WHERE state='pending' "
                           "AND next_at <= ?) WHERE rn <= ? ORDER BY next_at LIMIT ?", (now, per_endpoint, limit + len(exclude)))
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [Delivery(k, w, json.loads(e), a, c or 0.0) for k, w, e, a, c in rows if k not in exclude][:limit]

    def next_due(self, exclude: set[str] | None = None) -> float | None:
        """When the next pending delivery not in ``exclude`` (those under way) is due."""
        with self._lock:
            rows = self._db.execute("SELECT key, next_at FROM deliveries WHERE state='pending' ORDER BY next_at LIMIT ?",
                                    (len(exclude or ()) + 1,)).fetchall()
        return next((at for key, at in rows if key not in (exclude or ())), None)

    def finish(self, key: str, state: str, attempt: int, next_at: float | None = None) -> None:
        failpoints.io_error("webhooks.outbox.write")  # tests: the file cannot be written (a full disk)
        with self._lock:
            self._db.execute("UPDATE deliveries SET state=?, attempt=?, next_at=? WHERE key=?",
                             (state, attempt, next_at, key))

    def purge(self, queued_before: float) -> int:
        """Drop finished rows (delivered, failed, skipped) queued before ``queued_before``."""
        with self._lock:
            return self._db.execute("DELETE FROM deliveries WHERE state != 'pending' AND created < ?",
                                    (queued_before,)).rowcount

    def failed_in_a_row(self, webhook_id: str, failed: bool) -> int:
        """Count messages that exhausted their retries in a row (reset by any success)."""
        with self._lock:
            row = self._db.execute("SELECT failed_in_a_row FROM health WHERE webhook_id=?", (webhook_id,)).fetchone()
            n = (row[0] if row else 0) + 1 if failed else 0
            self._db.execute("INSERT OR REPLACE INTO health VALUES (?,?)", (webhook_id, n))
        return n

    def close(self) -> None:
        self._db.close()
