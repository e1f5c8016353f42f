"""Scheduled sends (``scheduled_at``): held durably until due, then put back on
``email.requests``.

The relay holds a request here (SQLite in its data dir, synchronous=FULL) before it commits
the request's offset, so a restart keeps every scheduled message. Release appends, then
deletes: a crash in between re-releases, and the ledger absorbs the duplicate.

Cancel and reschedule (``send-cancelled`` / ``send-rescheduled`` on ``email.requests``,
keyed like the request, so they reach the relay that owns the request's partition) act on
what is held, and are remembered: a copy of the request that reaches this relay later — the
request redelivered after a crash, a copy released at its old time, one handed over by the
relay that held it (below) — is dropped when canceled and goes by the last reschedule
(``as_changed``). (A copy released before the cancellation was appended is ahead of it on
the log and goes out, unless both come in one batch: the relay applies a batch's changes
first. The API refuses changes within a second of the due time to keep that window small.)

**Held sends follow their partition** (Kafka, where the group moves partitions between relay
pods). Each held row and each remembered change keeps the partition of ``email.requests`` it
came from; a relay hands over what it has of the partitions it no longer owns — when the
group assigns it others, and everything when it stops — by appending it to
``email.requests`` again (with the ``HANDED_OVER`` header), held requests first, then the
changes, and forgets it. So the sends live with the relay their cancels and reschedules
reach, a change that reached a relay holding nothing follows the partition too, and a pod
that is scaled down leaves nothing behind. The partition's new owner holds the copy again
(same email id: one row, and no second ``scheduled`` event) and applies the handed-over
changes, except a reschedule older than one it has applied itself (it reached the new owner
before the old one handed over). A stop cut short leaves the rest for the pod's next start,
which hands it over at its first assignment. Changes are remembered for ``REMEMBER`` (a send
is scheduled at most 30 days ahead)."""
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
HANDED_OVER = "postline-handed-over"  # record header of what a relay hands over
REMEMBER = 31 * 86400.0  # seconds a cancel or reschedule is remembered


