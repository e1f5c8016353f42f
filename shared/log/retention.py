"""Retention and compaction of the embedded log: what Kafka's topic configs do for Kafka.

One pass (``sweep``) over ``log.sqlite3``:

1. **Time retention** per topic (``POSTLINE_LOG_RETENTION_*``): each partition loses records
   from its head, oldest first, up to the first record still within retention (Kafka deletes
   whole segments from the head the same way). The newest record of every partition is always
   kept, so the next offset of a partition survives a restart (offsets are never reused).
2. **Compaction of the control topic**: a record is dropped when a later record of its key
   took effect. "Took effect" is decided by ``ControlState.apply`` itself (a change merged onto
   an older state supersedes nothing: the records it merged onto stay until a record holding
   the whole state follows, see shared/control/merge.py), so a re-appended
   copy of an earlier change (which replay ignores) never replaces the change after it, and
   replaying the compacted topic yields the same state as replaying all of it. Deletions are
   whole-state events with ``deleted`` set; they are kept as the latest record of their key
   (like Kafka tombstones), so a late copy of an older change cannot bring an entity back.
   Records that do not decode are kept (never drop what we cannot read). A partition's newest
   record always stays (see 1); when it is an ignored copy, its key keeps all its records
   until a later pass. Limit: a copy of a change re-appended *after* a pass dropped that
   change is not recognised by a later replay (producer retries come within seconds; a pass
   runs every few minutes).
3. **Space back to the file system**: pages freed by the deletes are released with
   ``PRAGMA incremental_vacuum`` steps (``auto_vacuum=INCREMENTAL``; an existing file made
   without it is converted once with ``VACUUM``), and the WAL is truncated by a
   ``wal_checkpoint(TRUNCATE)``.

Sends are not paused: every delete and vacuum step is its own short transaction of at most
``BATCH`` records or ``VACUUM_PAGES`` pages; after each, the pass copies its WAL frames
itself (a PASSIVE checkpoint, which never blocks writers, so the log's writer does not pay
for them in its auto-checkpoint) and pauses longer than a waiting writer's busy handler
sleeps, so the writer gets the lock in between. The pass runs in a worker thread, off the
event loop, and stops after its current step when the process stops.

Consumers need nothing: they read ``off >= position``, so one whose position fell below the
earliest retained offset simply continues from the next record that is left.

Several processes may share the file: ``run_retention`` runs passes only while it holds an
exclusive ``flock`` on ``log.sqlite3.retention.lock``; the others keep trying, so when the
owner exits another process takes over. SQLite's own locking orders the writes.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, cast

from shared import events as ev
from shared.control.merge import Outcome
from shared.control.state import ControlState
from shared.log.port import EventLog
from shared.settings import Settings

Stopping = Callable[[], bool]  # True once the pass should end (``sweep``'s ``cancel``)

log = logging.getLogger(__name__)

BATCH = 200  # records per delete transaction: ~1 MB of 5 KB sends, a few ms of lock
VACUUM_PAGES = 256  # pages released per incremental_vacuum transaction (1 MB)
PAUSE = 0.11  # seconds between two steps: longer than the 100 ms a waiting writer's busy handler sleeps at most
CONVERT_LIMIT = 256 << 20  # one-time VACUUM of a pre-existing file only below 256 MB: it holds the write lock, and appends wait at most 30 s for it


@dataclass(frozen=True)
class RetentionPolicy:
    """Seconds each topic's records are kept; ``None`` = kept (compacted or unknown topics)."""

    requests: float
    events: float
    dead_letter: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(settings.log_retention_requests, settings.log_retention_events,
                   settings.log_retention_dead_letter)

    def seconds(self, topic: str) -> float | None:
        if topic == ev.Topic.REQUESTS or topic.startswith(f"{ev.Topic.RETRY}."):
            return self.requests
        if topic == ev.Topic.EVENTS:
            return self.events
        if topic == ev.Topic.DEAD_LETTER:
            return self.dead_letter
        return None


@dataclass
class SweepReport:
    expired: dict[str, int] = field(default_factory=dict)  # topic -> records removed by age
    compacted: int = 0  # control records removed as superseded
    pages_released: int = 0
    converted: bool = False  # the one-time VACUUM to auto_vacuum=INCREMENTAL ran


