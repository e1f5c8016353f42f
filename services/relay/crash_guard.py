"""A request that kills its relay process must not stop every request behind it.

A consumer commits after its batch (shared/consumer_loop.py), so a restarted relay reads the
requests it died on again. One that kills the process each time — a fault in a C extension
(the HTML parser, OpenSSL), the kernel's OOM killer — would do so forever, and its partitions
would deliver nothing more. Postfix isolates this by delivering from throw-away processes;
here a relay process learns which request it died on, at no cost while nothing crashes:

- ``<ledger dir>/running`` exists while the process runs (created at start, removed when the
  relay stops because it was told to). Found at start, the previous run ended otherwise (a
  crash, SIGKILL, OOM, or a consumer that gave up).
- After such a start, the first ``window`` offsets of each partition from the first one read
  (the most that the batch which died could have held of it; a retried batch re-reads the
  same offsets) carry durable counts in ``<ledger dir>/crash-marks.sqlite3``: raised before a
  record is handled and lowered again however its handling ends (an exception included),
  once every record handled with it has ended too (shared/tasks.py ``gather_all``), so only
  a process that died with the record in hand leaves them raised. Records no death was
  counted against are handled together as usual, under one count for the batch; a *suspect*
  (a count of at least one) is handled alone, under its own, so a death then is its alone.
  A stop ends the suspects' turn (the batch uncommitted): handled one at a time they could
  outlast the stop's grace period, and its SIGKILL would count against an innocent one.
- A request whose count reached ``limit`` (``POSTLINE_RELAY_CRASHES_PER_REQUEST``, 2 by
  default and at least 2, as the first death is counted in a batch) is not handled again:
  the relay gives it up (services/relay/handler.py ``give_up``: ``email.failed`` for its
  open recipients, recorded in the ledger; a copy held for later canceled) and dead-letters
  it for an operator; the partition moves on. A poison request thus costs three deaths: in
  a batch, in a marked batch, alone. A cancel or reschedule is applied instead, whatever its
  count (it only writes the scheduler's file; dropped, a canceled send would go out).

What it cannot tell apart: a process that dies for a reason of its own (an OOM kill caused by
other work, a SIGKILL after the stop grace period, a crash in another role sharing the
process) counts that death against the records in hand; an innocent one is then a suspect,
handled alone, and given up only if a second death comes while it alone is in hand; deaths
that keep coming for such a reason give up at most one innocent request each, and once
given-up requests are most of a batch the consumer halts as for a bad deploy
(shared/poison.py), for an operator to look. Counts are kept per process (its ledger directory): on Kafka a partition that moves to another relay
starts its counts there. A guard that cannot use its file (a full disk) logs it and steps
aside: the relay then handles every request as if nothing had crashed. A fresh data dir, or a
start after a clean stop, has no ``running`` file and costs nothing."""
from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Iterator

from shared.log.port import Record

log = logging.getLogger(__name__)
_MARKS = "crash-marks.sqlite3"
_MARK_FILES = (_MARKS, _MARKS + "-wal", _MARKS + "-shm")


class CrashGuard:
    """The marks of one relay process (its ledger directory); synchronous SQLite, used only
    after an unclean start."""

    def __init__(self, directory: Path, limit: int, window: int) -> None:
        self.directory, self.limit, self.window = directory, limit, window
        self.unclean = False
        self._first: dict[tuple[str, int], int] = {}  # the first offset read of each partition since the start
        self._db: sqlite3.Connection | None = None

    def start(self) -> None:
        """Note that this process runs; careful when the last one did not stop cleanly."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            running = self.directory / "running"
            self.unclean = running.exists()
            if not self.unclean:  # marks of an older run can name other records now (a reset topic)
                for name in _MARK_FILES:
                    (self.directory / name).unlink(missing_ok=True)
            running.touch()
        except OSError as exc:
            self._step_aside(exc)
            return
        if self.unclean:
            log.warning("the relay's last run ended without a clean stop: the first %d requests of each "
                        "partition are handled under crash counts, and one that kills the process %d times is given up",
                        self.window, self.limit)

    def stop(self) -> None:
        """The relay stopped because it was told to: the next start is a normal one."""
        self.unclean = False
        try:
            self._close()
            for name in ("running", *_MARK_FILES):
                (self.directory / name).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("relay crash guard: could not note the clean stop: %s", exc)

    def careful(self, record: Record) -> bool:
        """Whether ``record`` is in the window that carries counts after an unclean start."""
        if not self.unclean:
            return False
        first = self._first.setdefault((record.topic, record.partition), record.offset)
        return first <= record.offset < first + self.window

    def deaths(self, record: Record) -> int:
        """How many processes died with ``record`` in hand (0 when the guard cannot tell)."""
        if not self.unclean:
            return 0
        try:
            row = self._conn().execute("SELECT deaths FROM marks WHERE topic=? AND part=? AND off=?",
                                       _key(record)).fetchone()
        except (sqlite3.Error, OSError) as exc:
            self._step_aside(exc)
            return 0
        return row[0] if row else 0

    @contextlib.contextmanager
    def holding(self, records: list[Record]) -> Iterator[None]:
        """While the block handles ``records``: a death of each counted in advance, durably, in
        one transaction, and taken back however the block ends (only a death leaves it)."""
        self.before(records)
        try:
            yield
        finally:
            self.after(records)

    def before(self, records: list[Record]) -> None:
        self._write("INSERT INTO marks VALUES (?, ?, ?, 1) ON CONFLICT (topic, part, off) "
                    "DO UPDATE SET deaths = deaths + 1", records)

    def after(self, records: list[Record]) -> None:
        self._write("UPDATE marks SET deaths = deaths - 1 WHERE topic=? AND part=? AND off=?", records)

    def _write(self, sql: str, records: list[Record]) -> None:
        if not self.unclean or not records:
            return
        try:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            db.executemany(sql, [_key(r) for r in records])
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            self._step_aside(exc)

    def _step_aside(self, exc: BaseException) -> None:
        log.error("relay crash guard: its file in %s cannot be used (%s); requests are handled as if "
                  "nothing had crashed", self.directory, exc)
        self.unclean = False
        self._close()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.directory / _MARKS, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # a count must survive the death it counts
                db.execute("CREATE TABLE IF NOT EXISTS marks(topic TEXT, part INTEGER, off INTEGER, "
                           "deaths INTEGER NOT NULL, PRIMARY KEY (topic, part, off)) WITHOUT ROWID")
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db


def _key(record: Record) -> tuple[str, int, int]:
    return str(record.topic), record.partition, record.offset
