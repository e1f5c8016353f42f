"""Embedded event log: one SQLite file in WAL mode, shared by the processes of one
installation (``postline all`` runs several over one data dir).

Durability: ``synchronous=FULL`` in WAL mode fsyncs the WAL on every commit, and
``append`` resolves only after the commit that holds its record. Appends from many
coroutines are group-committed by one writer thread per process, so the fsync cost is shared.

Across processes: one writer at a time (an ``flock`` on ``<log>.write-lock`` that wakes the
next writer at once, then ``BEGIN IMMEDIATE``; anything else writing, such as retention,
waits on the busy timeout). Offsets are assigned inside that write transaction from the ``heads``
table (the next offset of each partition), so two processes never hand out the same offset,
and offsets are never reused even after old records are deleted. Consumers in every process
are woken when any process commits: a watcher checks ``PRAGMA data_version`` (a counter
SQLite bumps when another connection commits; reading it costs microseconds and touches no
page) every ``WATCH_INTERVAL`` seconds (``WATCH_IDLE_INTERVAL`` when nothing changed for a
while) and refreshes the heads only when it moved.

Limits (documented in README): a group has one member across all processes (it gets every
partition; ``postline all`` gives each consumer group to exactly one process). Retention
and compaction: shared/log/retention.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncGenerator, Callable, Iterator, Sequence, TypeVar

from shared.log.port import V, CommitFailed, Consumer, EventLog, Guard, LogNotStarted, LogUnavailable, Record, Verdict

T = TypeVar("T")
Outcome = tuple["asyncio.Future[Any]", object, "BaseException | None"]  # a job's future, its result or its error

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records(
    topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
    key TEXT, value BLOB NOT NULL, headers TEXT, ts INTEGER NOT NULL,
    PRIMARY KEY (topic, part, off)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_key ON records(topic, key);
CREATE TABLE IF NOT EXISTS heads(
    topic TEXT NOT NULL, part INTEGER NOT NULL, next INTEGER NOT NULL,
    PRIMARY KEY (topic, part)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commits(
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)) WITHOUT ROWID;
"""
_BATCH = 2000
# How often each process checks whether another one committed: a consumer there waits at
# most this long for a record written elsewhere (records written here wake it at once).
# Busy (a change seen in the last WATCH_BUSY_FOR seconds): every 10 ms, ~1.4 % of a core
# per process measured; idle: every 50 ms, so a quiet installation costs ~0.3 % per process.
WATCH_INTERVAL = 0.01
WATCH_IDLE_INTERVAL = 0.05
WATCH_BUSY_FOR = 2.0


@dataclass(frozen=True)
class GuardFailed:
    """A guard raised: its job is failed with this error, the other jobs of the commit go on."""
    error: Exception


