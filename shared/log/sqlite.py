"""Embedded event log: one SQLite file in WAL mode, for single-process deployments.

Durability: ``synchronous=FULL`` in WAL mode fsyncs the WAL on every commit, and
``append`` resolves only after the commit that holds its record. Appends from many
coroutines are group-committed by one writer thread, so the fsync cost is shared.

Limits (documented in README): a group has one member per process (it gets every
partition); topics are not compacted (the control topic stays small).
"""
from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
import zlib
from pathlib import Path

from shared.log.port import Consumer, EventLog, Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records(
    topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
    key TEXT, value BLOB NOT NULL, headers TEXT, ts INTEGER NOT NULL,
    PRIMARY KEY (topic, part, off)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commits(
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)) WITHOUT ROWID;
"""
_BATCH = 2000


def partition_for(key: str | None, partitions: int, counter: int) -> int:
    """Stable partition of a key (crc32); keyless records spread round-robin."""
    if key is None:
        return counter % partitions
    return zlib.crc32(key.encode()) % partitions


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class SqliteLog(EventLog):
    def __init__(self, path: Path, partitions: int = 4):
        self.path = Path(path)
        self.partitions = partitions
        self._queue: queue.Queue = queue.Queue()
        self._next: dict[tuple[str, int], int] = {}
        self._counter = 0
        self._writer: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        conn = _connect(self.path)
        conn.executescript(_SCHEMA)
        for topic, part, off in conn.execute("SELECT topic, part, MAX(off) FROM records GROUP BY topic, part"):
            self._next[(topic, part)] = off + 1
        self._reader = _connect(self.path)
        self._writer = threading.Thread(target=self._write_loop, args=(conn,), name="sqlite-log-writer", daemon=True)
        self._writer.start()

    async def close(self) -> None:
        if self._writer:
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._reader:
            self._reader.close()
            self._reader = None

    # ------------------------------------------------------------ writes
    def _write_loop(self, conn: sqlite3.Connection) -> None:
        stop = False
        while not stop:
            jobs = [self._queue.get()]
            while len(jobs) < _BATCH:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if None in jobs:
                stop = True
                jobs = [j for j in jobs if j is not None]
            if jobs:
                self._commit_jobs(conn, jobs)
        conn.close()

    def _commit_jobs(self, conn: sqlite3.Connection, jobs: list) -> None:
        results: list = []
        assigned: dict[tuple[str, int], int] = {}
        try:
            conn.execute("BEGIN IMMEDIATE")
            for kind, payload, fut in jobs:
                if kind == "append":
                    results.append((fut, [self._insert(conn, item, assigned) for item in payload]))
                else:
                    conn.executemany(
                        "INSERT INTO commits(grp, topic, part, off) VALUES (?,?,?,?) "
                        "ON CONFLICT(grp, topic, part) DO UPDATE SET off=excluded.off", payload)
                    results.append((fut, None))
            conn.execute("COMMIT")
        except Exception as exc:  # disk full, I/O error: nothing in this batch is acked
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._loop.call_soon_threadsafe(_resolve_all, [(fut, None, exc) for _, _, fut in jobs], None)
            return
        self._next.update(assigned)
        # one wake-up of the event loop per commit, not one per record
        self._loop.call_soon_threadsafe(_resolve_all, [(fut, res, None) for fut, res in results], self._notify)

    def _insert(self, conn, payload, assigned) -> tuple[int, int]:
        topic, key, value, headers = payload
        part = partition_for(key, self.partitions, self._counter)
        self._counter += 1
        off = assigned.get((topic, part), self._next.get((topic, part), 0))
        conn.execute(
            "INSERT INTO records(topic, part, off, key, value, headers, ts) VALUES (?,?,?,?,?,?,?)",
            (topic, part, off, key, value, json.dumps(headers) if headers else None, int(time.time() * 1000)))
        assigned[(topic, part)] = off + 1
        return part, off

    def _notify(self) -> None:
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    def _submit(self, kind: str, payload) -> asyncio.Future:
        if self._writer is None:
            raise RuntimeError("log is not started")
        fut = self._loop.create_future()
        self._queue.put((kind, payload, fut))
        return fut

    async def append(self, topic, key, value, headers=None):
        return (await self._submit("append", [(str(topic), key, value, headers)]))[0]

    async def append_many(self, topic, items):
        return await self._submit("append", [(str(topic), k, v, None) for k, v in items])

    async def _commit_offsets(self, rows: list[tuple[str, str, int, int]]) -> None:
        await self._submit("commit", rows)

    # ------------------------------------------------------------ reads
    def _read(self, topic: str, part: int, start: int, limit: int) -> list[Record]:
        rows = self._reader.execute(
            "SELECT off, key, value, headers, ts FROM records WHERE topic=? AND part=? AND off>=? ORDER BY off LIMIT ?",
            (topic, part, start, limit)).fetchall()
        return [Record(topic, part, off, key, value, ts, json.loads(h) if h else {}) for off, key, value, h, ts in rows]

    def _committed(self, group: str, topic: str) -> dict[int, int]:
        rows = self._reader.execute("SELECT part, off FROM commits WHERE grp=? AND topic=?", (group, topic))
        return dict(rows.fetchall())

    def end_offsets(self, topic: str) -> dict[int, int]:
        return {p: self._next.get((topic, p), 0) for p in range(self.partitions)}

    def consumer(self, topics, group):
        return SqliteConsumer(self, [str(t) for t in topics], group)

    async def scan(self, topic, partition, start=0, since_ms=None):
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
            row = self._reader.execute("SELECT ts FROM records WHERE topic=? AND part=? AND off>=? ORDER BY off LIMIT 1",
                                       (topic, part, mid)).fetchone()
            if row and row[0] < since_ms:
                lo = mid + 1
            else:
                hi = mid
        return lo

    async def partition_count(self, topic):
        return self.partitions


def _resolve_all(outcomes: list[tuple[asyncio.Future, object, BaseException | None]], then=None) -> None:
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

    async def start(self) -> None:
        for topic in self.topics:
            committed = self.log._committed(self.group, topic) if self.group else {}
            for part, end in self.log.end_offsets(topic).items():
                self._pos[(topic, part)] = committed.get(part, 0)
                self._start_ends[(topic, part)] = end
        if self.on_assigned is not None:  # one member per process: it holds every partition
            await self.on_assigned(dict(self._pos))

    async def poll(self, max_records=500, timeout=1.0):
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

    async def commit(self, records):
        if not self.group or not records:
            return
        last: dict[tuple[str, int], int] = {}
        for r in records:
            last[(r.topic, r.partition)] = max(last.get((r.topic, r.partition), -1), r.offset)
        await self.log._commit_offsets([(self.group, t, p, o + 1) for (t, p), o in last.items()])

    async def caught_up(self):
        return all(self._pos[tp] >= end for tp, end in self._start_ends.items())

    async def close(self):
        self._pos.clear()
