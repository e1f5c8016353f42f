"""Scheduled sends (``scheduled_at``): held durably until due, then put back on
``email.requests``.

The relay holds a request here (SQLite in its data dir, synchronous=FULL) before it commits
the request's offset, so a restart keeps every scheduled message. Release appends, then
deletes: a crash in between re-releases, and the ledger absorbs the duplicate.

Cancel and reschedule (``send-cancelled`` / ``send-rescheduled`` on ``email.requests``,
keyed like the request, so they reach this relay after the request) act on what is held.
A cancellation is remembered, so neither the request redelivered after a crash nor a
released copy that reaches the relay after the cancellation is held or sent. (A copy released
before the cancellation was appended is ahead of it on the log and goes out; the API refuses
changes within a second of the due time to keep that window small.) A reschedule is
remembered too, for a copy of the request that reaches this relay after it: one handed over
by the relay that held it (below), or one released at its old time.

**Held sends follow their partition** (Kafka, where the group moves partitions between relay
pods). Each held row keeps the partition of ``email.requests`` its request came from; a relay
hands over (re-appends to ``email.requests``, then forgets) what it holds of the partitions it
no longer owns — when the group assigns it others, and everything when it stops — so the sends
live with the relay that receives their cancel and reschedule, and a pod that is scaled down
leaves none behind. The partition's new owner holds the copy again (same email id: one
``scheduled`` event, one row). A stop cut short leaves the rest for the pod's next start, which
hands them over at its first assignment. The remembered reschedules of a partition are
forgotten when it goes (its new owner has the rows, or gets them)."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Collection
from datetime import datetime, timezone
from pathlib import Path

from shared import events as ev
from shared.log.port import EventLog

POLL = 0.25  # the relays that hold may be other processes (the wake below is this process's only)


class Scheduler:
    def __init__(self, path: Path, event_log: EventLog):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.log = event_log
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS scheduled(email_id TEXT PRIMARY KEY, due REAL, payload BLOB)")
        if "partition" not in {row[1] for row in self._db.execute("PRAGMA table_info(scheduled)")}:
            self._db.execute("ALTER TABLE scheduled ADD COLUMN partition INTEGER")  # NULL in older files
        # "cancelled": the table keeps the name the relays' files already have (shared/events.py)
        self._db.execute("CREATE TABLE IF NOT EXISTS cancelled(email_id TEXT PRIMARY KEY, at REAL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS rescheduled(email_id TEXT PRIMARY KEY, due REAL, partition INTEGER)")
        self._lock = threading.Lock()
        self._wake = asyncio.Event()

    def as_changed(self, req: ev.SendRequested) -> ev.SendRequested | None:
        """``req`` (a first attempt with ``scheduled_at``) as the changes this relay has seen
        make it: None when it was canceled; moved to the last remembered reschedule."""
        with self._lock:
            if self._db.execute("SELECT 1 FROM cancelled WHERE email_id=?", (req.email_id,)).fetchone():
                return None
            row = self._db.execute("SELECT due FROM rescheduled WHERE email_id=?", (req.email_id,)).fetchone()
        if row is None or req.scheduled_at is None or row[0] == req.scheduled_at.timestamp():
            return req
        return req.model_copy(update={"scheduled_at": datetime.fromtimestamp(row[0], timezone.utc)})

    def _hold(self, req: ev.SendRequested, partition: int | None) -> bool:
        assert req.scheduled_at is not None  # only scheduled requests are held
        with self._lock:
            if self._db.execute("SELECT 1 FROM cancelled WHERE email_id=?", (req.email_id,)).fetchone():
                return False
            self._db.execute("INSERT OR REPLACE INTO scheduled(email_id, due, payload, partition) VALUES (?,?,?,?)",
                             (req.email_id, req.scheduled_at.timestamp(), ev.encode(req), partition))
            return True

    async def hold(self, req: ev.SendRequested, partition: int | None = None) -> bool:
        """Keep ``req`` (from ``partition`` of ``email.requests``) until its ``scheduled_at``;
        durable when it returns. False (and nothing held) when the email was canceled already."""
        held = await asyncio.to_thread(self._hold, req, partition)
        self._wake.set()
        return held

    def _cancel(self, email_id: str) -> ev.SendRequested | None:
        with self._lock:
            row = self._db.execute("SELECT payload FROM scheduled WHERE email_id=?", (email_id,)).fetchone()
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR IGNORE INTO cancelled VALUES (?,?)", (email_id, time.time()))
            self._db.execute("DELETE FROM scheduled WHERE email_id=?", (email_id,))
            self._db.execute("COMMIT")
        return ev.decode(row[0]) if row else None

    async def cancel(self, email_id: str) -> ev.SendRequested | None:
        """Drop the held request of ``email_id`` and remember the cancellation (durable when
        it returns). Returns the request that was held, or None when nothing was (already
        released, or canceled before)."""
        return await asyncio.to_thread(self._cancel, email_id)

    def _reschedule(self, email_id: str, when: datetime, partition: int | None) -> ev.SendRequested | None:
        with self._lock:
            row = self._db.execute("SELECT payload FROM scheduled WHERE email_id=?", (email_id,)).fetchone()
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO rescheduled VALUES (?,?,?)", (email_id, when.timestamp(), partition))
            req = None
            if row is not None:
                req = ev.decode(row[0]).model_copy(update={"scheduled_at": when})
                self._db.execute("UPDATE scheduled SET due=?, payload=? WHERE email_id=?",
                                 (when.timestamp(), ev.encode(req), email_id))
            self._db.execute("COMMIT")
        return req

    async def reschedule(self, email_id: str, when: datetime, partition: int | None = None) -> ev.SendRequested | None:
        """Move the held request of ``email_id`` to ``when`` and remember the move (for a copy
        that comes later: ``as_changed``); the updated request, or None when nothing is held
        here (already released, canceled, or still held by a relay that hands it over)."""
        req = await asyncio.to_thread(self._reschedule, email_id, when, partition)
        self._wake.set()
        return req

    def _held_elsewhere(self, keep: frozenset[int]) -> list[tuple[str, bytes]]:
        marks = ",".join("?" * len(keep))
        with self._lock:
            return self._db.execute(f"SELECT email_id, payload FROM scheduled WHERE partition IS NULL "
                                    f"OR partition NOT IN ({marks}) ORDER BY due LIMIT 1000", tuple(keep)).fetchall()

    def _forget_partitions(self, keep: frozenset[int]) -> None:
        marks = ",".join("?" * len(keep))
        with self._lock:
            self._db.execute(f"DELETE FROM rescheduled WHERE partition IS NULL OR partition NOT IN ({marks})", tuple(keep))

    async def hand_over(self, keep: Collection[int]) -> int:
        """Re-append to ``email.requests`` (then forget) every held request whose partition
        is not in ``keep`` (or unknown), for the partition's owner to hold; forget the
        remembered reschedules of those partitions. Returns how many were handed over. A
        crash between the append and the delete hands some over twice: the new owner holds
        one row per email id."""
        kept, n = frozenset(keep), 0
        while rows := await asyncio.to_thread(self._held_elsewhere, kept):
            await self.log.append_many(ev.Topic.REQUESTS, rows)
            await asyncio.to_thread(self._forget, [i for i, _ in rows])
            n += len(rows)
        await asyncio.to_thread(self._forget_partitions, kept)
        return n

    def is_canceled(self, email_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM cancelled WHERE email_id=?", (email_id,)).fetchone() is not None

    def _due(self, now: float) -> list[tuple[str, bytes]]:
        with self._lock:
            return self._db.execute("SELECT email_id, payload FROM scheduled WHERE due <= ? ORDER BY due LIMIT 1000",
                                    (now,)).fetchall()

    def _next_due(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(due) FROM scheduled").fetchone()
        return row[0] if row else None

    def _forget(self, ids: list[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM scheduled WHERE email_id=?", [(i,) for i in ids])

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            due = self._due(time.time())
            if due:
                await self.log.append_many(ev.Topic.REQUESTS, due)
                await asyncio.to_thread(self._forget, [i for i, _ in due])
                continue
            nxt = self._next_due()
            wait = POLL if nxt is None else max(0.01, min(POLL, nxt - time.time()))
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait([waiter], timeout=wait)
            finally:
                waiter.cancel()

    def close(self) -> None:
        self._db.close()