def partition_for(key: str | None, partitions: int, counter: int) -> int:
    """Stable partition of a key (crc32); keyless records spread round-robin."""
    if key is None:
        return counter % partitions
    return zlib.crc32(key.encode()) % partitions


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    # lets retention (shared/log/retention.py) give freed pages back to the file system;
    # only takes effect on a new file, before journal_mode writes its first page
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@contextlib.contextmanager
def _storage_errors(what: str) -> Iterator[None]:
    """SQLite's and the file system's errors as the port's: the file cannot be read or written
    (disk full, I/O error, locked too long) is the log being unavailable."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        raise LogUnavailable(f"{what}: {exc}") from exc


class SqliteLog(EventLog):
    end_offsets_local = True  # a PRAGMA read, at most a few rows: nothing to bound
    keyed_lookups = True  # records_by_key
    local_sql = True

    def __init__(self, path: Path, partitions: int = 4):
        self.path = Path(path)
        self.partitions = partitions
        self._queue: queue.Queue[tuple[str, Any, asyncio.Future[Any]] | None] = queue.Queue()
        self._next: dict[tuple[str, int], int] = {}
        self._counter = 0
        self._writer: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._data_version = -1
        self._topic_versions: dict[str, int] = {}  # topic → data_version when end_offsets last read its heads

    @property
    def local_file(self) -> Path:
        return self.path

    def _conn(self) -> sqlite3.Connection:
        if self._reader is None:
            raise LogNotStarted("log is not started")
        return self._reader

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = _connect(self.path)
            conn.execute("BEGIN IMMEDIATE")  # one process at a time creates or upgrades the schema
            had_heads = conn.execute("SELECT 1 FROM sqlite_master WHERE name='heads'").fetchone()
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if not had_heads:  # a log written before heads existed: its next offsets from the records
                conn.execute("INSERT INTO heads(topic, part, next) SELECT topic, part, MAX(off) + 1 FROM records "
                             "GROUP BY topic, part")
            conn.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            raise LogUnavailable(f"cannot open the event log at {self.path}: {exc}") from exc
        self._reader = _connect(self.path)
        self._refresh_heads()
        self._writer = threading.Thread(target=self._write_loop, args=(conn,), name="sqlite-log-writer", daemon=True)
        self._writer.start()
        self._watcher = asyncio.create_task(self._watch(), name="sqlite-log-watch")

    async def ping(self) -> bool:
        """The writer thread that commits appends is running."""
        return self._writer is not None and self._writer.is_alive()

    async def close(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._writer:
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._reader:
            self._reader.close()
            self._reader = None

    # ------------------------------------------------------------ writes
    def _write_loop(self, conn: sqlite3.Connection) -> None:
        # Writers of all processes queue on this lock (in the kernel: the next one runs as soon
        # as it is released) rather than on SQLite's busy handler, which sleeps and retries.
        lock_fd = os.open(self.path.with_name(self.path.name + ".write-lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._write_batches(conn, lock_fd)
        finally:
            os.close(lock_fd)
            conn.close()

    def _write_batches(self, conn: sqlite3.Connection, lock_fd: int) -> None:
        stop = False
        while not stop:
            jobs = [self._queue.get()]
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                # what arrived while another process held the lock joins this commit
                while len(jobs) < _BATCH:
                    try:
                        jobs.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = None in jobs
                work = [j for j in jobs if j is not None]
                if work:
                    self._commit_jobs(conn, work)
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _commit_jobs(self, conn: sqlite3.Connection, jobs: list[tuple[str, Any, asyncio.Future[Any]]]) -> None:
        results: list[tuple[asyncio.Future[Any], object]] = []
        loop = self._loop
        assert loop is not None  # set by start, before the writer runs
        assigned: dict[tuple[str, int], int] = {}
        try:
            conn.execute("BEGIN IMMEDIATE")  # waits (busy timeout) while another process writes
            for kind, payload, fut in jobs:
                if kind == "append":
                    results.append((fut, [self._insert(conn, item, assigned) for item in payload]))
                elif kind == "guarded":
                    results.append((fut, self._guarded(conn, payload, assigned)))
                else:
                    conn.executemany(
                        "INSERT INTO commits(grp, topic, part, off) VALUES (?,?,?,?) "
                        "ON CONFLICT(grp, topic, part) DO UPDATE SET off=excluded.off", payload)
                    results.append((fut, None))
            conn.executemany("INSERT INTO heads(topic, part, next) VALUES (?,?,?) "
                             "ON CONFLICT(topic, part) DO UPDATE SET next=excluded.next",
                             [(t, p, n) for (t, p), n in assigned.items()])
            conn.execute("COMMIT")
        except Exception as exc:  # disk full, I/O error: nothing in this batch is acked
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            failed: BaseException = exc
            if isinstance(exc, (OSError, sqlite3.Error)):
                failed = LogUnavailable(f"cannot write the event log at {self.path}: {exc}")
                failed.__cause__ = exc
            failures: list[Outcome] = [(fut, None, failed) for _, _, fut in jobs]
            loop.call_soon_threadsafe(_resolve_all, failures, None)
            return
        # one wake-up of the event loop per commit, not one per record
        done: list[Outcome] = [(fut, res, None) for fut, res in results]
        loop.call_soon_threadsafe(_resolve_all, done,
                                        lambda: self._advance(assigned))

    def _guarded(self, conn: sqlite3.Connection, payload: tuple[list[tuple[str, str | None, bytes, None]], Guard[Verdict]],
                 assigned: dict[tuple[str, int], int]) -> tuple[Verdict | GuardFailed, list[tuple[int, int]]]:
        """Run a guard in this write transaction, then append its records only if it allows.
        A guard that raises undoes its own writes (a savepoint) and fails only its own job."""
        items, guard = payload
        conn.execute("SAVEPOINT guard")
        try:
            verdict = guard(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO guard")
            conn.execute("RELEASE guard")
            return GuardFailed(exc), []
        conn.execute("RELEASE guard")
        return verdict, [self._insert(conn, item, assigned) for item, keep in zip(items, verdict.chosen) if keep]

    def _insert(self, conn: sqlite3.Connection, payload: tuple[str, str | None, bytes, dict[str, str] | None],
                assigned: dict[tuple[str, int], int]) -> tuple[int, int]:
        topic, key, value, headers = payload
        part = partition_for(key, self.partitions, self._counter)
        self._counter += 1
        off = assigned.get((topic, part))
        if off is None:  # first record of this partition in this transaction: where the log is now
            row = conn.execute("SELECT next FROM heads WHERE topic=? AND part=?", (topic, part)).fetchone()
            off = row[0] if row else 0
        conn.execute(
            "INSERT INTO records(topic, part, off, key, value, headers, ts) VALUES (?,?,?,?,?,?,?)",
            (topic, part, off, key, value, json.dumps(headers) if headers else None, int(time.time() * 1000)))
        assigned[(topic, part)] = off + 1
        return part, off

    def _notify(self) -> None:
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    def _advance(self, heads: dict[tuple[str, int], int]) -> None:
        """Record new partition ends (they only grow) and wake this process's consumers if one moved."""
        moved = False
        for tp, nxt in heads.items():
            if nxt > self._next.get(tp, 0):
                self._next[tp] = nxt
                moved = True
        if moved:
            self._notify()

    def _refresh_heads(self) -> bool:
        """Re-read the heads when another connection committed since the last look; True if so."""
        version = self._conn().execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return False
        self._data_version = version
        rows = self._conn().execute("SELECT topic, part, next FROM heads").fetchall()
        self._advance({(t, p): n for t, p, n in rows})
        return True

    async def _watch(self) -> None:
        """Wake consumers here when another process appended (see the module docstring)."""
        last_change = time.monotonic()
        while True:
            busy = time.monotonic() - last_change < WATCH_BUSY_FOR
            await asyncio.sleep(WATCH_INTERVAL if busy else WATCH_IDLE_INTERVAL)
            try:
                if self._refresh_heads():
                    last_change = time.monotonic()
            except sqlite3.Error:  # busy or I/O hiccup: look again next tick
                log.debug("log watcher: could not read heads", exc_info=True)

    def _submit(self, kind: str, payload: object) -> asyncio.Future[Any]:
        if self._writer is None or self._loop is None:
            raise LogNotStarted("log is not started")
        fut = self._loop.create_future()
        self._queue.put((kind, payload, fut))
        return fut

    async def append(self, topic: str, key: str | None, value: bytes,
                     headers: dict[str, str] | None = None) -> tuple[int, int]:
        positions: list[tuple[int, int]] = await self._submit("append", [(str(topic), key, value, headers)])
        return positions[0]

    async def append_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> list[tuple[int, int]]:
        positions: list[tuple[int, int]] = await self._submit("append", [(str(topic), k, v, None) for k, v in items])
        return positions

    async def append_guarded(self, topic: str, items: Sequence[tuple[str | None, bytes]], guard: Guard[V]
                             ) -> tuple[V, list[tuple[int, int]]]:
        """``guard(connection)`` runs inside the write transaction that would hold ``items``
        (so it sees and changes the log file's own tables with every other writer of every
        process excluded); its verdict's ``chosen`` (a boolean per item) says which of ``items``
        are appended. Returns ``(verdict, positions of those chosen)`` once durable; raises as
        ``append`` does, and re-raises what the guard raised (nothing of its job written).
        For decisions that must hold across processes at no extra fsync: rate counters,
        idempotency claims."""
        verdict: V | GuardFailed
        positions: list[tuple[int, int]]
        verdict, positions = await self._submit("guarded", ([(str(topic), k, v, None) for k, v in items], guard))
        if isinstance(verdict, GuardFailed):
            raise verdict.error
        return verdict, positions

    async def _commit_offsets(self, rows: list[tuple[str, str, int, int]]) -> None:
        await self._submit("commit", rows)

    # ------------------------------------------------------------ reads
    def _read(self, topic: str, part: int, start: int, limit: int) -> list[Record]:
        with _storage_errors(f"cannot read {topic}/{part} of the event log"):
            rows = self._conn().execute(
            "SELECT off, key, value, headers, ts FROM records WHERE topic=? AND part=? AND off>=? ORDER BY off LIMIT ?",
            (topic, part, start, limit)).fetchall()
        return [Record(topic, part, off, key, value, ts, json.loads(h) if h else {}) for off, key, value, h, ts in rows]

    def _committed(self, group: str, topic: str) -> dict[int, int]:
        rows = self._conn().execute("SELECT part, off FROM commits WHERE grp=? AND topic=?", (group, topic))
        return dict(rows.fetchall())

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """``query(connection)`` on this process's reader connection, on the caller's thread:
        for small reads of the log file's own tables (e.g. rate counters); it sees every
        commit made so far by any process."""
        return query(self._conn())

    def by_key(self, topic: str, key: str, limit: int = 50) -> list[Record]:
        """The newest ``limit`` records of ``key`` on ``topic``, newest first (found through the
        key index, on the key's partition). For look-ups of one entity written by another
        process, e.g. a send request."""
        part = partition_for(key, self.partitions, 0)
        rows = self._conn().execute(
            "SELECT off, value, headers, ts FROM records WHERE topic=? AND part=? AND key=? ORDER BY off DESC LIMIT ?",
            (topic, part, key, limit)).fetchall()
        return [Record(topic, part, off, key, value, ts, json.loads(h) if h else {}) for off, value, h, ts in rows]

    def _ends(self, topic: str) -> dict[int, int]:
        """The partition ends as this process knows them (no read)."""
        return {p: self._next.get((topic, p), 0) for p in range(self.partitions)}

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """As ``EventLog.end_offsets``: a ``PRAGMA data_version`` read (microseconds, no page
        touched); the topic's heads rows are read again only when another process committed
        since their last read, and a head that moved wakes this process's consumers at once
        (not at the watcher's next tick). Its own appends are known the moment they commit.
        The watcher's own bookkeeping (``_data_version``) is left alone: it still refreshes
        every topic's heads for the other consumers."""
        if self._reader is None:
            raise LogNotStarted("log is not started")
        topic = str(topic)
        try:
            version = self._reader.execute("PRAGMA data_version").fetchone()[0]
            if self._topic_versions.get(topic) != version:  # another process committed since this topic's last read
                rows = self._reader.execute("SELECT part, next FROM heads WHERE topic=?", (topic,)).fetchall()
                self._advance({(topic, p): n for p, n in rows})
                self._topic_versions[topic] = version
        except sqlite3.Error as exc:
            raise LogUnavailable(f"cannot read the event log's heads: {exc}") from exc
        return self._ends(topic)

    def consumer(self, topics: list[str], group: str | None) -> SqliteConsumer:
        return SqliteConsumer(self, [str(t) for t in topics], group)

    async def scan(self, topic: str, partition: int, start: int = 0,
                   since_ms: int | None = None) -> AsyncGenerator[list[Record], None]:
        topic = str(topic)
        end = self._next.get((topic, partition), 0)
        if since_ms is not None:
            start = max(start, self._first_at(topic, partition, since_ms, end))
        while start < end:
            recs = [r for r in self._read(topic, partition, start, _BATCH) if r.offset < end]
            if not recs:
                return
            yield recs
            start = recs[-1].offset + 1

    def _first_at(self, topic: str, part: int, since_ms: int, end: int) -> int:
        """First offset appended at or after ``since_ms``: a binary search, as one writer
        stamps a partition's records in offset order (no index on the time needed)."""
        lo, hi = 0, end
        while lo < hi:
            mid = (lo + hi) // 2
            row = self._conn().execute("SELECT ts FROM records WHERE topic=? AND part=? AND off>=? ORDER BY off LIMIT 1",
                                       (topic, part, mid)).fetchone()
            if row and row[0] < since_ms:
                lo = mid + 1
            else:
                hi = mid
        return lo

    async def partition_count(self, topic: str) -> int:
        return self.partitions

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        """As ``EventLog.committed``: the group's rows of the commits table (a local read)."""
        rows = self.read(lambda db: db.execute("SELECT part, off FROM commits WHERE grp=? AND topic=?",
                                               (group, str(topic))).fetchall())
        return {int(part): int(off) for part, off in rows}