def sweep(path: Path, policy: RetentionPolicy, now: float | None = None,
          cancel: threading.Event | None = None) -> SweepReport:
    """One blocking retention + compaction + reclaim pass over the log file at ``path``.

    Setting ``cancel`` ends the pass after the step in progress (what is done stays done)."""
    now_ms = int((time.time() if now is None else now) * 1000)
    report = SweepReport()
    stopping = (cancel or threading.Event()).is_set
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        # the deletes need not survive a crash (the next pass redoes them): no fsync per step
        conn.execute("PRAGMA synchronous=NORMAL")
        report.converted = _ensure_incremental_vacuum(conn, Path(path))
        for topic, part in _partitions(conn):
            keep = policy.seconds(topic)
            if keep is not None and not stopping():
                gone = _expire(conn, topic, part, now_ms - int(keep * 1000), stopping)
                if gone:
                    report.expired[topic] = report.expired.get(topic, 0) + gone
        if not stopping():
            report.compacted = _compact_control(conn, stopping)
        report.pages_released = _release_pages(conn, stopping)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    return report


async def run_retention(event_log: EventLog, settings: Settings, stop: asyncio.Event) -> None:
    """Run ``sweep`` every ``POSTLINE_LOG_RETENTION_INTERVAL`` seconds until ``stop`` is set.

    Only for the embedded log (Kafka applies its topic configs itself), and only in the one
    process holding the retention lock of the data dir. Never raises: a failed pass is logged
    and tried again, so the role that runs it is not stopped by it."""
    path = event_log.local_file
    if path is None:
        await stop.wait()  # a role's task that ends would stop the process: wait like one
        return
    policy = RetentionPolicy.from_settings(settings)
    lock = _RetentionLock(path.with_name(path.name + ".retention.lock"))
    cancel = threading.Event()  # a long pass must not hold up the process's shutdown
    watcher = asyncio.create_task(stop.wait())
    watcher.add_done_callback(lambda _: cancel.set())
    try:
        while not stop.is_set():
            try:
                if lock.acquire():
                    report = await asyncio.to_thread(sweep, path, policy, None, cancel)
                    if report.expired or report.compacted or report.converted:
                        log.info("log retention: expired %s, compacted %d control records, released %d pages",
                                 report.expired, report.compacted, report.pages_released)
            except Exception:  # a full disk or a long lock: try again next interval
                log.exception("log retention pass failed")
            try:
                await asyncio.wait_for(stop.wait(), settings.log_retention_interval)
            except asyncio.TimeoutError:
                pass
    finally:
        watcher.cancel()
        lock.release()


class _RetentionLock:
    """An exclusive, non-blocking ``flock``: released by the kernel if the process dies."""

    def __init__(self, path: Path):
        self.path, self._fd = path, cast(int | None, None)

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


# ------------------------------------------------------------ steps of a pass
def _breathe(conn: sqlite3.Connection) -> None:
    """Between two steps: copy the WAL frames this pass wrote into the file here (PASSIVE never
    blocks writers), so the log's writer does not pay for them in its next auto-checkpoint,
    then leave the lock to the writer for a while."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    time.sleep(PAUSE)


def _ensure_incremental_vacuum(conn: sqlite3.Connection, path: Path) -> bool:
    """New files are created with auto_vacuum=INCREMENTAL (shared/log/sqlite.py); a file made
    before that needs one VACUUM to switch. VACUUM holds the write lock for its whole run, so
    it is done only while the file is small enough to be quick; bigger ones are logged."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        return False
    if path.stat().st_size > CONVERT_LIMIT:
        log.warning("%s was created without auto_vacuum and is too big to convert while serving: "
                    "stop Postline and run `sqlite3 %s 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM'` once "
                    "to let retention give space back", path, path)
        return False
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("VACUUM")
    return True