def _add_columns(db: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Columns later versions added (NULL in older files); several processes open the file at
    once, so one of them may have added a column since this one looked."""
    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in have:
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise


class Scheduler:
    def __init__(self, path: Path, event_log: EventLog):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.log = event_log
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS scheduled(email_id TEXT PRIMARY KEY, due REAL, payload BLOB)")
        _add_columns(self._db, "scheduled", {"partition": "INTEGER"})
        # "cancelled": the table keeps the name the relays' files already have (shared/events.py)
        self._db.execute("CREATE TABLE IF NOT EXISTS cancelled(email_id TEXT PRIMARY KEY, at REAL)")
        _add_columns(self._db, "cancelled", {"partition": "INTEGER", "change": "BLOB"})
        self._db.execute("CREATE TABLE IF NOT EXISTS rescheduled(email_id TEXT PRIMARY KEY, due REAL, at REAL, "
                         "partition INTEGER, change BLOB)")
        for table in ("cancelled", "rescheduled"):
            self._db.execute(f"DELETE FROM {table} WHERE at < ?", (time.time() - REMEMBER,))
        self._lock = threading.Lock()
        self._wake = asyncio.Event()

    def as_changed(self, req: ev.SendRequested) -> ev.SendRequested | None:
        """``req`` (a first attempt with ``scheduled_at``) as the changes this relay has seen
        make it: None when it was canceled; moved to the last reschedule; else ``req`` itself."""
        with self._lock:
            if self._canceled(req.email_id):
                return None
            row = self._db.execute("SELECT due FROM rescheduled WHERE email_id=?", (req.email_id,)).fetchone()
        if row is None or req.scheduled_at is None or row[0] == req.scheduled_at.timestamp():
            return req
        return req.model_copy(update={"scheduled_at": datetime.fromtimestamp(row[0], timezone.utc)})

    def is_canceled(self, email_id: str) -> bool:
        with self._lock:
            return self._canceled(email_id)

    def _canceled(self, email_id: str) -> bool:  # with the lock held
        return self._db.execute("SELECT 1 FROM cancelled WHERE email_id=?", (email_id,)).fetchone() is not None

    def _hold(self, req: ev.SendRequested, partition: int | None) -> bool | None:
        assert req.scheduled_at is not None  # only scheduled requests are held
        with self._lock:
            if self._canceled(req.email_id):
                return None
            due = req.scheduled_at.timestamp()
            held = self._db.execute("SELECT due FROM scheduled WHERE email_id=?", (req.email_id,)).fetchone()
            self._db.execute("INSERT OR REPLACE INTO scheduled(email_id, due, payload, partition) VALUES (?,?,?,?)",
                             (req.email_id, due, ev.encode(req), partition))
            return held is None or held[0] != due

    async def hold(self, req: ev.SendRequested, partition: int | None = None) -> bool | None:
        """Keep ``req`` (from ``partition`` of ``email.requests``) until its ``scheduled_at``;
        durable when it returns. None (nothing held) when the email was canceled already;
        True when the hold is news (not held here for that time before), False when not (a
        batch done again: the caller says ``scheduled`` again, with the same ids, in case
        the first time it could not)."""
        held = await asyncio.to_thread(self._hold, req, partition)
        self._wake.set()
        return held

    def _cancel(self, change: ev.SendCanceled, partition: int | None) -> ev.SendRequested | None:
        with self._lock:
            row = self._db.execute("SELECT payload FROM scheduled WHERE email_id=?", (change.email_id,)).fetchone()
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR IGNORE INTO cancelled(email_id, at, partition, change) VALUES (?,?,?,?)",
                             (change.email_id, change.time.timestamp(), partition, ev.encode(change)))
            self._db.execute("DELETE FROM scheduled WHERE email_id=?", (change.email_id,))
            self._db.execute("COMMIT")
        return ev.decode(row[0]) if row else None

    async def cancel(self, change: ev.SendCanceled, partition: int | None = None) -> ev.SendRequested | None:
        """Drop the held request of the email and remember the cancellation (durable when it
        returns). Returns the request that was held, or None when nothing was (already
        released, canceled before, or held by a relay that hands it over)."""
        return await asyncio.to_thread(self._cancel, change, partition)

    def _reschedule(self, change: ev.SendRescheduled, partition: int | None,
                    handed_over: bool) -> ev.SendRequested | None:
        email_id, when = change.email_id, change.scheduled_at
        with self._lock:
            if handed_over:
                mine = self._db.execute("SELECT at FROM rescheduled WHERE email_id=?", (email_id,)).fetchone()
                if mine is not None and mine[0] > change.time.timestamp():
                    return None  # this relay applied a later one itself
            row = self._db.execute("SELECT payload FROM scheduled WHERE email_id=?", (email_id,)).fetchone()
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO rescheduled VALUES (?,?,?,?,?)",
                             (email_id, when.timestamp(), change.time.timestamp(), partition, ev.encode(change)))
            held = ev.decode(row[0]) if row is not None else None
            req = None
            if held is not None:
                req = held.model_copy(update={"scheduled_at": when})
                self._db.execute("UPDATE scheduled SET due=?, payload=? WHERE email_id=?",
                                 (when.timestamp(), ev.encode(req), email_id))
            self._db.execute("COMMIT")
        if handed_over and held is not None and held.scheduled_at == when:
            return None  # the copy handed over before it was already moved: nothing to say
        return req

    async def reschedule(self, change: ev.SendRescheduled, partition: int | None = None,
                         handed_over: bool = False) -> ev.SendRequested | None:
        """Move the held request of the email to ``change.scheduled_at`` and remember the move;
        the updated request, or None when nothing is held here. ``handed_over``: the change
        came from the partition's previous owner, and loses to a later one applied here (and
        says nothing when the held copy, handed over before it, is already at its time)."""
        req = await asyncio.to_thread(self._reschedule, change, partition, handed_over)
        self._wake.set()
        return req

    def _elsewhere(self, table: str, column: str, keep: frozenset[int]) -> list[tuple[str, bytes]]:
        # a held request of an unknown partition goes too (its owner holds it, maybe this relay);
        # a change remembered before partitions were kept stays (it cannot be written again).
        # (SQLite: NULL NOT IN () is true)
        which = "partition IS NULL OR" if table == "scheduled" else f"{column} IS NOT NULL AND partition IS NOT NULL AND"
        marks = ",".join("?" * len(keep))
        with self._lock:
            return self._db.execute(f"SELECT email_id, {column} FROM {table} WHERE {which} "
                                    f"partition NOT IN ({marks}) LIMIT 1000", tuple(keep)).fetchall()

    def _drop(self, table: str, ids: list[str]) -> None:
        with self._lock:
            self._db.executemany(f"DELETE FROM {table} WHERE email_id=?", [(i,) for i in ids])

    async def hand_over(self, keep: Collection[int]) -> int:
        """Append to ``email.requests`` (header ``HANDED_OVER``), then forget, every held
        request and then every remembered change whose partition is not in ``keep`` (a held
        request whose partition is unknown too: a file from before partitions were kept), for
        the partition's owner. Returns how many requests were handed over. A crash between an
        append and its delete hands some over twice: the owner keeps one row per email id."""
        kept, n = frozenset(keep), 0
        for table, column in (("scheduled", "payload"), ("cancelled", "change"), ("rescheduled", "change")):
            while rows := await asyncio.to_thread(self._elsewhere, table, column, kept):
                await asyncio.gather(*(self.log.append(ev.Topic.REQUESTS, email_id, value, {HANDED_OVER: "1"})
                                       for email_id, value in rows))
                await asyncio.to_thread(self._drop, table, [email_id for email_id, _ in rows])
                n += len(rows) if table == "scheduled" else 0
        return n

    def _due(self, now: float) -> list[tuple[str, bytes]]:
        with self._lock:
            return self._db.execute("SELECT email_id, payload FROM scheduled WHERE due <= ? ORDER BY due LIMIT 1000",
                                    (now,)).fetchall()

    def _next_due(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(due) FROM scheduled").fetchone()
        return row[0] if row else None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            due = self._due(time.time())
            if due:
                await self.log.append_many(ev.Topic.REQUESTS, due)
                await asyncio.to_thread(self._drop, "scheduled", [i for i, _ in due])
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
