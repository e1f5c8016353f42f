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

from shared import events as ev
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
            CREATE INDEX IF NOT EXISTS deliveries_endpoint_due ON deliveries(state, webhook_id, next_at, key);
            CREATE INDEX IF NOT EXISTS deliveries_created ON deliveries(created) WHERE state != 'pending';""")
        # (a ``health`` table once counted each endpoint's failures in a row here, per process:
        # the count is now the endpoint's own, shared/control/webhook_failures.py)
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

    def _take_over(self, rows: list[tuple[str, ev.HandedDelivery]]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO deliveries(key, webhook_id, event, attempt, next_at, created) VALUES (?,?,?,?,?,?)",
                [(d.key, w, json.dumps(d.event), d.attempt, d.next_at, d.created) for w, d in rows])

    async def take_over(self, rows: list[tuple[str, ev.HandedDelivery]]) -> None:
        """Queue deliveries ``(webhook_id, delivery)`` another process handed over, as they were
        (a known key is ignored)."""
        if rows:
            await asyncio.to_thread(self._take_over, rows)

    def pending(self, limit: int = 1000, after: str = "") -> list[tuple[str, ev.HandedDelivery]]:
        """Up to ``limit`` pending deliveries ``(webhook_id, delivery)`` whose key sorts after
        ``after``, in key order, as they would be handed over."""
        with self._lock:
            rows = self._db.execute("SELECT key, webhook_id, event, attempt, next_at, created FROM deliveries "
                                    "WHERE state='pending' AND key > ? ORDER BY key LIMIT ?", (after, limit)).fetchall()
        return [(w, ev.HandedDelivery(key=k, event=json.loads(e), attempt=a, next_at=n, created=c or n))
                for k, w, e, a, n, c in rows]

    def forget(self, keys: list[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM deliveries WHERE key=?", [(k,) for k in keys])

    def due_keys(self, now: float, per_endpoint: int) -> list[tuple[str, str]]:
        """``(key, webhook_id)`` of the pending deliveries due at ``now``, oldest first, at most
        ``per_endpoint`` of each endpoint (a backlog of one does not hide the others' rows); read
        from the index alone — the events are loaded for the chosen rows (``load``)."""
        with self._lock:
            return self._db.execute(
                "SELECT key, webhook_id FROM (SELECT key, webhook_id, next_at, ROW_NUMBER() OVER "
                "(PARTITION BY webhook_id ORDER BY next_at) AS rn FROM deliveries INDEXED BY deliveries_endpoint_due "
                "WHERE state='pending' AND next_at <= ?) WHERE rn <= ? ORDER BY next_at", (now, per_endpoint)).fetchall()

    def load(self, keys: list[str]) -> list[Delivery]:
        """The deliveries of ``keys`` still pending, in the order given."""
        if not keys:
            return []
        with self._lock:
            rows = self._db.execute(
                f"SELECT key, webhook_id, event, attempt, created FROM deliveries WHERE state='pending' "
                f"AND key IN ({','.join('?' * len(keys))})", keys).fetchall()
        by_key = {k: Delivery(k, w, json.loads(e), a, c) for k, w, e, a, c in rows}
        return [by_key[k] for k in keys if k in by_key]

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

    def purge(self, queued_before: float, batch: int = 5000) -> int:
        """Drop finished rows (delivered, failed, skipped) queued before ``queued_before``, a
        batch per transaction (the lock is free between them). Run it off the event loop."""
        dropped = 0
        while True:
            with self._lock:
                n = self._db.execute(
                    "DELETE FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries INDEXED BY deliveries_created "
                    "WHERE state != 'pending' AND created < ? LIMIT ?)", (queued_before, batch)).rowcount
            dropped += n
            if n < batch:
                return dropped

    def close(self) -> None:
        self._db.close()