def _partitions(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """Every (topic, partition) holding records, by skipping along the primary key (a few
    index look-ups, not a scan of the table)."""
    out: list[tuple[str, int]] = []
    row = conn.execute("SELECT topic, part FROM records ORDER BY topic, part LIMIT 1").fetchone()
    while row is not None:
        out.append(row)
        row = conn.execute("SELECT topic, part FROM records WHERE (topic, part) > (?, ?) "
                           "ORDER BY topic, part LIMIT 1", row).fetchone()
    return out


def _expire(conn: sqlite3.Connection, topic: str, part: int, cutoff_ms: int, stopping: Stopping) -> int:
    """Delete the partition's head up to the first record at or after ``cutoff_ms``, in
    ``BATCH``-sized transactions; the partition's newest record stays."""
    (newest,) = conn.execute("SELECT MAX(off) FROM records WHERE topic=? AND part=?", (topic, part)).fetchone()
    removed = 0
    while not stopping():
        rows = conn.execute("SELECT off, ts FROM records WHERE topic=? AND part=? AND off<? ORDER BY off LIMIT ?",
                            (topic, part, newest, BATCH)).fetchall()
        # the head ends at the first record within retention (stamps follow offsets)
        n = next((i for i, (_, ts) in enumerate(rows) if ts >= cutoff_ms), len(rows))
        old = [off for off, _ in rows[:n]]
        if not old:
            return removed
        conn.execute("DELETE FROM records WHERE topic=? AND part=? AND off BETWEEN ? AND ?",
                     (topic, part, old[0], old[-1]))
        removed += len(old)
        if n < len(rows) or len(rows) < BATCH:
            return removed
        _breathe(conn)
    return removed


def _compact_control(conn: sqlite3.Connection, stopping: Stopping) -> int:
    """Drop control records a later record of the same key superseded (see module doc)."""
    topic = str(ev.Topic.CONTROL)
    doomed = _superseded_control(conn, topic)
    removed = 0
    for i in range(0, len(doomed), BATCH):
        if stopping():
            break
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("DELETE FROM records WHERE topic=? AND part=? AND off=?",
                         [(topic, p, o) for p, o in doomed[i:i + BATCH]])
        conn.execute("COMMIT")
        removed += len(doomed[i:i + BATCH])
        _breathe(conn)
    return removed


def _superseded_control(conn: sqlite3.Connection, topic: str) -> list[tuple[int, int]]:
    """``(part, off)`` of the control records whose key has a later record holding its state."""
    # keys and positions first (no values: a key with one record has nothing to compact, and
    # most entities are saved once), then only the records of keys with a history are decoded
    index = conn.execute("SELECT part, off, key FROM records WHERE topic=? ORDER BY part, off", (topic,)).fetchall()
    records_of = Counter(key for _, _, key in index)
    newest = {part: (off, key) for part, off, key in index}  # part -> (off, key) of its newest record
    state = ControlState()
    # key -> (part, off) of the records holding its state: the last whole one (a record that
    # alone holds the entity, shared/control/merge.py) and the changes merged after it
    holding: dict[str, list[tuple[int, int]]] = {}
    superseded: list[tuple[str, int, int]] = []
    for part, off, key in index:
        if records_of[key] < 2:
            continue
        row = conn.execute("SELECT value FROM records WHERE topic=? AND part=? AND off=?", (topic, part, off)).fetchone()
        try:
            outcome = state.apply(ev.decode(row[0]), off)
        except Exception:
            continue  # unreadable (or gone): kept
        if outcome is Outcome.WHOLE:
            superseded += [(key, p, o) for p, o in holding.get(key, ())]
            holding[key] = [(part, off)]
        elif outcome:  # merged, not whole: the records before it still hold the other fields
            holding.setdefault(key, []).append((part, off))
        else:
            superseded.append((key, part, off))
    # A partition's newest record stays (its offset tells a restart where to go on). If that
    # record is an ignored copy, replay recognises it only next to the change it copies: the
    # key keeps all its records until a later pass, when the copy is no longer the newest.
    held = {key for part, (off, key) in newest.items() if records_of[key] > 1 and (part, off) not in holding.get(key, ())}
    return [(p, o) for key, p, o in superseded if key not in held]


def _release_pages(conn: sqlite3.Connection, stopping: Stopping) -> int:
    """Give free pages back to the file system, ``VACUUM_PAGES`` per transaction."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        return 0
    released = 0
    while (free := conn.execute("PRAGMA freelist_count").fetchone()[0]) > 0 and not stopping():
        # executescript steps the pragma to its end; execute() would free one page per call
        conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES})")
        after = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if after >= free:
            break  # nothing moved (another writer holds pages): next pass
        released += free - after
        _breathe(conn)
    return released