def _resolve_all(outcomes: list[Outcome],
                 then: Callable[[], None] | None = None) -> None:
    for fut, result, exc in outcomes:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    if then is not None:
        then()


class SqliteConsumer(Consumer):
    def __init__(self, log: SqliteLog, topics: list[str], group: str | None):
        self.log, self.topics, self.group = log, topics, group
        self._pos: dict[tuple[str, int], int] = {}
        self._start_ends: dict[tuple[str, int], int] = {}
        self._share = (0, 1)
        self.on_assigned = None

    def take_share(self, index: int, count: int) -> None:
        self._share = (index, count)

    async def start(self) -> None:
        index, count = self._share
        for topic in self.topics:
            committed = self.log._committed(self.group, topic) if self.group else {}
            for part, end in self.log._ends(topic).items():
                if part % count != index:
                    continue  # another process of the group has it
                self._pos[(topic, part)] = committed.get(part, 0)
                self._start_ends[(topic, part)] = end
        if self.on_assigned is not None:  # static membership: this member's share from the start
            await self.on_assigned(dict(self._pos))

    async def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            waiter = self.log._changed
            out: list[Record] = []
            for (topic, part), pos in self._pos.items():
                if len(out) >= max_records:
                    break
                if self.log._next.get((topic, part), 0) <= pos:
                    continue  # nothing new on this partition: skip the query
                recs = self.log._read(topic, part, pos, max_records - len(out))
                if recs:
                    self._pos[(topic, part)] = recs[-1].offset + 1
                    out.extend(recs)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that races with the event being set, and the caller would never stop.
            wake = asyncio.ensure_future(waiter.wait())
            try:
                await asyncio.wait([wake], timeout=remaining)
            finally:
                wake.cancel()

    async def commit(self, records: list[Record]) -> None:
        if not self.group or not records:
            return
        if any((r.topic, r.partition) not in self._pos for r in records):
            raise CommitFailed(f"{self.group}: this consumer is closed or does not own these partitions")
        last: dict[tuple[str, int], int] = {}
        for r in records:
            last[(r.topic, r.partition)] = max(last.get((r.topic, r.partition), -1), r.offset)
        await self.log._commit_offsets([(self.group, t, p, o + 1) for (t, p), o in last.items()])

    async def caught_up(self) -> bool:
        return all(self._pos[tp] >= end for tp, end in self._start_ends.items())

    async def close(self) -> None:
        self._pos.clear()
